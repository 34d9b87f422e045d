"""PostgreSQL connections for single-statement reads, kept apart from the engine's pool.

The compiled read path runs one statement per request. Through the engine's pool each such
read also costs a checkout and a check-in (greenlets, the pool's bookkeeping) and a pre-ping,
a second round trip to the server for every read. Here a read takes an idle connection (or
opens one, up to `size`) and gives it back, with no reset: these connections only ever run
one SELECT at a time and keep no session state. A connection that failed in any way, or
whose read was cut short, is terminated instead. (asyncpg's own pool did the same with more
per read: its release is shielded in a task of its own, and its acquire has timers and a
queue of its own; the turns below make both needless.)

Reads take their turns in arrival order (a FIFO semaphore of `size` turns: asyncpg's pool
queue, where a newcomer could take a connection just given back from under a read that had
waited longer, is gone): under 32 clients on 5 connections, a read left at the back of that
queue over and over waited past its bound, and was counted as the database being
unreachable. Waiting for a turn is this process being busy, not the database being sick, as
for the engine's pool (db/engine.py's CountingPool): it counts for nothing. While a read
holds its turn, the pre-ping's absence means a dead or hung server shows only in the read
itself, so each read is bounded (opening a connection when none is idle, and the statement)
by the connect timeout, and a read that fails because the database is unreachable counts as
a failure towards the engine's latch (db/engine.py). The request then falls back to graphql-
core, whose checkout pings: a second failure trips the latch, and the request answers
SERVICE_UNAVAILABLE within the two bounds. A healthy but slow statement also gives up at the
bound; graphql-core then runs it with the full statement timeout, and its successful
checkout resets the latch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg

from db.faults import Fault, fault_of
from db.keepalive import keep_alive
from db.tasks import Deadlines


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
        # The engine's connect arguments (connect timeout, server settings), without its
        # timer per statement (command_timeout): each read is bounded as a whole here, and
        # the server ends a long statement itself.
        self.options = {k: v for k, v in connect_args.items() if k != "command_timeout"}
        self.check = check  # raises while the database is known to be unreachable
        self.failed = failed  # told of a read that found the database unreachable
        # Each read's bound, kept by one timer for all of them (db/tasks.py): a read on an
        # idle connection is over long before any timer could fire.
        self._deadlines = Deadlines()
        self._turns = asyncio.Semaphore(size)  # FIFO: the longest waiting read goes first
        self._idle: list[asyncpg.Connection] = []
        self._opened: set[asyncpg.Connection] = set()  # idle or reading, for `terminate`

    async def fetch(self, sql: str, parameters: Sequence[Any]) -> Iterable[Sequence[Any]]:
        self.check()
        async with self._turns:
            self.check()  # the database may have been found unreachable while this waited
            return await self._fetch(sql, parameters)

    async def _fetch(self, sql: str, parameters: Sequence[Any]) -> Iterable[Sequence[Any]]:
        connection = None
        try:
            with self._deadlines.within(self.bound):
                connection = self._take_idle() or await self._connect()
                rows: Iterable[Sequence[Any]] = await connection.fetch(sql, *parameters)
        except BaseException as error:
            if connection is not None:
                self._drop(connection)  # mid-statement, maybe: never handed to another read
            if isinstance(error, Exception) and fault_of(error) is Fault.UNAVAILABLE:
                self.failed()
            raise
        self._idle.append(connection)  # no reset: it keeps no session state (one SELECT)
        return rows

    def _take_idle(self) -> asyncpg.Connection | None:
        """The most recently used idle connection still open (the server may have ended
        one meanwhile: it is dropped, and the next one tried)."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():
                return connection
            self._drop(connection)
        return None

    async def _connect(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(self.dsn, **self.options)
        keep_alive(connection)
        self._opened.add(connection)
        return connection

    def _drop(self, connection: asyncpg.Connection) -> None:
        self._opened.discard(connection)
        connection.terminate()

    async def close(self) -> None:
        """Close every connection, once the reads in flight are done (the caller bounds the
        wait, and `terminate`s what is left)."""
        for _ in range(self.size):
            await self._turns.acquire()  # from now on no read starts
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
            self._opened.discard(connection)

    def terminate(self) -> None:
        """Drop every connection at once (a stop that could not close them in time)."""
        self._idle = []
        for connection in list(self._opened):
            self._drop(connection)
