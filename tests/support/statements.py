"""Counting the SQL statements a request runs, whichever way they reach the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from db.engine import Database


@contextmanager
def counting_statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements on customer data run inside the block.

    Statements reach the database three ways: through the ORM session, and through
    `Database.fetch` and a write's `WriteDriver` on a driver connection; all three tell
    `Database.statement_observers` (db/engine.py, db/driver.py), the one place to watch.

    The API key's look-up (one per request, and its last-used stamp once a minute) is left
    out: it is the same for every request, and the tests are about what grows with the data.
    The stamp is written in the background, so on SQLite its `BEGIN IMMEDIATE` (which names
    no table) can land inside the block: left out too. Reads send no BEGIN at all.
    """
    statements: list[str] = []

    def record(statement: str) -> None:
        if "api_key" not in statement and statement != "BEGIN IMMEDIATE":
            statements.append(statement)

    db.statement_observers.append(record)
    try:
        yield statements
    finally:
        db.statement_observers.remove(record)
