"""Customers and their KYC verifications.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def binary_string(length: int) -> sa.types.TypeEngine[str]:
    """Compared by code point on every backend (see db.models._binary_string)."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "customer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_customer_id", binary_string(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", binary_string(320), nullable=False),
        sa.Column("phone", sa.String(20)),
        sa.Column("first_name", sa.String(100)),
        sa.Column("last_name", sa.String(100)),
        sa.Column("street", sa.String(200)),
        sa.Column("street2", sa.String(200)),
        sa.Column("state", sa.String(2)),
        sa.Column("city", sa.String(100)),
        sa.Column("zip", sa.String(10)),
        sa.Column("country", sa.String(2)),
        sa.Column("kyc_status", sa.String(32)),
        sa.Column("kyc_started_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customer"),
        sa.UniqueConstraint("external_customer_id", name="uq_customer_external_customer_id"),
        sa.UniqueConstraint("email_key", name="uq_customer_email_key"),
    )
    op.create_index("ix_customer_created_at", "customer", ["created_at", "id"])
    op.create_index("ix_customer_updated_at", "customer", ["updated_at", "id"])
    op.create_index("ix_customer_kyc_status", "customer", ["kyc_status", "created_at", "id"])
    op.create_table(
        "kyc_verification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kyc_verification"),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name="fk_kyc_verification_customer_id_customer",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_kyc_verification_customer", "kyc_verification", ["customer_id", "id"])
    op.create_index(
        "ix_kyc_verification_status_created", "kyc_verification", ["status", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("kyc_verification")
    op.drop_table("customer")
