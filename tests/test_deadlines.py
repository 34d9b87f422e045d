"""db/tasks.py's Deadlines: the bounds of the request body's read and of PostgreSQL reads, kept
by one timer, behave as asyncio.timeout does."""

from __future__ import annotations

import asyncio

import pytest

from db.tasks import Deadlines

TICK = 0.02


async def test_a_wait_past_its_deadline_raises_timeout_error_within_a_tick() -> None:
    deadlines = Deadlines(tick=TICK)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TimeoutError), deadlines.within(0.05):
        await asyncio.Event().wait()  # never set
    waited = loop.time() - began
    assert waited >= 0.05
    assert waited < 0.05 + TICK + 1.0  # the bound holds, with slack for a busy machine
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # the cancellation was the bound's, and is spent


async def test_a_wait_that_ends_in_time_is_left_alone_and_the_timer_stops() -> None:
    deadlines = Deadlines(tick=TICK)
    for _ in range(3):
        with deadlines.within(5):
            await asyncio.sleep(0)
    with deadlines.within(5):
        pass  # a block with nothing to wait for
    assert deadlines._waits == {}
    timer = deadlines._timer
    assert timer is not None  # scheduled by the first wait
    timer.cancel()
    deadlines._check()  # its tick, now rather than after waiting for it
    assert deadlines._timer is None  # no wait open: nothing ticks


async def test_a_cancellation_from_elsewhere_is_passed_on_not_turned_into_a_timeout() -> None:
    deadlines = Deadlines(tick=TICK)
    started = asyncio.Event()

    async def bounded() -> None:
        with deadlines.within(5):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(bounded())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines._waits == {}


async def test_a_cancellation_from_elsewhere_wins_over_an_expired_bound() -> None:
    deadlines = Deadlines(tick=TICK)
    raised: list[BaseException] = []

    async def bounded() -> None:
        try:
            with deadlines.within(0.01):
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    asyncio.current_task().cancel()  # type: ignore[union-attr]  # a stop, too
                    raise
        except BaseException as error:
            raised.append(error)
            raise

    task = asyncio.create_task(bounded())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(raised[0], asyncio.CancelledError)


async def test_waits_of_several_tasks_each_keep_their_own_deadline() -> None:
    deadlines = Deadlines(tick=TICK)
    release = asyncio.Event()

    async def bounded(seconds: float) -> str:
        try:
            with deadlines.within(seconds):
                await release.wait()
        except TimeoutError:
            return "timed out"
        return "released"

    short = asyncio.create_task(bounded(0.03))
    long = asyncio.create_task(bounded(30))
    assert await short == "timed out"
    release.set()
    assert await long == "released"
