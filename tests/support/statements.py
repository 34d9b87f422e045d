"""Counting the SQL statements a request runs, whichever way they reach the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from db.engine import Database


@contextmanager
def counting_statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements on customer data run inside the block.

    Statements reach the database three ways: through the ORM session (the engine's events
    see them), and through `Database.fetch` and a write's `SessionDriver` on a driver
    connection (both tell `Database.statement_observers`, db/driver.py).

    The API key's look-up (one per request, and its last-used stamp once a minute) is left
    out: it is the same for every request, and the tests are about what grows with the data.
    The stamp is written in the background, so on SQLite its `BEGIN IMMEDIATE` (which names
    no table) can land inside the block: left out too. Reads send no BEGIN at all.
    """
    statements: list[str] = []

    def record(statement: str) -> None:
        if "api_key" not in statement and statement != "BEGIN IMMEDIATE":
            statements.append(statement)

    def record_cursor(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        record(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record_cursor)
    db.statement_observers.append(record)
    try:
        yield statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record_cursor)
        db.statement_observers.remove(record)
