"""Case-folded search keys and the indexes behind the customers list's filters.

Existing customers get their keys computed here, in Python, with the same fold the server
uses (SQL's lower() differs between backends and folds less).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from db.rules import fold

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

customer = sa.table(
    "customer",
    sa.column("id", sa.Integer()),
    sa.column("external_customer_id", sa.String()),
    sa.column("first_name", sa.String()),
    sa.column("last_name", sa.String()),
    sa.column("external_id_key", sa.String()),
    sa.column("first_name_key", sa.String()),
    sa.column("last_name_key", sa.String()),
)
BATCH = 5_000


def binary_string(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    # NOT NULL needs a default while rows exist; SQLite cannot drop it again without
    # rebuilding the table (which foreign keys make unsafe), so it stays there, unused: every
    # write sets the key.
    op.add_column(
        "customer",
        sa.Column("external_id_key", binary_string(255), nullable=False, server_default=""),
    )
    op.add_column("customer", sa.Column("first_name_key", binary_string(100)))
    op.add_column("customer", sa.Column("last_name_key", binary_string(100)))
    backfill()
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("customer", "external_id_key", server_default=None)
    op.create_index("ix_customer_country", "customer", ["country", "created_at", "id"])
    op.create_index("ix_customer_external_id_key", "customer", ["external_id_key"])
    op.create_index("ix_customer_first_name_key", "customer", ["first_name_key"])
    op.create_index("ix_customer_last_name_key", "customer", ["last_name_key"])


def backfill() -> None:
    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(
                customer.c.id,
                customer.c.external_customer_id,
                customer.c.first_name,
                customer.c.last_name,
            )
            .where(customer.c.id > last_id)
            .order_by(customer.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        connection.execute(
            customer.update()
            .where(customer.c.id == sa.bindparam("row_id"))
            .values(
                external_id_key=sa.bindparam("external_key"),
                first_name_key=sa.bindparam("first_key"),
                last_name_key=sa.bindparam("last_key"),
            ),
            [
                {
                    "row_id": row.id,
                    "external_key": fold(row.external_customer_id),
                    "first_key": row.first_name and fold(row.first_name),
                    "last_key": row.last_name and fold(row.last_name),
                }
                for row in rows
            ],
        )
        last_id = rows[-1].id


def downgrade() -> None:
    for index in ("last_name_key", "first_name_key", "external_id_key", "country"):
        op.drop_index(f"ix_customer_{index}", "customer")
    for column in ("last_name_key", "first_name_key", "external_id_key"):
        op.drop_column("customer", column)
