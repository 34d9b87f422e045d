"""Stopping background tasks without losing a cancellation on the way."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for its end.

    `suppress(CancelledError)` around `await task` would also swallow a cancellation of the
    caller itself (a stop that gave up waiting, say), which then goes on as if nothing had
    happened: that one is passed on.
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class Deadlines:
    """Bounds on waits that nearly always end at once, with one timer for all of them.

    `asyncio.timeout` costs a timer of the loop's for each wait (about 5 us with its context
    manager): most of a request's bounded waits (its body, which arrived with its head; a read
    on an idle connection) end before any timer could fire. Here a wait only writes down its
    deadline, and one timer, scheduled while a wait is open and run every `tick` seconds,
    cancels the task of each wait past its deadline, which then raises TimeoutError as
    `asyncio.timeout` would (a cancellation from anywhere else is passed on). A deadline is
    kept to within `tick`.

    Each owner (the view, the PostgreSQL readers) keeps one; used from one event loop at a time.
    """

    def __init__(self, tick: float = 0.05) -> None:
        self.tick = tick
        self._waits: dict[asyncio.Task[Any], float] = {}  # the open waits' deadlines
        self._expired: set[asyncio.Task[Any]] = set()  # cancelled here, not yet told
        self._timer: asyncio.TimerHandle | None = None

    def within(self, seconds: float) -> Bound:
        """`with deadlines.within(s):` bounds what the block awaits, like `asyncio.timeout`."""
        return Bound(self, seconds)

    def _open(self, task: asyncio.Task[Any], seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._waits[task] = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._check)

    def _check(self) -> None:
        self._timer = None
        if not self._waits:
            return  # idle: the next wait schedules the timer again
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, deadline in list(self._waits.items()):
            if deadline <= now:
                del self._waits[task]
                self._expired.add(task)
                task.cancel()
        self._timer = loop.call_later(self.tick, self._check)


class Bound:
    """One wait's bound (see `Deadlines`): a synchronous context manager, cheaper than an
    asynchronous one."""

    __slots__ = ("deadlines", "seconds", "task")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self.deadlines = deadlines
        self.seconds = seconds
        self.task: asyncio.Task[Any] | None = None

    def __enter__(self) -> Bound:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines bound waits inside a task")
        self.task = task
        self.deadlines._open(task, self.seconds)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: object, trace: object) -> None:
        task = self.task
        assert task is not None
        deadlines = self.deadlines
        deadlines._waits.pop(task, None)
        if task in deadlines._expired:
            deadlines._expired.discard(task)
            # Ours, when no other cancellation is pending (as asyncio.timeout tells them).
            if kind is asyncio.CancelledError and task.uncancel() == 0:
                raise TimeoutError from None
