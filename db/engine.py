"""The async engine and the two kinds of transaction that the rest of the code opens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

# An execution option read by the SQLite `begin` hook below: which BEGIN a transaction uses.
_SQLITE_BEGIN = "sqlite_begin"


class Database:
    """The engine plus `read()` and `write()` transactions.

    On SQLite the driver's own transaction handling is switched off and transactions are
    begun here. Writes begin with `BEGIN IMMEDIATE`, which takes the write lock up front: a
    deferred write transaction would read, then fail to upgrade its lock ("database is
    locked", which the busy timeout does not retry) or, worse, decide on a stale read. Reads
    begin nothing: each statement is its own snapshot, as under PostgreSQL's READ COMMITTED,
    and in WAL mode never waits for the writer. That saves a round trip per read.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        sqlite_busy_timeout_ms: int = 30_000,
        echo: bool = False,
    ) -> None:
        self.url = url
        options: dict[str, Any] = {"echo": echo}
        if ":memory:" not in url:  # an in-memory SQLite database has no pool to size
            options.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            _configure_sqlite(self.engine, sqlite_busy_timeout_ms)
        self._readers = async_sessionmaker(
            self.engine.execution_options(**{_SQLITE_BEGIN: None}), expire_on_commit=False
        )
        self._writers = async_sessionmaker(
            self.engine.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"}),
            expire_on_commit=False,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; each statement sees a consistent snapshot."""
        async with self._readers() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back when it raises."""
        async with self._writers() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # None turns off the driver's implicit BEGIN, so the hook below decides how to begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer; synchronous=FULL syncs the WAL on every
        # commit, so an acknowledged write survives a power loss.
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            f"busy_timeout={int(busy_timeout_ms)}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        begin = connection.get_execution_options().get(_SQLITE_BEGIN, "BEGIN IMMEDIATE")
        if begin is not None:
            connection.exec_driver_sql(begin)
