"""Seeing, on PostgreSQL, that a backend waits for a lock: how tests that hold a row open in
a transaction of their own know that the write under test has reached it (no sleep)."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import make_url

# Another backend waiting for a lock: neither the watcher's own nor the holder's.
_WAITING = """
    SELECT count(*) FROM pg_locks
    WHERE NOT granted AND pid <> pg_backend_pid() AND pid <> $1
"""


def dsn_of(database_url: str) -> str:
    """asyncpg's DSN for a SQLAlchemy URL of a test database."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


async def until_waiting(dsn: str, holder: asyncpg.Connection, within: float = 10) -> None:
    """Return once another backend waits for a lock; TimeoutError after `within` seconds."""
    watcher = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(within):
            while True:
                if await watcher.fetchval(_WAITING, holder.get_server_pid()):
                    return
                await asyncio.sleep(0.01)  # polls a condition, bounded by the timeout
    finally:
        await watcher.close()
