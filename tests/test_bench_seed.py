"""bench.seed leaves a database the API keeps working on: a customer created after it gets a
fresh id on both backends (PostgreSQL's sequence is moved past the seeded ids)."""

from __future__ import annotations

import pytest

from bench.seed import seed
from tests.support.graphql_client import GraphQLClient

pytestmark = pytest.mark.one_executor("the seeding of bench/, not a behaviour of the API")


async def test_create_after_seeding(database_url: str, gql: GraphQLClient) -> None:
    await seed(database_url, 30)
    payload = await gql.create("after-seed", email="after.seed@example.com")
    assert payload["userErrors"] == []
    assert payload["customer"]["externalCustomerId"] == "after-seed"
    listed = await gql.run("customers", first=100)
    assert len(listed["customers"]["edges"]) == 31
