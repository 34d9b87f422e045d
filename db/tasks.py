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
