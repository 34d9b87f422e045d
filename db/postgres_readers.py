"""PostgreSQL connections for single-statement reads, kept apart from the engine's pool.

The compiled read path runs one statement per request. Through the engine's pool each such
read also costs a checkout and a check-in (greenlets, the pool's bookkeeping) and a pre-ping,
a second round trip to the server for every read. asyncpg's own pool has neither: a read
takes an idle connection (or opens one, up to `size`) and gives it back, with no reset; a
connection that failed in any way, or whose read was cut short, is terminated instead.

Reads take their turns in arrival order (a FIFO semaphore of `size` turns, so asyncpg's own
queue, where a newcomer can take a connection just given back from under a read that has
waited longer, is never waited in): under 32 clients on 5 connections, a read left at the
back of that queue over and over waited past its bound, and was counted as the database
being unreachable. Waiting for a turn is this process being busy, not the database being
sick, as for the engine's pool (db/engine.py's CountingPool): it counts for nothing. While a
read holds its turn, the pre-ping's absence means a dead or hung server shows only in the
read itself, so each read is bounded (opening a connection when none is idle, and the
statement) by the connect timeout, and a read that fails because the database is unreachable
counts as a failure towards the engine's latch (db/engine.py). The request then falls back
to graphql-core, whose checkout pings: a second failure trips the latch, and the request
answers SERVICE_UNAVAILABLE within the two bounds. A healthy but slow statement also gives
up at the bound; graphql-core then runs it with the full statement timeout, and its
successful checkout resets the latch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg

from db.faults import Fault, fault_of
from db.keepalive import keep_alive


class PostgresReaders:
    def __init__(
        self,
        dsn: str,
        size: int,
        *,
        bound: float,
        connect_args: dict[str, Any],
        check: Callable[[], None],
        failed: Callable[[], None],
    ) -> None:
        self.dsn = dsn
        self.size = size
        self.bound = bound  # seconds for a whole read: the connection, then the statement
        self.connect_args = connect_args  # the engine's: connect timeout, statement timeout
        self.check = check  # raises while the database is known to be unreachable
        self.failed = failed  # told of a read that found the database unreachable
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock = asyncio.Lock()
        self._turns = asyncio.Semaphore(size)  # FIFO: the longest waiting read goes first

    async def fetch(self, sql: str, parameters: Sequence[Any]) -> Iterable[Sequence[Any]]:
        self.check()
        async with self._turns:
            self.check()  # the database may have been found unreachable while this waited
            return await self._fetch(sql, parameters)

    async def _fetch(self, sql: str, parameters: Sequence[Any]) -> Iterable[Sequence[Any]]:
        pool = self._pool or await self._open()
        connection = None
        try:
            async with asyncio.timeout(self.bound):
                connection = await pool.acquire()  # an idle one, or one opened: never a queue
                rows: Iterable[Sequence[Any]] = await connection.fetch(sql, *parameters)
        except BaseException as error:
            if connection is not None:
                connection.terminate()  # mid-statement, maybe: never handed to another read
            if isinstance(error, Exception) and fault_of(error) is Fault.UNAVAILABLE:
                self.failed()
            raise
        finally:
            if connection is not None:
                await pool.release(connection)
        return rows

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                # No timer per statement (command_timeout) nor per idle connection: each read
                # is bounded as a whole above, and the server ends a long statement itself.
                options = {k: v for k, v in self.connect_args.items() if k != "command_timeout"}
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=0,
                    max_size=self.size,
                    reset=_nothing,
                    max_inactive_connection_lifetime=0,
                    init=_keep_alive,
                    **options,
                )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    def terminate(self) -> None:
        """Drop every connection at once (a stop that could not close them in time)."""
        if self._pool is not None:
            self._pool.terminate()


async def _keep_alive(connection: asyncpg.Connection) -> None:
    keep_alive(connection)


async def _nothing(_connection: asyncpg.Connection) -> None:
    """The reset of a connection given back: none. asyncpg's own (RESET ALL, UNLISTEN *, ...)
    is a round trip per read, and these connections only ever run one SELECT at a time:
    they keep no session state, and one whose SELECT failed is terminated, not given back."""
