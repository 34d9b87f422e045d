"""Each webhook endpoint's head read from the endpoint: settled_through and queued_through,
and no due index.

The worker used to find the deliveries that may go next among every pending one (by
ix_webhook_delivery_due's status and next_attempt_at, then a min(id) correlated with each
row), so a round's cost grew with the backlog. It now reads each enabled endpoint's oldest
pending delivery down ix_webhook_delivery_endpoint (`db.webhooks.heads`), between the
endpoint's newest settled delivery, `webhook_endpoint.settled_through`, and its newest
delivery, `queued_through`: without those bounds PostgreSQL may walk the primary key from
the first delivery ever made, through every settled one (and to the end of the table for
an endpoint with nothing pending). Deliveries settle in order, so the newest settled one
is below every pending one; here it starts just below the oldest pending delivery (or at
the newest, when none is pending). Nothing else reads ix_webhook_delivery_due, and while
it existed SQLite's planner preferred it, scanning every pending delivery that was due.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_endpoint",
        sa.Column("settled_through", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE webhook_endpoint SET settled_through = COALESCE("
        "(SELECT min(id) - 1 FROM webhook_delivery d"
        " WHERE d.endpoint_id = webhook_endpoint.id AND d.status = 'PENDING'),"
        " (SELECT max(id) FROM webhook_delivery d WHERE d.endpoint_id = webhook_endpoint.id),"
        " 0)"
    )
    op.add_column(
        "webhook_endpoint",
        sa.Column("queued_through", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE webhook_endpoint SET queued_through = COALESCE("
        "(SELECT max(id) FROM webhook_delivery d WHERE d.endpoint_id = webhook_endpoint.id), 0)"
    )
    op.drop_index("ix_webhook_delivery_due", table_name="webhook_delivery")


def downgrade() -> None:
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_at"])
    op.drop_column("webhook_endpoint", "queued_through")
    op.drop_column("webhook_endpoint", "settled_through")
