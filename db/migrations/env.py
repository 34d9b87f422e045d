"""Alembic's entry point, run inside `db.migrate`, which hands it a connection in a transaction.

SQLite note: never let a migration recreate a table there (Alembic's "batch" mode). The
server turns foreign keys on, and dropping the old `customer` table would then cascade into
deleting every verification. Use plain ADD/DROP COLUMN and CREATE/DROP INDEX, which SQLite
3.35+ does in place.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from db import models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("Run migrations through the server: python server.py migrate")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    compare_type=True,
    render_as_batch=False,
)
with context.begin_transaction():
    context.run_migrations()
