"""What the server writes to its log: never personal data, never a query string."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette

from tests.support.graphql_client import GraphQLClient
from tests.support.log_privacy import personal_data_in

# What this module tests does not depend on the database engine: SQLite proves it.
pytestmark = pytest.mark.sqlite_only


def test_the_scan_finds_e_mails_and_phones() -> None:
    lines = [
        "INFO customer_api.access POST /graphql 200 3.1ms\n",
        "ERROR x duplicate key value (email_key)=(ann.lee@example.com)\n",
        "DEBUG y parameters ('+447400123456',)\n",
        "INFO z expired 3 KYC verifications\n",
    ]
    assert personal_data_in(lines) == [lines[1].rstrip(), lines[2].rstrip()]


async def test_access_log_has_the_path_but_not_the_query_string(
    app: Starlette, gql: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    query = '{ customers(filter: {email: "ann@example.com"}) { totalCount } }'
    with caplog.at_level(logging.INFO, logger="customer_api.access"):
        response = await gql.http.get("/graphql", params={"query": query})
    assert response.status_code == 200
    [line] = [r.getMessage() for r in caplog.records if r.name == "customer_api.access"]
    assert line.startswith("GET /graphql 200 ")
    assert personal_data_in([line]) == []
    assert "?" not in line
    assert "filter" not in line
