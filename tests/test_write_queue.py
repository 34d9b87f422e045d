"""Writes on SQLite take turns in arrival order inside one process; PostgreSQL's stay concurrent."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from db.engine import Database


async def test_sqlite_writers_commit_in_arrival_order(db: Database, backend: str) -> None:
    async with db.write() as session:
        await session.execute(text("CREATE TABLE turn (n INTEGER NOT NULL, at INTEGER NOT NULL)"))

    async def write(n: int) -> None:
        async with db.write() as session:
            await asyncio.sleep(0)  # give the others every chance to overtake
            # `at`: how many rows were committed before this one's transaction saw the table.
            await session.execute(text("INSERT INTO turn SELECT :n, count(*) FROM turn"), {"n": n})

    writers = []
    for n in range(32):
        writers.append(asyncio.create_task(write(n)))
        await asyncio.sleep(0)  # each one arrives before the next
    await asyncio.gather(*writers)
    async with db.read() as session:
        order = list((await session.scalars(text("SELECT n FROM turn ORDER BY at, n"))).all())
    if backend == "sqlite":
        assert order == list(range(32))
    else:  # concurrent: no order is promised
        assert sorted(order) == list(range(32))


async def test_a_second_writer_waits_on_sqlite_only(db: Database, backend: str) -> None:
    async with db.write() as session:
        await session.execute(text("CREATE TABLE a (n INTEGER)"))
        await session.execute(text("CREATE TABLE b (n INTEGER)"))
    second_done = asyncio.Event()

    async def second() -> None:
        async with db.write() as session:
            await session.execute(text("INSERT INTO b VALUES (2)"))
        second_done.set()

    async with db.write() as first:
        await first.execute(text("INSERT INTO a VALUES (1)"))
        task = asyncio.create_task(second())
        if backend == "postgresql":
            # Different rows: the second commits while the first is still open.
            await asyncio.wait_for(second_done.wait(), timeout=10)
        else:
            for _ in range(20):
                await asyncio.sleep(0)
            assert not second_done.is_set()  # its turn comes when the first commits
    await asyncio.wait_for(task, timeout=10)
    assert second_done.is_set()
