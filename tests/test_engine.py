"""The SQLite settings that durability and concurrency depend on, read back from the database.

SQLite only: on PostgreSQL the writes lock the rows they read (`FOR UPDATE`), which the
concurrency tests of the API exercise on both backends.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from db.engine import Database

pytestmark = pytest.mark.sqlite_only


async def pragma(db: Database, name: str) -> object:
    async with db.read() as session:
        return (await session.execute(text(f"PRAGMA {name}"))).scalar_one()


async def test_sqlite_pragmas(db: Database) -> None:
    assert await pragma(db, "journal_mode") == "wal"
    assert await pragma(db, "synchronous") == 2  # FULL
    assert await pragma(db, "foreign_keys") == 1
    assert await pragma(db, "busy_timeout") == 30_000


async def test_read_then_write_transactions_do_not_lose_updates(db: Database) -> None:
    """Twenty concurrent increments of one counter: each reads, then writes. None may be lost."""
    async with db.write() as session:
        await session.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        await session.execute(text("INSERT INTO counter VALUES (0)"))

    async def increment() -> None:
        async with db.write() as session:
            n = (await session.execute(text("SELECT n FROM counter"))).scalar_one()
            await asyncio.sleep(0)  # let the others run between the read and the write
            await session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})

    await asyncio.gather(*(increment() for _ in range(20)))
    async with db.read() as session:
        assert (await session.execute(text("SELECT n FROM counter"))).scalar_one() == 20


async def test_reads_proceed_while_a_write_is_open(db: Database) -> None:
    async with db.write() as session:
        await session.execute(text("CREATE TABLE t (n INTEGER)"))
    async with db.write() as writer:
        await writer.execute(text("INSERT INTO t VALUES (1)"))
        # WAL: a reader is not blocked by the open write, and does not see it yet.
        async with db.read() as reader:
            assert (await reader.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    async with db.read() as reader:
        assert (await reader.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
