"""A write that loses a race for a unique value reports TAKEN and writes nothing.

The writes check uniqueness first (to report it with every other problem), but on PostgreSQL
another transaction can take the value between the check and the write: its uncommitted row
is invisible to the check, and the unique index makes the write wait for it, then refuses it.
These tests hold such a row open in a transaction of their own, let the API's write reach
the index and wait there (seen in pg_locks, not guessed with a sleep), then commit it.

SQLite has no such race: its writers take the write lock before they check (BEGIN
IMMEDIATE), so the tests run on PostgreSQL only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from tests.support.graphql_client import GraphQLClient
from tests.support.pg_locks import dsn_of, until_waiting

pytestmark = [pytest.mark.parametrize("backend", ["postgresql"]), pytest.mark.both_executors]

_INSERT = """
    INSERT INTO customer (external_customer_id, external_id_key, email, email_key,
                          created_at, updated_at)
    VALUES ($1::text, lower($1::text), $2::text, lower($2::text), now(), now())
"""


class Holder:
    """A customer inserted in a transaction of the test's, left open until `commit()`."""

    def __init__(self, dsn: str, connection: asyncpg.Connection) -> None:
        self.dsn = dsn
        self.connection = connection

    async def blocks(self, write: Awaitable[dict[str, Any]]) -> asyncio.Task[dict[str, Any]]:
        """Start `write` and return once PostgreSQL shows it waiting for a lock of ours."""
        task: asyncio.Task[dict[str, Any]] = asyncio.ensure_future(write)
        await until_waiting(self.dsn, self.connection)
        return task


@asynccontextmanager
async def held_customer(database_url: str, external_id: str, email: str) -> AsyncIterator[Holder]:
    """A customer inserted in a transaction left open until the block ends, then committed."""
    dsn = dsn_of(database_url)
    connection = await asyncpg.connect(dsn)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(_INSERT, external_id, email)
        yield Holder(dsn, connection)
        await transaction.commit()
    finally:
        await connection.close()


async def test_a_create_that_loses_the_race_for_an_email_reports_taken(
    gql: GraphQLClient, database_url: str
) -> None:
    async with held_customer(database_url, "other", "bob@example.com") as holder:
        task = await holder.blocks(gql.create("c-1", email="BOB@example.com"))
    payload = await task
    assert payload["customer"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["input", "data", "email"], "TAKEN")
    ]
    assert await gql.customer("c-1") is None
    feed = await gql.run("customer_events", first=10)
    assert feed["customerEvents"]["nodes"] == []  # nothing told of a customer never made


async def test_an_update_that_loses_the_race_for_an_email_reports_taken_and_changes_nothing(
    gql: GraphQLClient, database_url: str
) -> None:
    await gql.create("c-1", email="ann@example.com", city="Boston")
    async with held_customer(database_url, "other", "bob@example.com") as holder:
        task = await holder.blocks(gql.update("c-1", email="bob@example.com", city="Denver"))
    payload = await task
    assert payload["customer"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["input", "data", "email"], "TAKEN")
    ]
    customer = await gql.customer("c-1")
    assert customer is not None
    assert (customer["data"]["email"], customer["data"]["city"]) == ("ann@example.com", "Boston")
    feed = await gql.run("customer_events", first=10)
    assert [event["type"] for event in feed["customerEvents"]["nodes"]] == ["CUSTOMER_CREATED"]
