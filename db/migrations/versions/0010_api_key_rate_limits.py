"""Each API key's own rate-limit bucket: api_key.max_cost and api_key.restore_rate.

A key made with a maximum cost or a restore rate (createApiKey, `keys create`) keeps them
here; NULL, as every key made before has, means the server's RATE_LIMIT_MAX_COST and
RATE_LIMIT_RESTORE_RATE.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_key", sa.Column("max_cost", sa.Integer(), nullable=True))
    op.add_column("api_key", sa.Column("restore_rate", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_key", "restore_rate")
    op.drop_column("api_key", "max_cost")
