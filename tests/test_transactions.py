"""`Database.transaction()`: a write on the driver's connection without an ORM session, as
createCustomer and updateCustomer run. It commits, rolls back, and never hands a connection
left inside a transaction to the next writer."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest
from sqlmodel import col, select

from db import customers, events
from db.engine import Database
from db.models import CustomerEvent, EventType, utc_now
from tests.support.pg_locks import dsn_of


async def stored(db: Database, external_id: str) -> bool:
    async with db.read() as session:
        return await customers.get_customer(session, external_id) is not None


async def head(db: Database) -> int:
    async with db.read() as session:
        return await events.head(session)


async def create(db: Database, external_id: str) -> None:
    async with db.transaction() as driver:
        outcome = await customers.create_customer(
            driver, external_id, {"email": f"{external_id}@example.com"}, now=utc_now(), who="t"
        )
        assert outcome.customer is not None, outcome.problems


async def test_a_transaction_commits_its_write_and_its_event(db: Database) -> None:
    before = await head(db)
    await create(db, "kept")
    assert await stored(db, "kept")
    assert await head(db) == before + 1


async def test_what_raises_inside_is_rolled_back_and_the_connection_serves_again(
    db: Database,
) -> None:
    before = await head(db)

    async def undone() -> None:
        async with db.transaction() as driver:
            await customers.create_customer(
                driver, "undone", {"email": "undone@example.com"}, now=utc_now(), who="t"
            )
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        await undone()
    assert not await stored(db, "undone")
    assert await head(db) == before
    await create(db, "after")  # the same pool, the same (or a fresh) connection
    assert await stored(db, "after")


async def test_a_cancelled_transaction_is_never_handed_on_mid_transaction(db: Database) -> None:
    """A request cancelled inside its write (a client gone, a deadline) leaves its connection
    inside a transaction. Handed to the next writer, that one would commit the cancelled
    write with its own (PostgreSQL), or wait on its write lock for good (SQLite)."""
    inside = asyncio.Event()

    async def cancelled() -> None:
        async with db.transaction() as driver:
            await customers.create_customer(
                driver, "cancelled", {"email": "cancelled@example.com"}, now=utc_now(), who="t"
            )
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(cancelled())
    await inside.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # More writes than the pool keeps, one after another: every connection it holds is used.
    for n in range(16):
        await create(db, f"next-{n}")
    assert not await stored(db, "cancelled")
    assert all([await stored(db, f"next-{n}") for n in range(16)])


async def test_events_appended_together_are_numbered_in_order_without_a_gap(
    db: Database,
) -> None:
    """The counter's statement numbers them all (on PostgreSQL it writes the first too)."""
    before = await head(db)
    now = utc_now()
    told = [
        events.NewEvent(EventType.CUSTOMER_UPDATED, f"c-{n}", "t", now, ["city"]) for n in range(3)
    ]
    async with db.transaction() as driver:
        await events.append(driver, told, now)
        await events.append(driver, told[:1], now)
    async with db.read() as session:
        rows = list(await session.scalars(select(CustomerEvent).order_by(col(CustomerEvent.id))))
    assert [(row.id, row.external_customer_id) for row in rows] == [
        (before + 1, "c-0"),
        (before + 2, "c-1"),
        (before + 3, "c-2"),
        (before + 4, "c-0"),
    ]
    assert {(row.type, row.changed_fields, row.actor) for row in rows} == {
        (EventType.CUSTOMER_UPDATED, "city", "t")
    }
    assert await head(db) == before + 4


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_write_notifies_the_feed_listeners_with_its_newest_event(
    db: Database, database_url: str
) -> None:
    """Subscriptions and webhook workers of every process wake on this (db/feed.py); without
    it they would see new events only at the 2 s safety poll."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(dsn_of(database_url))
    try:
        await listener.add_listener(events.CHANNEL, lambda *args: heard.put_nowait(args[-1]))
        await create(db, "heard")
        async with asyncio.timeout(10):  # a bound on a wait that should end at once
            assert await heard.get() == str(await head(db))
    finally:
        await listener.close()
