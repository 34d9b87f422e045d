"""The trace of the write that made each event: customer_event.traceparent.

With tracing on (web/tracing.py), an event keeps the W3C traceparent of the request that wrote
it, so that its webhook deliveries are spans of that request's trace. Ids only (55 characters),
never data; NULL for events written with tracing off, and for every event before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customer_event", sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    op.drop_column("customer_event", "traceparent")
