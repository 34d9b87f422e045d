"""SQLite never hands out a customer's or a verification's id again.

A SQLite `INTEGER PRIMARY KEY` without AUTOINCREMENT takes the largest id in use plus one:
once the newest customer is deleted, the next one gets its id, and a client still holding
the deleted customer's global id is shown the new customer. With AUTOINCREMENT the next id
is past every id ever used (SQLite keeps the high-water mark in sqlite_sequence), as a
PostgreSQL sequence is. Ids deleted before this migration cannot be known any more: the
mark starts at the largest id in use.

SQLite cannot add AUTOINCREMENT in place, so both tables are rebuilt, inside the migration's
transaction and with foreign keys on (the server's connections turn them on, and the pragma
cannot change inside a transaction). Renaming a table then rewrites the references to it,
and dropping a parent deletes its children, so the order matters:
  1. customer_new and kyc_verification_new (referencing customer_new) are made from the
     stored definitions, with AUTOINCREMENT, and filled with every row;
  2. the old kyc_verification is dropped, then the old customer (no table refers to it any
     more, so nothing cascades);
  3. the new tables take the old names (the reference follows the rename) and their
     indexes are made again.
PostgreSQL needs nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import re

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("customer", "kyc_verification")  # the parent first


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    stored = {
        name: bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).scalar_one()
        for name in TABLES
    }
    if all("AUTOINCREMENT" in sql for sql in stored.values()):
        return  # made so already
    indexes = [
        sql
        for (sql,) in bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN (?, ?)",
            TABLES,
        )
    ]
    for name in TABLES:
        op.execute(_with_autoincrement(stored[name], name))
        op.execute(f"INSERT INTO {name}_new SELECT * FROM {name}")
    for name in reversed(TABLES):  # the child first: dropping the parent cascades into it
        op.execute(f"DROP TABLE {name}")
    for name in TABLES:
        op.execute(f"ALTER TABLE {name}_new RENAME TO {name}")
    for sql in indexes:
        op.execute(sql)


def downgrade() -> None:
    """Nothing: ids that are never reused break nothing that an earlier revision expects."""


def _with_autoincrement(sql: str, name: str) -> str:
    """The table's stored definition, as `<name>_new`, its id an AUTOINCREMENT key (and a
    reference to customer made to customer_new)."""
    changes = [
        (rf"^CREATE TABLE {name} \(", f"CREATE TABLE {name}_new ("),
        (
            r"\bid INTEGER NOT NULL,",
            f"id INTEGER NOT NULL CONSTRAINT pk_{name} PRIMARY KEY AUTOINCREMENT,",
        ),
        (rf",\s*CONSTRAINT pk_{name} PRIMARY KEY \(id\)", ""),
    ]
    if name != "customer":
        changes.append((r"REFERENCES customer \(id\)", "REFERENCES customer_new (id)"))
    for pattern, replacement in changes:
        sql, made = re.subn(pattern, replacement, sql, count=1)
        if made != 1:
            raise RuntimeError(f"the {name} table's definition is not the one expected: {sql}")
    return sql
