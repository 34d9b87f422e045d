"""Counting the SQL statements a request runs, whichever way they reach the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from db.driver import PerDialect, SessionDriver
from db.engine import Database


@contextmanager
def counting_statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements on customer data run inside the block.

    Statements reach the database three ways: through the ORM session (the engine's events
    see them), through `Database.fetch` (it tells `statement_observers`), and through a
    write's `SessionDriver` on the transaction's own driver connection, which tells nobody:
    its statements are caught here by wrapping it while the block runs (a test-only hook;
    once the driver reports to the observers, drop `_driver_statements`).

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
        with _driver_statements(record):
            yield statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record_cursor)
        db.statement_observers.remove(record)


@contextmanager
def _driver_statements(record: Callable[[str], None]) -> Iterator[None]:
    """Every SessionDriver's statements (and savepoints) told to `record` inside the block."""
    run, execute = SessionDriver.run, SessionDriver._execute

    async def observed_run(
        self: SessionDriver, statement: PerDialect, values: Mapping[str, Any]
    ) -> list[Any]:
        record(statement.on(self.dialect).sql)
        return await run(self, statement, values)

    async def observed_execute(self: SessionDriver, sql: str) -> None:
        record(sql)
        await execute(self, sql)

    SessionDriver.run = observed_run  # type: ignore[method-assign]
    SessionDriver._execute = observed_execute  # type: ignore[method-assign]
    try:
        yield
    finally:
        SessionDriver.run = run  # type: ignore[method-assign]
        SessionDriver._execute = execute  # type: ignore[method-assign]
