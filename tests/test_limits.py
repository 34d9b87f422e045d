"""Request limits: one past a limit is refused before anything runs, one at it passes.

The limits here are set small so that queries at and past them are short; the defaults
are tested against abusive documents in tests/test_http.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from db.engine import Database
from tests.support.graphql_client import GraphQLClient
from tests.support.statements import counting_statements

# What this module tests does not depend on the database engine: SQLite proves it.
pytestmark = [pytest.mark.sqlite_only, pytest.mark.both_executors]


LIMITS: dict[str, Any] = {
    "max_query_depth": 4,
    "max_aliases": 3,
    "max_directives": 3,
    "max_tokens": 60,
    "max_cost": 301,
    "max_field_comparisons": 3,
}
IDS = ", ".join(f'"c-{n}"' for n in range(45))


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    return LIMITS


CASES: dict[str, tuple[str, str]] = {
    "depth": (
        "{ customers { nodes { data { email } } } }",
        "{ customers { edges { node { data { email } } } } }",
    ),
    "aliases": (
        "{ a: customers { totalCount } b: customers { totalCount } c: customers { totalCount } }",
        "{ a: customers { totalCount } b: customers { totalCount } c: customers { totalCount } "
        "d: customers { totalCount } }",
    ),
    "directives": (
        "{ customers @include(if: true) { totalCount @include(if: true) "
        "nodes @include(if: true) { id } } }",
        "{ customers @include(if: true) { totalCount @include(if: true) "
        "nodes @include(if: true) { id @include(if: true) } } }",
    ),
    "tokens": (  # 16 tokens and one per id
        "{ customers(filter: {externalCustomerIds: [" + IDS[6:] + "]}) { totalCount } }",
        "{ customers(filter: {externalCustomerIds: [" + IDS + "]}) { totalCount } }",
    ),
    "comparisons": (
        "{ customers { totalCount ...Count ... on CustomerConnection { totalCount } } } "
        "fragment Count on CustomerConnection { totalCount ...Count2 ...Count2 } "
        "fragment Count2 on CustomerConnection { pageInfo { hasNextPage } }",
        "{ customers { totalCount ...Count ... on CustomerConnection { totalCount } } } "
        "fragment Count on CustomerConnection { totalCount ...Count2 } "
        "fragment Count2 on CustomerConnection { totalCount }",
    ),
    "cost": (
        "{ customers(first: 100) { nodes { id externalCustomerId } } }",
        "{ customers(first: 100) { totalCount nodes { id externalCustomerId } } }",
    ),
}


async def run(gql: GraphQLClient, db: Database, query: str) -> tuple[dict[str, Any], list[str]]:
    with counting_statements(db) as statements:
        response = await gql.post(query)
    return response.json(), statements


@pytest.mark.parametrize("limit", CASES)
async def test_at_the_limit_passes(gql: GraphQLClient, db: Database, limit: str) -> None:
    await gql.create("c-1")
    body, statements = await run(gql, db, CASES[limit][0])
    assert "errors" not in body, body
    assert body["data"]
    assert statements  # it ran


@pytest.mark.parametrize("limit", CASES)
async def test_one_past_the_limit_is_refused_before_anything_runs(
    gql: GraphQLClient, db: Database, limit: str
) -> None:
    await gql.create("c-1")
    body, statements = await run(gql, db, CASES[limit][1])
    assert statements == []
    assert body.get("data") is None
    [error] = body["errors"]
    assert "Traceback" not in error["message"]
    expected = {
        "depth": "5 fields deep; at most 4",
        "aliases": "The document uses 4 aliases; at most 3 are allowed.",
        "directives": "The document uses 4 directives; at most 3 are allowed.",
        "comparisons": "would take about 7 comparisons; at most 3 are allowed. Most of them "
        "come from 'totalCount', asked for 4 times in one selection set on CustomerConnection",
        "tokens": "more than 60 tokens",
        "cost": "cost 302; at most 301",
    }[limit]
    assert expected in error["message"]


async def test_cost_is_reported(gql: GraphQLClient) -> None:
    # The bucket (tests/conftest.py's RATE_LIMIT_MAX_COST) pays for the one that runs; a
    # refused one costs nothing (tests/test_rate_limits.py tests the buckets).
    body = (await gql.post(CASES["cost"][0])).json()
    throttle_status = {
        "maximumAvailable": 1_000_000_000,
        "currentlyAvailable": 1_000_000_000 - 301,
        "restoreRate": 500.0,
    }
    assert body["extensions"]["cost"] == {
        "requestedQueryCost": 301,
        "actualQueryCost": 301,
        "throttleStatus": throttle_status,
    }
    refused = (await gql.post(CASES["cost"][1])).json()
    assert refused["extensions"]["cost"] == {
        "requestedQueryCost": 302,
        "actualQueryCost": None,
        "throttleStatus": throttle_status,
    }
    assert refused["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
