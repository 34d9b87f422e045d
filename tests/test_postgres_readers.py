"""The compiled path's own PostgreSQL connections (db/postgres_readers.py).

They skip the pool's pre-ping, so what a ping would have caught shows in the read itself:
the read fails (and the request falls back to graphql-core), the failure counts towards the
engine's latch, and the connection is never handed to another read. The sick-database
bounds end to end are tests/test_faults.py's.
"""

from __future__ import annotations

import contextlib

import asyncpg
import pytest
from asyncpg.exceptions import InternalClientError
from sqlalchemy import make_url

from db.customer_rows import CustomerReads
from db.engine import CountingPool, Database, Timeouts

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
