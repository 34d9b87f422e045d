"""SQLite connections for single-statement reads, kept apart from the engine's pool.

The compiled read path runs one statement per request. Through the engine's pool each such
read also costs a checkout and a check-in (two greenlets) and the check-in's reset, a
ROLLBACK that is a round trip to aiosqlite's thread although a read in autocommit mode has
nothing to roll back. These connections only ever run one autocommit SELECT at a time, so
they need no reset: a read takes an idle one (or opens one, up to `size`), and gives it back.
One that failed in any way, or whose caller was cancelled mid-statement, is closed instead.

They are opened with the same PRAGMAs as the engine's (`PRAGMAS`): WAL readers never wait
for the writer.

A point read (a customer or a verification by a unique key: a few rows from an index, never
a scan) runs on the event loop's own thread instead (`fetch_here`). SQLite answers one in
about 20 us; handing it to a reader's thread and its answer back (a queue, a thread switch,
a wake-up of the loop) costs about 60 us of CPU more than that, on every lookup. The loop's
connection never waits: its busy timeout is 0, and a read that finds the file busy (another
process checkpointing or recovering it) is handed to a reader's thread, which waits as any
read does. What it may still block the loop for is the disk, when the index's pages are not
in the page cache: a point read touches a handful of them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

# SQLite's primary result codes that mean "someone else holds the file a moment": the read is
# tried again where waiting is allowed.
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def pragmas(busy_timeout_ms: int) -> tuple[str, ...]:
    """What every connection to the file sets first (the engine's and these)."""
    # WAL lets readers run beside the writer; synchronous=FULL syncs the WAL on every commit,
    # so an acknowledged write survives a power loss.
    return (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        f"busy_timeout={int(busy_timeout_ms)}",
    )


class SQLiteReaders:
    def __init__(self, path: str, size: int, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.size = size
        self._idle: list[aiosqlite.Connection] = []
        self._turns = asyncio.Semaphore(size)
        self._closing: set[asyncio.Task[None]] = set()
        self._here: sqlite3.Connection | None = None  # the event loop thread's (`fetch_here`)

    async def fetch_point(self, sql: str, parameters: Sequence[Any]) -> Iterable[Sequence[Any]]:
        """A point read's rows: on this thread, unless the file is busy (then as `fetch`)."""
        rows = self.fetch_here(sql, parameters)
        return await self.fetch(sql, parameters) if rows is None else rows

    def fetch_here(self, sql: str, parameters: Sequence[Any]) -> list[Any] | None:
        """The rows of a point read run on this thread, or None when the file is busy."""
        try:
            connection = self._here or self._open_here()
            return connection.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF in _BUSY:  # its extended code's primary part
                return None
            self._close_here()
            raise
        except BaseException:
            self._close_here()
            raise

    def _open_here(self) -> sqlite3.Connection:
        # timeout=0: sqlite3's own busy handler (5 s by default) would wait on the loop.
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        try:
            for pragma in pragmas(busy_timeout_ms=0):  # never sleeps on the event loop
                connection.execute(f"PRAGMA {pragma}")
        except BaseException:
            connection.close()
            raise
        self._here = connection
        return connection

    def _close_here(self) -> None:
        connection, self._here = self._here, None
        if connection is not None:
            connection.close()

    async def fetch(self, sql: str, parameters: Sequence[Any]) -> Iterable[Sequence[Any]]:
        async with self._turns:
            connection = self._idle.pop() if self._idle else await self._open()
            try:
                rows = await connection.execute_fetchall(sql, parameters)
            except BaseException:
                self._discard(connection)
                raise
            self._idle.append(connection)
            return rows

    async def _open(self) -> aiosqlite.Connection:
        connection = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            for pragma in pragmas(self.busy_timeout_ms):
                await connection.execute(f"PRAGMA {pragma}")
        except BaseException:
            self._discard(connection)
            raise
        return connection

    def _discard(self, connection: aiosqlite.Connection) -> None:
        # Closed in the background: a cancelled caller must not wait for the statement.
        task = asyncio.get_running_loop().create_task(connection.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every connection, once the reads in flight have given theirs back (each
        holds a thread that would keep the process alive)."""
        for _ in range(self.size):
            await self._turns.acquire()  # from now on no read starts
        self._close_here()
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
