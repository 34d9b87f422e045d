"""What both executors must keep, each proven on each (the compiled path on, and off).

The compiled path answers the documents it covers and graphql-core the rest, so a test that
runs only with the default settings proves a behaviour of one executor. These run on both:
a page reads its verifications in statements that do not grow with it; a payload keeps its
sandbox warnings; a write refused by its checks runs no statement that changes anything
(a create refused on every key, none at all); a write that meets a database fault runs once.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from db.engine import Database
from db.faults import Fault
from db.rules import Environment
from tests.support.graphql_client import GraphQLClient
from tests.support.pg_locks import dsn_of
from tests.support.statements import counting_statements

PAGE = """
query($first: Int) {
  customers(first: $first) {
    nodes { externalCustomerId kycStatus kycVerifications { id type status createdAt } }
  }
}
"""


pytestmark = pytest.mark.both_executors


async def test_a_pages_verifications_take_statements_that_do_not_grow_with_it(
    gql: GraphQLClient, db: Database
) -> None:
    for n in range(12):
        await gql.create(f"c-{n}")
        await gql.start_kyc(f"c-{n}")
        await gql.start_kyc(f"c-{n}")  # the active one again: one verification each
    counted = []
    for first in (2, 12):
        with counting_statements(db) as statements:
            response = await gql.post(PAGE, {"first": first})
        nodes = response.json()["data"]["customers"]["nodes"]
        assert [len(node["kycVerifications"]) for node in nodes] == [1] * first
        counted.append(len(statements))
    assert counted[0] == counted[1] <= 2, counted


@pytest.mark.parametrize("environment", [Environment.SANDBOX])
async def test_create_and_update_payloads_keep_their_sandbox_warnings(gql: GraphQLClient) -> None:
    warned = [
        {
            "field": ["input", "data", "email"],
            "code": "DISPOSABLE_EMAIL",
            "message": "mailinator.com hands out disposable addresses; use a permanent address.",
        },
        {
            "field": ["input", "data", "email"],
            "code": "EMAIL_PLUS_SUFFIX",
            "message": "Use the address without its '+' suffix (name@example.com, not "
            "name+tag@example.com).",
        },
    ]
    created = await gql.create("c-1", email="a+b@mailinator.com")
    assert (created["userErrors"], created["warnings"]) == ([], warned)
    updated = await gql.update("c-1", email="c+d@mailinator.com")
    assert (updated["userErrors"], updated["warnings"]) == ([], warned)
    assert updated["customer"]["data"]["email"] == "c+d@mailinator.com"


def changing(statements: list[str]) -> list[str]:
    """The statements that write: any but a SELECT or a savepoint's."""
    return [s for s in statements if not s.lstrip().upper().startswith(("SELECT", "SAVEPOINT"))]


async def test_a_create_refused_on_every_key_runs_no_statement(
    gql: GraphQLClient, db: Database
) -> None:
    with counting_statements(db) as statements:
        payload = await gql.create("bad id", email="not-an-address")
    assert [e["code"] for e in payload["userErrors"]] == ["INVALID", "INVALID_EMAIL"]
    assert statements == []


async def test_a_refused_create_or_update_writes_nothing(gql: GraphQLClient, db: Database) -> None:
    await gql.create("c-1")
    await gql.create("c-2")
    with counting_statements(db) as statements:
        taken = await gql.create("c-3", email="C-1@example.com")
        bad = await gql.update("c-2", email="not-an-address", city="Newark")
        clash = await gql.update("c-2", email="c-1@example.com")
    assert [e["code"] for e in taken["userErrors"]] == ["TAKEN"]
    assert [e["code"] for e in bad["userErrors"]] == ["INVALID_EMAIL"]
    assert [e["code"] for e in clash["userErrors"]] == ["TAKEN"]
    assert statements, "the checks read the stored customers"
    assert changing(statements) == []
    assert (await gql.customer("c-2") or {})["data"]["city"] is None


CREATE = """
mutation($input: CreateCustomerInput!) {
  createCustomer(input: $input) { customer { externalCustomerId } userErrors { code } }
}
"""


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_write_that_meets_a_database_fault_runs_once_and_says_so(
    database_url: str, db: Database, http: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    """Past its commit window nobody can tell whether a failed write was stored: running it
    again (as a fallback to the other executor would) could answer TAKEN for the client's own
    customer, and a write stuck on a lock would wait twice. Here the event counter is held,
    so the write waits out its lock_timeout after it has inserted the customer."""
    holder = await asyncpg.connect(dsn_of(database_url))
    try:
        async with holder.transaction():
            await holder.execute("UPDATE event_counter SET last = last WHERE id = 1")
            with counting_statements(db) as statements:
                response = await http.post(
                    "/graphql",
                    json={"query": CREATE, "variables": {"input": {
                        "externalCustomerId": "c-1", "data": {"email": "c-1@example.com"}
                    }}},
                    headers={"accept": "application/graphql-response+json"},
                )  # fmt: skip
    finally:
        await holder.close()
    assert len([s for s in statements if s.startswith("INSERT INTO customer ")]) == 1
    assert response.status_code == 503, response.text
    [error] = response.json()["errors"]
    assert error["path"] == ["createCustomer"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert error["message"].startswith(Fault.LOCK_TIMEOUT.value)
    assert await gql.customer("c-1") is None
