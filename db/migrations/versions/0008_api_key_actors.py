"""Who made and who revoked each API key: api_key.created_by and api_key.revoked_by.

Keys are now made and revoked through the API as well as the CLI, so each records its actor,
named as events name them (`key:<name>`, `token:<iss>#<sub>`, `system:cli`). Keys made
before keep NULL: who made them was never recorded.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_key", sa.Column("created_by", sa.String(255), nullable=True))
    op.add_column("api_key", sa.Column("revoked_by", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("api_key", "revoked_by")
    op.drop_column("api_key", "created_by")
