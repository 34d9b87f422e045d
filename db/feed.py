"""Waking the readers of the event feed in this process when it may have grown.

The table is the source of truth; this only says when to look again. On PostgreSQL a
dedicated connection LISTENs on `db.events.CHANNEL` (each writing transaction NOTIFYs at
commit, from any server process), and the counter is also read every `fallback_seconds`, so
a notification lost while the connection was down costs latency, never an event. On SQLite
(one machine, so one database file) the same code reads the counter every `poll_seconds`.
The listener starts with the first waiter and stops with `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from db import events
from db.engine import Database
from db.keepalive import KEEPALIVE_SETTINGS, keep_alive
from db.tasks import cancel_and_wait

logger = logging.getLogger("customer_api.feed")


class TooManySubscriptions(Exception):
    """This process serves as many subscriptions as it may (MAX_SUBSCRIPTIONS)."""


class TooManyForHolder(TooManySubscriptions):
    """This holder (a principal) has as many subscriptions as one may hold in this process
    (MAX_SUBSCRIPTIONS_PER_PRINCIPAL)."""


class FeedSignal:
    """The newest event number known to this process, and a way to wait for a newer one; and
    the bounds of the subscriptions it wakes (how many, and how long they wait out an outage)."""

    def __init__(
        self,
        db: Database,
        *,
        poll_seconds: float = 0.05,
        fallback_seconds: float = 2.0,
        max_subscriptions: int = 1000,
        max_per_holder: int = 100,
        outage_seconds: float = 15.0,
    ) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.fallback_seconds = fallback_seconds
        self.max_subscriptions = max_subscriptions
        self.max_per_holder = max_per_holder
        self.outage_seconds = outage_seconds
        self.subscriptions = 0
        self.held: dict[Hashable, int] = {}  # live subscriptions by holder
        self.latest = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def wait_beyond(self, seen: int, at_most: float) -> int:
        """Wait until an event newer than `seen` is known, or `at_most` seconds; the newest."""
        self._start()
        if self.latest <= seen:
            # asyncio.timeout, not wait_for: on Python 3.11 a wait_for cancelled as the event
            # is set returns and drops the cancellation (CPython gh-86296), and the webhook
            # worker, cancelled at shutdown as news came, went on delivering.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(at_most):
                    await self._changed.wait()
        return self.latest

    def _advance(self, latest: int) -> None:
        if latest > self.latest:
            self.latest = latest
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    def acquire(self, holder: Hashable) -> None:
        """Count a live subscription of `holder` (release it when it ends); TooManySubscriptions
        when the process is full, TooManyForHolder when the holder has its share."""
        if self.subscriptions >= self.max_subscriptions:
            raise TooManySubscriptions
        if self.held.get(holder, 0) >= self.max_per_holder:
            raise TooManyForHolder
        self.subscriptions += 1
        self.held[holder] = self.held.get(holder, 0) + 1

    def release(self, holder: Hashable) -> None:
        self.subscriptions -= 1
        self.held[holder] -= 1
        if not self.held[holder]:
            del self.held[holder]

    def _start(self) -> None:
        if self._task is None:
            watch = self._listen if not self.db.is_sqlite else self._poll
            self._task = asyncio.get_running_loop().create_task(watch())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def _read_head(self) -> None:
        self._advance(await events.read_head(self.db))

    async def _poll(self) -> None:
        while True:
            try:
                await self._read_head()
            except Exception as error:
                # The database restarting, say: the next poll tries again. No traceback: an
                # outage would repeat it every poll.
                logger.warning("reading the event counter failed (%s)", type(error).__name__)
            await asyncio.sleep(self.poll_seconds)

    async def _listen(self) -> None:
        dsn = make_url(self.db.url).set(drivername="postgresql").render_as_string(False)
        # Each step is bounded like the pre-ping (a round trip): a half-open connection (a
        # peer that vanished without a word) would otherwise keep the check waiting forever,
        # and subscribers on the idle poll. Retries back off up to the fallback interval.
        bound = self.db.timeouts.connect
        head = events.head_statement(self.db.engine.dialect)  # `events.head`, compiled
        backoff = _Backoff(self.poll_seconds, self.fallback_seconds)
        while True:
            connection = None
            try:
                async with asyncio.timeout(bound):
                    connection = await asyncpg.connect(
                        dsn, timeout=bound, server_settings=dict(KEEPALIVE_SETTINGS)
                    )
                    keep_alive(connection)
                    await connection.add_listener(events.CHANNEL, self._notified)
                while True:  # the safety net, and a check that the connection is alive
                    async with asyncio.timeout(bound):
                        raw = await connection.fetch(head.sql, *head.parameters({}))
                    self._advance(head.rows(raw)[0].last)
                    backoff.succeeded()
                    await asyncio.sleep(self.fallback_seconds)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
                await asyncio.sleep(backoff.failed(error))
            finally:
                if connection is not None:
                    # A close that does not end in time (or is cancelled) aborts the socket.
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1):
                            await connection.close()
                    if not connection.is_closed():
                        connection.terminate()

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.isdigit():
            self._advance(int(payload))


class _Backoff:
    """The listener's retry delays, doubling from `first` up to `most`; a WARNING when it
    starts failing and one when it is back, not one per attempt (an outage would repeat it
    twenty times a second)."""

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self.delay = first
        self.failures = 0

    def failed(self, error: BaseException) -> float:
        """The seconds to wait before the next attempt."""
        if not self.failures:
            logger.warning(
                "the event listener lost its connection (%s); retrying every %g s at most "
                "(subscribers meanwhile see new events at the idle poll)",
                type(error).__name__,
                self.most,
            )
        self.failures += 1
        delay, self.delay = self.delay, min(self.delay * 2, self.most)
        return delay

    def succeeded(self) -> None:
        if self.failures:
            logger.warning("the event listener is connected again after %d attempts", self.failures)
        self.failures = 0
        self.delay = self.first
