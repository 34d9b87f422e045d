"""The compiled path's own PostgreSQL connections (db/postgres_readers.py).

They skip the pool's pre-ping, so what a ping would have caught shows in the read itself:
the read fails (and the request falls back to graphql-core), the failure counts towards the
engine's latch, and the connection is never handed to another read. The sick-database
bounds end to end are tests/test_faults.py's.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest
from asyncpg.exceptions import InternalClientError
from sqlalchemy import make_url

from db.customer_rows import CustomerReads
from db.engine import CountingPool, Database, Timeouts
from db.postgres_readers import PostgresReaders

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


async def test_a_reader_whose_server_side_went_away_fails_once_then_reads_again(
    database_url: str,
) -> None:
    db = Database(database_url, timeouts=Timeouts())
    reads = CustomerReads(db)
    pool = db.engine.pool
    assert isinstance(pool, CountingPool)
    try:
        assert await reads.count() == 0
        # The server ends every other session of this database: the reader's among them.
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        admin = await asyncpg.connect(dsn)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert ended >= 1
        # The next read fails, unless asyncpg noticed the lost connection first (a timing):
        # the request would then fall back to graphql-core.
        lost = (asyncpg.PostgresError, asyncpg.InterfaceError, InternalClientError, OSError)
        with contextlib.suppress(*lost):
            await reads.count()
        pool.latch.check()  # one failure does not make an outage
        assert await reads.count() == 0  # a new connection, never the dead one again
    finally:
        await db.dispose()


async def test_reads_fail_at_once_while_the_database_is_known_unreachable(
    database_url: str,
) -> None:
    db = Database(database_url, timeouts=Timeouts())
    pool = db.engine.pool
    assert isinstance(pool, CountingPool)
    try:
        pool.latch.trip()
        pool.latch.trip()  # two failures in a row: unreachable for a moment
        with pytest.raises(ConnectionError):
            await CustomerReads(db).count()
    finally:
        await db.dispose()


async def test_a_read_waiting_for_its_turn_is_busy_not_unreachable(database_url: str) -> None:
    """Only a read holding a connection is bounded and counted: under 32 clients on a few
    connections, a read that waited its turn past the bound once counted as the database
    being unreachable, and two of them tripped the latch (503s in a healthy bench run)."""
    failures: list[None] = []
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    readers = PostgresReaders(
        dsn, 1, bound=2.0, connect_args={}, check=lambda: None, failed=lambda: failures.append(None)
    )
    try:
        # One connection, two reads of 1.2 s: the second waits 1.2 s for its turn, then
        # holds it 1.2 s, 2.4 s in all against a bound of 2 s for the time a turn is held.
        reads = [readers.fetch("SELECT $1::int, pg_sleep(1.2)", [n]) for n in range(2)]
        answers = await asyncio.gather(*reads)
        assert [next(iter(rows))[0] for rows in answers] == [0, 1]
        assert failures == []
    finally:
        await readers.close()
