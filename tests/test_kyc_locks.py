"""KYC writes lock a customer before its verification (db/kyc.py, LOCK ORDER).

On PostgreSQL two writes that lock the same two rows in opposite orders can each wait for
the other: PostgreSQL then aborts one of them (a deadlock), and a client or the expiry
sweep gets an error. A start holds its customer while it may expire the customer's newest
verification; the sweep used to lock the verifications of a batch and then their customers.
These tests hold a customer's lock in a transaction of their own, as a start does, and show
that the sweep and a result step around it or wait for it, never holding the verification
meanwhile. SQLite takes one writer at a time (BEGIN IMMEDIATE), so they run on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from db import kyc
from db.engine import Database
from server import Settings
from tests.support.clock import Clock
from tests.support.graphql_client import GraphQLClient
from tests.support.pg_locks import dsn_of, until_waiting

pytestmark = [pytest.mark.parametrize("backend", ["postgresql"]), pytest.mark.both_executors]

# A bound on each step: none of them waits on a lock with the fix; without it the sweep would
# wait for the held customer until this ends it.
STEP = 5.0


@asynccontextmanager
async def holding_customer(
    database_url: str, external_id: str
) -> AsyncIterator[asyncpg.Connection]:
    """The customer's row locked (FOR UPDATE) in a transaction of the test's, as a start
    holds it, until the block ends; then the transaction commits what the block did."""
    connection = await asyncpg.connect(dsn_of(database_url))
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(
            "SELECT id FROM customer WHERE external_customer_id = $1 FOR UPDATE", external_id
        )
        yield connection
        await transaction.commit()
    finally:
        await connection.close()


async def sweep(db: Database, clock: Clock, settings: Settings) -> int:
    async with asyncio.timeout(STEP), db.write() as session:
        return await kyc.expire_stale(session, clock(), settings.kyc_ttl)


async def test_the_sweep_skips_a_customer_whose_start_holds_it(
    gql: GraphQLClient, clock: Clock, db: Database, settings: Settings, database_url: str
) -> None:
    for external_id in ("held", "free"):
        await gql.create(external_id)
        await gql.start_kyc(external_id)
    clock.advance(settings.kyc_ttl)
    async with holding_customer(database_url, "held") as holder:
        assert await sweep(db, clock, settings) == 1  # "free" only: "held" is not waited for
        # The holder, as a start that expires on read, can still take the verification.
        async with asyncio.timeout(STEP):
            await holder.execute(
                "UPDATE kyc_verification SET updated_at = updated_at WHERE customer_id ="
                " (SELECT id FROM customer WHERE external_customer_id = 'held')"
            )
    assert await sweep(db, clock, settings) == 1  # "held", now that it is free
    assert (await gql.customer("held") or {})["kycStatus"] == "EXPIRED"


async def test_a_result_waits_for_the_customer_before_it_takes_the_verification(
    gql: GraphQLClient, database_url: str
) -> None:
    await gql.create("c-1")
    started = await gql.start_kyc("c-1")
    verification = started["verification"]["id"]
    async with holding_customer(database_url, "c-1") as holder:
        result = asyncio.ensure_future(gql.record_kyc(verification, "VERIFIED"))
        await until_waiting(dsn_of(database_url), holder)
        # The result waits for the customer, holding no lock on the verification: the
        # holder takes it at once. (With the old order the result held the verification and
        # waited for the customer; PostgreSQL found a deadlock and aborted one of the two.)
        async with asyncio.timeout(STEP):
            await holder.execute(
                "UPDATE kyc_verification SET updated_at = updated_at WHERE customer_id ="
                " (SELECT id FROM customer WHERE external_customer_id = 'c-1')"
            )
        assert not result.done()
    async with asyncio.timeout(STEP):
        payload = await result
    assert payload["userErrors"] == []
    assert payload["verification"]["status"] == "VERIFIED"
