"""Drop ix_webhook_delivery_due: the worker reads each endpoint's head by its endpoint.

The worker used to find the deliveries that may go next among every pending one (this
index's status and next_attempt_at, then a min(id) correlated with each row), so a round
cost grew with the backlog. It now reads each enabled endpoint's oldest pending delivery down
ix_webhook_delivery_endpoint (endpoint_id, status, id) and looks at those few rows only
(`db.webhooks.heads`). Nothing else reads this index, and while it existed SQLite's planner
preferred it, scanning every pending delivery that was due again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_webhook_delivery_due", table_name="webhook_delivery")


def downgrade() -> None:
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_at"])
