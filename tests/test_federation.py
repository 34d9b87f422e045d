"""The server as an Apollo Federation 2 subgraph: its SDL and entity lookups, batched."""

from __future__ import annotations

from typing import Any

import pytest

from db.engine import Database
from tests.support.graphql_client import GraphQLClient
from tests.support.statements import counting_statements

# What this module tests does not depend on the database engine: SQLite proves it.
pytestmark = [pytest.mark.sqlite_only, pytest.mark.both_executors]


async def test_service_sdl_declares_customer_keys(gql: GraphQLClient) -> None:
    sdl = (await gql.run("service"))["_service"]["sdl"]
    assert '@link(url: "https://specs.apollo.dev/federation/v2.11"' in sdl
    assert (
        'type Customer implements Node @key(fields: "externalCustomerId") @key(fields: "id")' in sdl
    )


async def entities(gql: GraphQLClient, representations: list[dict[str, Any]]) -> list[Any]:
    found: list[Any] = (await gql.run("entities", representations=representations))["_entities"]
    return found


async def test_entities_by_either_key_in_order(gql: GraphQLClient) -> None:
    first = (await gql.create("c-1"))["customer"]
    await gql.create("c-2")
    found = await entities(
        gql,
        [
            {"__typename": "Customer", "externalCustomerId": "c-2"},
            {"__typename": "Customer", "externalCustomerId": "nobody"},
            {"__typename": "Customer", "id": first["id"]},
            {"__typename": "Customer", "id": "not-an-id"},
        ],
    )
    assert [f and f["externalCustomerId"] for f in found] == ["c-2", None, "c-1", None]
    assert found[0]["data"] == {"email": "c-2@example.com"}


async def test_many_entities_take_one_query_per_key(gql: GraphQLClient, db: Database) -> None:
    created = [(await gql.create(f"c-{n}"))["customer"] for n in range(25)]
    by_external_id = [{"__typename": "Customer", "externalCustomerId": f"c-{n}"} for n in range(25)]
    # (the key's last-used stamp was written by the creates, so no write comes in between)
    with counting_statements(db) as statements:
        found = await entities(gql, by_external_id)
    assert [f["externalCustomerId"] for f in found] == [f"c-{n}" for n in range(25)]
    assert len(statements) == 1, statements

    by_id = [{"__typename": "Customer", "id": c["id"]} for c in created]
    with counting_statements(db) as statements:
        found = await entities(gql, by_external_id[:10] + by_id[10:])
    assert [f["externalCustomerId"] for f in found] == [f"c-{n}" for n in range(25)]
    assert len(statements) == 2, statements
