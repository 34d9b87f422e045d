"""SQLite connections for single-statement reads, kept apart from the engine's pool.

The compiled read path runs one statement per request. Through the engine's pool each such
read also costs a checkout and a check-in (two greenlets) and the check-in's reset, a
ROLLBACK that is a round trip to aiosqlite's thread although a read in autocommit mode has
nothing to roll back. These connections only ever run one autocommit SELECT at a time, so
they need no reset: a read takes an idle one (or opens one, up to `size`), and gives it back.
One that failed in any way, or whose caller was cancelled mid-statement, is closed instead.

They are opened with the same PRAGMAs as the engine's (`PRAGMAS`): WAL readers never wait
for the writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite


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
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
