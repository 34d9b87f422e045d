"""API keys and scopes: who may call what, checked before anything runs."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from db import keys
from db.engine import Database
from db.keys import Scope
from db.models import utc_now
from schema import schema
from schema.access import FIELD_SCOPES
from tests.support.databases import BACKENDS, add_key
from tests.support.graphql_client import GraphQLClient, operation

# Scopes and limits do not depend on the database engine: SQLite proves them. The key store's own
# writes (revoking, recording use) run on both backends below.
pytestmark = [pytest.mark.sqlite_only, pytest.mark.both_executors]


CREATE = {"input": {"externalCustomerId": "c-new", "data": {"email": "new@example.com"}}}
# One committed operation per root field, with variables that would make it do its work.
OPERATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "node": ("node", {"id": "Q3VzdG9tZXI6MQ"}),
    "customer": ("customer", {"externalCustomerId": "c-1"}),
    "customers": ("customers", {}),
    "_entities": (
        "entities",
        {"representations": [{"__typename": "Customer", "externalCustomerId": "c-1"}]},
    ),
    "_service": ("service", {}),
    "createCustomer": ("create_customer", CREATE),
    "updateCustomer": (
        "update_customer",
        {"input": {"externalCustomerId": "c-1", "data": {"city": "Oslo"}}},
    ),
    "deleteCustomer": ("delete_customer", {"input": {"externalCustomerId": "c-1"}}),
    "startKycVerification": ("start_kyc_verification", {"input": {"externalCustomerId": "c-1"}}),
    "recordKycResult": (
        "record_kyc_result",
        {"input": {"verificationId": "x", "status": "VERIFIED"}},
    ),
    "reviewKycVerification": (
        "review_kyc_verification",
        {"input": {"verificationId": "x", "decision": "APPROVE"}},
    ),
    "customerEvents": ("customer_events", {}),
    "webhookEndpoints": ("webhook_endpoints", {}),
    "createWebhookEndpoint": (
        "create_webhook_endpoint",
        {"input": {"url": "https://93.184.216.34/hook"}},
    ),
    "updateWebhookEndpoint": (
        "update_webhook_endpoint",
        {"input": {"id": "V2ViaG9va0VuZHBvaW50OjE", "enabled": False}},
    ),
    "deleteWebhookEndpoint": (
        "delete_webhook_endpoint",
        {"input": {"id": "V2ViaG9va0VuZHBvaW50OjE"}},
    ),
    "apiKeys": ("api_keys", {}),
    "createApiKey": ("create_api_key", {"input": {"name": "made", "scopes": ["keys:manage"]}}),
    "revokeApiKey": ("revoke_api_key", {"input": {"name": "no-such-key"}}),
}


def root_scopes(field: str) -> frozenset[Scope]:
    """The scopes that allow a root field."""
    kind = "Query" if field in schema._schema.query_type.fields else "Mutation"  # type: ignore[union-attr]
    return FIELD_SCOPES[f"{kind}.{field}"]


def test_every_root_field_has_a_scope_and_an_example() -> None:
    root = {*schema._schema.query_type.fields, *schema._schema.mutation_type.fields}  # type: ignore[union-attr]
    assert all(root_scopes(field) for field in root)
    assert set(OPERATIONS) == root


async def post(
    http: httpx.AsyncClient, key: str | None, name: str, variables: dict[str, Any]
) -> httpx.Response:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    body = {"query": operation(name), "variables": variables}
    return await http.post("/graphql", json=body, headers=headers)


async def post_as(
    http: httpx.AsyncClient, key: str, query: str, variables: dict[str, Any] | None = None
) -> httpx.Response:
    """Post a document of the test's own with this key."""
    body = {"query": query, "variables": variables}
    return await http.post("/graphql", json=body, headers={"authorization": f"Bearer {key}"})


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Send your API key"),
        ("Bearer", "Send your API key"),
        ("Basic dXNlcjpwYXNz", "Send your API key"),
        ("Bearer cak_not-a-real-key", "unknown or revoked"),
    ],
)
async def test_requests_without_a_valid_key_are_401(
    anonymous: httpx.AsyncClient, db: Database, authorization: str | None, message: str
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    response = await anonymous.post(
        "/graphql",
        json={"query": operation("create_customer"), "variables": CREATE},
        headers=headers,
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    [error] = response.json()["errors"]
    assert message in error["message"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    async with db.read() as session:
        assert (await session.execute(text("SELECT count(*) FROM customer"))).scalar_one() == 0
    get = await anonymous.get("/graphql", params={"query": "{ __typename }"}, headers=headers)
    assert get.status_code == 401


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("setting_overrides", [{"key_cache_seconds": 0}])
async def test_a_revoked_key_is_refused(anonymous: httpx.AsyncClient, db: Database) -> None:
    async with db.write() as session:
        key = await keys.create_key(session, "soon-gone", [Scope.CUSTOMERS_READ], utc_now())
    assert (await post(anonymous, key, "customers", {})).status_code == 200
    async with db.write() as session:
        await keys.revoke_key(session, "soon-gone", utc_now())
    response = await post(anonymous, key, "customers", {})
    assert response.status_code == 401
    assert "unknown or revoked" in response.json()["errors"][0]["message"]


async def test_graphiql_page_needs_no_key(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_only_the_hash_is_stored(db: Database) -> None:
    async with db.write() as session:
        key = await keys.create_key(session, "hashed", [Scope.KYC_REVIEW], utc_now())
    async with db.read() as session:
        row = (await session.execute(text("SELECT * FROM api_key WHERE name = 'hashed'"))).one()
    assert all(key not in str(value) for value in row)
    assert hashlib.sha256(key.encode()).hexdigest() in row
    assert len(key) >= len(keys.KEY_PREFIX) + 43  # 32 random bytes, base64url


@pytest.mark.parametrize("backend", BACKENDS)
async def test_use_is_recorded(gql: GraphQLClient, db: Database) -> None:
    await gql.run("customers")
    deadline = time.monotonic() + 10  # the stamp is written in the background
    while True:
        async with db.read() as session:
            used = (
                await session.execute(text("SELECT last_used_at FROM api_key WHERE name = 'tests'"))
            ).scalar_one()
        if used is not None or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    assert used is not None


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


@pytest.mark.parametrize("scope", sorted(keys.ALL_SCOPES))
async def test_each_scope_allows_its_operations_and_nothing_else(
    anonymous: httpx.AsyncClient, gql: GraphQLClient, db: Database, scope: Scope
) -> None:
    await gql.create("c-1")
    key = keys.new_key()
    await add_key(db, f"only-{scope}", key, [scope])
    for field, (name, variables) in OPERATIONS.items():
        response = await post(anonymous, key, name, variables)
        assert response.status_code == 200, (field, response.text)
        body = response.json()
        if scope in root_scopes(field):
            # The root field is allowed; personal data in its payload may not be.
            assert all(len(e["path"]) > 1 for e in body.get("errors", []) if e["path"])
        else:
            assert set(codes(body)) == {"FORBIDDEN"}, (field, body)
            assert body["data"] is None
            assert body["errors"][0]["path"] == [field]
            assert str(next(iter(root_scopes(field)))) in body["errors"][0]["message"]
    # What the forbidden mutations would have done did not happen.
    customer = await gql.customer("c-1")
    if scope is not Scope.CUSTOMERS_WRITE:
        assert customer is not None
        assert customer["data"]["city"] is None
        assert customer["kycVerifications"] == []
        assert await gql.customer("c-new") is None


@pytest.mark.parametrize("scope", sorted(keys.ALL_SCOPES))
async def test_with_customers_read_each_scope_runs_its_example_operations(
    anonymous: httpx.AsyncClient, db: Database, scope: Scope
) -> None:
    key = keys.new_key()
    await add_key(db, f"reader-{scope}", key, [scope, Scope.CUSTOMERS_READ])
    for field, (name, variables) in OPERATIONS.items():
        if scope in root_scopes(field):
            body = (await post(anonymous, key, name, variables)).json()
            assert "FORBIDDEN" not in codes(body), (field, body)


# The attack: a write key asks a mutation's payload for the customer's record.
READ_THROUGH_UPDATE = (
    'mutation { a: updateCustomer(input: {externalCustomerId: "c-1", data: {}}) '
    "{ customer { data { email phone } kycVerifications { status } } } "
    'b: updateCustomer(input: {externalCustomerId: "c-1", data: {city: "Oslo"}}) '
    "{ customer { ...Sneaky } } } "
    "fragment Sneaky on Customer { ... on Node { ... on Customer { kycStatus } } }"
)


async def test_a_write_key_cannot_read_a_customer_through_a_mutation(
    anonymous: httpx.AsyncClient, gql: GraphQLClient, db: Database
) -> None:
    await gql.create("c-1", phone="+12015550123")
    key = keys.new_key()
    await add_key(db, "writer", key, [Scope.CUSTOMERS_WRITE])
    response = await post_as(anonymous, key, READ_THROUGH_UPDATE)
    body = response.json()
    assert body["data"] is None
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["a", "customer", "data"], "FORBIDDEN"),
        (["a", "customer", "data", "email"], "FORBIDDEN"),
        (["a", "customer", "data", "phone"], "FORBIDDEN"),
        (["a", "customer", "kycVerifications"], "FORBIDDEN"),
        (["b", "customer", "kycStatus"], "FORBIDDEN"),
    ]
    assert "+12015550123" not in response.text
    customer = await gql.customer("c-1")
    assert customer is not None
    assert customer["data"]["city"] is None  # nothing ran


async def test_a_write_key_sees_what_its_mutation_did(
    anonymous: httpx.AsyncClient, gql: GraphQLClient, db: Database
) -> None:
    await gql.create("c-1")
    key = keys.new_key()
    await add_key(db, "writer", key, [Scope.CUSTOMERS_WRITE])
    query = (
        'mutation { updateCustomer(input: {externalCustomerId: "c-1", data: {city: "Oslo"}}) '
        "{ customer { id externalCustomerId } userErrors { code } } }"
    )
    response = await post_as(anonymous, key, query)
    payload = response.json()["data"]["updateCustomer"]
    assert payload["customer"]["externalCustomerId"] == "c-1"
    assert payload["userErrors"] == []
    customer = await gql.customer("c-1")
    assert customer is not None
    assert customer["data"]["city"] == "Oslo"


async def test_a_provider_key_cannot_read_email_or_phone(
    anonymous: httpx.AsyncClient, gql: GraphQLClient, db: Database
) -> None:
    await gql.create("c-1", phone="+12015550123")
    verification = (await gql.start_kyc("c-1"))["verification"]["id"]
    key = keys.new_key()
    await add_key(db, "provider", key, [Scope.KYC_PROVIDER])
    query = (
        "mutation($id: ID!) { recordKycResult(input: {verificationId: $id, status: VERIFIED}) "
        "{ verification { status } customer { externalCustomerId data { email phone } } } }"
    )
    response = await post_as(anonymous, key, query, {"id": verification})
    body = response.json()
    assert body["data"] is None
    assert [e["path"] for e in body["errors"]] == [
        ["recordKycResult", "customer", "data"],
        ["recordKycResult", "customer", "data", "email"],
        ["recordKycResult", "customer", "data", "phone"],
    ]
    allowed = query.replace("data { email phone } ", "")
    response = await post_as(anonymous, key, allowed, {"id": verification})
    assert response.json()["data"]["recordKycResult"] == {
        "verification": {"status": "VERIFIED"},
        "customer": {"externalCustomerId": "c-1"},
    }


async def test_introspection_needs_only_a_valid_key(
    anonymous: httpx.AsyncClient, db: Database
) -> None:
    key = keys.new_key()
    await add_key(db, "review-only", key, [Scope.KYC_REVIEW])
    response = await anonymous.post(
        "/graphql",
        json={"query": "{ __schema { queryType { name } } __typename }"},
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.json()["data"] == {
        "__schema": {"queryType": {"name": "Query"}},
        "__typename": "Query",
    }


async def test_a_forbidden_field_in_a_fragment_is_still_forbidden(
    anonymous: httpx.AsyncClient, db: Database
) -> None:
    key = keys.new_key()
    await add_key(db, "review-only", key, [Scope.KYC_REVIEW])
    query = (
        "query { ...Sneaky } "
        "fragment Sneaky on Query { ... on Query { list: customers { totalCount } } }"
    )
    response = await post_as(anonymous, key, query)
    body = response.json()
    assert body["data"] is None
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["list"], "FORBIDDEN")
    ]
