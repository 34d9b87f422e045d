"""Introspection is on by default; the setting turns it off, and suggestions with it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.graphql_client import GraphQLClient, operation

# What this module tests does not depend on the database engine: SQLite proves it.
pytestmark = pytest.mark.sqlite_only


TYPO = '{ custmer(externalCustomerId: "x") { id } }'


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    return {"introspection": False}


@pytest.mark.both_executors
async def test_introspection_off_refuses_schema_queries(gql: GraphQLClient) -> None:
    body = (await gql.post("{ __schema { types { name } } }")).json()
    assert body.get("data") is None
    assert "introspection" in body["errors"][0]["message"].lower()
    # Plain queries still work, __typename included.
    assert (await gql.post("{ __typename }")).json()["data"] == {"__typename": "Query"}


async def test_introspection_off_hides_suggestions(gql: GraphQLClient) -> None:
    [error] = (await gql.post(TYPO)).json()["errors"]
    assert error["message"] == "Cannot query field 'custmer' on type 'Query'."


async def test_introspection_off_refuses_the_federation_sdl(gql: GraphQLClient) -> None:
    body = (await gql.post(operation("service"))).json()
    assert body.get("data") is None
    assert body["errors"] == [
        {
            "message": "The _service field is off, as introspection is: the subgraph's SDL "
            "is handed to gateways apart from the API (customer-api export-schema).",
            "locations": [{"line": 3, "column": 3}],
        }
    ]
