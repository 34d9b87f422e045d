"""customers:self: a signed-in customer's token reads and changes its own record and nothing else.

Any other customer is answered as if it did not exist (null, NOT_FOUND), so the token cannot
probe which ids exist; lists and every other root field are FORBIDDEN before anything runs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server import Settings, create_app
from tests.support.clock import Clock
from tests.support.graphql_client import GraphQLClient, operation
from tests.support.identity import IdentityProvider
from tests.support.sockets import serving, socket

# What this module tests does not depend on the database engine: SQLite proves it.
pytestmark = [pytest.mark.sqlite_only, pytest.mark.both_executors]


@pytest.fixture
def setting_overrides(idp: IdentityProvider) -> dict[str, Any]:
    return idp.settings()


class Customer:
    """Runs operations with a customers:self token."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.token = token

    async def body(self, name: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql",
            json={"query": operation(name), "variables": variables},
            headers={"authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, name: str, **variables: Any) -> dict[str, Any]:
        body = await self.body(name, **variables)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
async def two(gql: GraphQLClient) -> dict[str, dict[str, Any]]:
    """c-1 and c-2, each with a verification started, as the back office made them."""
    made = {}
    for external_id in ("c-1", "c-2"):
        made[external_id] = (await gql.create(external_id, city="Trenton"))["customer"]
        started = await gql.start_kyc(external_id)
        made[external_id]["verificationId"] = started["verification"]["id"]
    return made


@pytest.fixture
def me(anonymous: httpx.AsyncClient, idp: IdentityProvider) -> Customer:
    return Customer(
        anonymous, idp.token(sub="ann", scope="customers:self", external_customer_id="c-1")
    )


def not_found(external_id: str) -> list[dict[str, Any]]:
    return [
        {
            "field": ["input", "externalCustomerId"],
            "code": "NOT_FOUND",
            "message": f"There is no customer with the id {external_id!r}.",
        }
    ]


async def test_reads_its_own_record_and_no_other(
    me: Customer, two: dict[str, dict[str, Any]], app: Starlette, compiled_path: bool
) -> None:
    compiled = app.state.view.compiled_answers
    own = (await me.data("customer", externalCustomerId="c-1"))["customer"]
    assert own["id"] == two["c-1"]["id"]
    assert own["data"]["city"] == "Trenton"
    assert own["kycStatus"] == "PENDING"
    # Another's record reads exactly as one that does not exist.
    for external_id in ("c-2", "no-such-id"):
        assert await me.data("customer", externalCustomerId=external_id) == {"customer": None}
    assert (await me.data("node", id=two["c-1"]["id"]))["node"]["externalCustomerId"] == "c-1"
    assert (await me.data("node", id=two["c-1"]["verificationId"]))["node"]["status"] == "PENDING"
    for other in (two["c-2"]["id"], two["c-2"]["verificationId"]):
        assert await me.data("node", id=other) == {"node": None}
    # The customer look-ups (not the verification's, whose owner it does not read) were the
    # compiled path's, where it is on: it keeps to the token's own record too.
    assert app.state.view.compiled_answers - compiled == (5 if compiled_path else 0)


async def test_updates_its_own_record_and_no_other(
    me: Customer, gql: GraphQLClient, two: dict[str, dict[str, Any]]
) -> None:
    own = await me.data(
        "update_customer", input={"externalCustomerId": "c-1", "data": {"city": "Newark"}}
    )
    assert own["updateCustomer"]["userErrors"] == []
    assert own["updateCustomer"]["customer"]["data"]["city"] == "Newark"
    # The same rules as any write: a bad value is refused with its field.
    bad = await me.data(
        "update_customer", input={"externalCustomerId": "c-1", "data": {"email": "not-an-address"}}
    )
    assert [e["code"] for e in bad["updateCustomer"]["userErrors"]] == ["INVALID_EMAIL"]
    for external_id in ("c-2", "no-such-id"):
        other = await me.data(
            "update_customer", input={"externalCustomerId": external_id, "data": {"city": "X"}}
        )
        assert other["updateCustomer"] == {
            "customer": None,
            "userErrors": not_found(external_id),
            "warnings": [],
        }
    assert (await gql.customer("c-2"))["data"]["city"] == "Trenton"  # type: ignore[index]


async def test_starts_its_own_verification_and_no_other(
    me: Customer, gql: GraphQLClient, two: dict[str, dict[str, Any]]
) -> None:
    own = await me.data("start_kyc_verification", input={"externalCustomerId": "c-1"})
    assert own["startKycVerification"]["userErrors"] == []
    assert own["startKycVerification"]["customer"]["kycStatus"] == "PENDING"
    other = await me.data("start_kyc_verification", input={"externalCustomerId": "c-2"})
    assert other["startKycVerification"] == {
        "verification": None,
        "customer": None,
        "userErrors": not_found("c-2"),
    }
    assert len((await gql.customer("c-2"))["kycVerifications"]) == 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("field", "name", "variables"),
    [
        ("customers", "customers", {}),
        (
            "_entities",
            "entities",
            {"representations": [{"__typename": "Customer", "externalCustomerId": "c-1"}]},
        ),
        ("_service", "service", {}),
        (
            "createCustomer",
            "create_customer",
            {"input": {"externalCustomerId": "c-3", "data": {"email": "c3@example.com"}}},
        ),
        ("deleteCustomer", "delete_customer", {"input": {"externalCustomerId": "c-1"}}),
        ("customerEvents", "customer_events", {}),
        ("webhookEndpoints", "webhook_endpoints", {}),
        (
            "recordKycResult",
            "record_kyc_result",
            {"input": {"verificationId": "x", "status": "VERIFIED"}},
        ),
        (
            "reviewKycVerification",
            "review_kyc_verification",
            {"input": {"verificationId": "x", "decision": "APPROVE"}},
        ),
    ],
)
async def test_everything_else_is_forbidden(
    me: Customer,
    gql: GraphQLClient,
    two: dict[str, dict[str, Any]],
    field: str,
    name: str,
    variables: dict[str, Any],
) -> None:
    body = await me.body(name, **variables)
    assert body["data"] is None
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        ([field], "FORBIDDEN")
    ]
    assert await gql.customer("c-1") is not None
    assert await gql.customer("c-3") is None


async def test_a_broader_scope_beside_it_is_not_narrowed(
    anonymous: httpx.AsyncClient, idp: IdentityProvider, two: dict[str, dict[str, Any]]
) -> None:
    """customers:read reads anyone; the writes still go only through customers:self."""
    token = idp.token(scope="customers:self customers:read", external_customer_id="c-1")
    both = Customer(anonymous, token)
    read = await both.data("customer", externalCustomerId="c-2")
    assert read["customer"]["externalCustomerId"] == "c-2"
    other = await both.data(
        "update_customer", input={"externalCustomerId": "c-2", "data": {"city": "X"}}
    )
    assert other["updateCustomer"]["userErrors"] == not_found("c-2")


async def test_over_a_websocket_tokens_work_and_customers_self_gets_no_events(
    settings: Settings, clock: Clock, idp: IdentityProvider, gql: GraphQLClient
) -> None:
    reader = idp.token(sub="dashboard", scope="customers:read customers:write")
    async with serving(create_app(settings, clock)) as url:
        async with socket(url) as ws:
            assert (await ws.init(me_token(idp)))["type"] == "connection_ack"
            await ws.subscribe("1", operation("on_customer_events"))
            refused = await ws.receive()
            assert [e["extensions"]["code"] for e in refused["payload"]] == ["FORBIDDEN"]
            assert (await ws.closed())[0] == 4403
        async with socket(url) as ws:
            assert (await ws.init(reader))["type"] == "connection_ack"
            await ws.subscribe("1", operation("create_customer"), {"input": NEW})
            created = await ws.receive()
            assert created["payload"]["data"]["createCustomer"]["userErrors"] == []
    [event] = (await gql.run("customer_events", filter={"externalCustomerId": "ws-1"}))[
        "customerEvents"
    ]["nodes"]
    assert (event["type"], event["actor"]) == ("CUSTOMER_CREATED", f"token:{idp.issuer}#dashboard")


NEW = {"externalCustomerId": "ws-1", "data": {"email": "ws-1@example.com"}}


def me_token(idp: IdentityProvider) -> str:
    return idp.token(sub="ann", scope="customers:self", external_customer_id="c-1")
