"""One connection budget: the engine's pool and the compiled reads' own connections together
never hold more than DB_POOL_SIZE + DB_MAX_OVERFLOW connections (db/driver.py's
ConnectionBudget)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import make_url, text

from db.customer_rows import CustomerReads
from db.driver import ConnectionBudget
from db.engine import Database, Timeouts


@pytest.mark.parametrize(("pool_size", "max_overflow"), [(1, 0), (1, 1), (2, 1), (5, 10), (8, 0)])
def test_the_budget_is_shared_never_exceeded(pool_size: int, max_overflow: int) -> None:
    budget = ConnectionBudget.share(pool_size, max_overflow)
    assert sum(budget) == pool_size + max_overflow
    assert budget.pool_size >= 1
    assert budget.readers <= pool_size


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_process_under_load_holds_no_more_than_its_budget(database_url: str) -> None:
    db = Database(database_url, pool_size=2, max_overflow=1, timeouts=Timeouts(pool_checkout=10))
    reads = CustomerReads(db)
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    admin = await asyncpg.connect(dsn)
    held: list[int] = []
    busy = True

    async def watch() -> None:
        while busy:
            held.append(
                await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            await asyncio.sleep(0)

    async def session_read() -> None:
        async with db.read() as session:
            await session.execute(text("SELECT pg_sleep(0.02)"))

    try:
        watcher = asyncio.create_task(watch())
        for _ in range(3):
            await asyncio.gather(
                *(reads.count() for _ in range(20)), *(session_read() for _ in range(20))
            )
        busy = False
        await watcher
        assert max(held) <= 3, held
        assert max(held) >= 2  # both kinds of connection were open
    finally:
        await admin.close()
        await db.dispose()
