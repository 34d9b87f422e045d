"""Case-folded keys that are longer than their value fit: on PostgreSQL,
customer.external_id_key, first_name_key and last_name_key lose their length.

Folding can lengthen text ("ß" folds to "ss", "ﬃ" to "ffi"): a valid externalCustomerId of
255 such characters, or a name of 100, has a folded key longer than its column, and
PostgreSQL refused the write with a server error. The value's own column still bounds it.
Widening a varchar on PostgreSQL rewrites nothing. SQLite enforces no length: nothing there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Each key, with the length of the value it folds.
KEYS = {"external_id_key": 255, "first_name_key": 100, "last_name_key": 100}


def upgrade() -> None:
    for column, length in KEYS.items():
        _retype(column, sa.String(length, collation="C"), sa.String(collation="C"))


def downgrade() -> None:
    """Back to the value's length, cutting what no longer fits (the search then misses it)."""
    for column, length in KEYS.items():
        cut = f"left({column}, {length})"
        _retype(column, sa.String(collation="C"), sa.String(length, collation="C"), cut)


def _retype(column: str, old: sa.String, new: sa.String, using: str | None = None) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("customer", column, type_=new, existing_type=old, postgresql_using=using)
