"""Alembic's entry point, run inside `db.migrate`, which hands it a connection in a transaction.

SQLite note: never let Alembic recreate a table there ("batch" mode). The server turns
foreign keys on (the pragma cannot change inside the migration's transaction), so dropping
the old `customer` table would cascade into deleting every verification, and renaming a
table rewrites the references to it. Use plain ADD/DROP COLUMN and CREATE/DROP INDEX, which
SQLite 3.35+ does in place; where a table must be rebuilt, do it as 0006 does (new tables
first, children pointing at the new parent, old child dropped before old parent, renames
last).
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from db import models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("Run migrations through the server: customer-api migrate")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    compare_type=True,
    render_as_batch=False,
)
with context.begin_transaction():
    context.run_migrations()
