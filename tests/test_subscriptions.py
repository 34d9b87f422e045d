"""Subscription.customerEvents and GraphQL over WebSocket: authentication in connection_init,
scopes, limits, resuming with `after`, the bounds on subscriptions, heartbeats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from db import keys
from db.engine import Database
from server import Settings, create_app
from tests.support.clock import Clock
from tests.support.databases import TEST_API_KEY, add_key
from tests.support.graphql_client import operation
from tests.support.sockets import Socket, serving, socket

SUBSCRIPTION = operation("on_customer_events")
READER_KEY = keys.new_key()
WRITER_KEY = keys.new_key()


@pytest.fixture
async def url(settings: Settings, clock: Clock) -> AsyncIterator[str]:
    app = create_app(settings, clock)
    async with serving(app) as ws_url:
        db: Database = app.state.db
        await add_key(db, "reader", READER_KEY, [keys.Scope.CUSTOMERS_READ])
        await add_key(db, "writer", WRITER_KEY, [keys.Scope.CUSTOMERS_WRITE])
        yield ws_url


@pytest.fixture
async def http(url: str) -> AsyncIterator[httpx.AsyncClient]:
    base = url.replace("ws://", "http://").removesuffix("/graphql")
    headers = {"authorization": f"Bearer {TEST_API_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        yield client


async def create(http: httpx.AsyncClient, external_id: str) -> None:
    data = {"email": f"{external_id}@example.com"}
    variables = {"input": {"externalCustomerId": external_id, "data": data}}
    response = await http.post(
        "/graphql", json={"query": operation("create_customer"), "variables": variables}
    )
    assert response.json()["data"]["createCustomer"]["userErrors"] == []


async def events(ws: Socket, id: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = await ws.receive()
        assert message["type"] == "next", message
        assert message["id"] == id
        found.append(message["payload"]["data"]["customerEvents"])
    return found


CREATE = {"input": {"externalCustomerId": "ws-1", "data": {"email": "ws-1@example.com"}}}


async def test_a_socket_without_connection_init_runs_nothing(
    url: str, http: httpx.AsyncClient
) -> None:
    async with socket(url) as ws:
        await ws.subscribe("1", operation("create_customer"), CREATE)
        assert await ws.closed() == (4401, "Unauthorized")
    found = await http.post(
        "/graphql",
        json={"query": operation("customer"), "variables": {"externalCustomerId": "ws-1"}},
    )
    assert found.json()["data"] == {"customer": None}


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "Unauthorized: Send your API key as the header 'Authorization: Bearer <key>'."),
        ("cak_unknown", "Unauthorized: This API key is unknown or revoked."),
    ],
)
async def test_a_socket_without_a_valid_key_is_closed_4401(
    url: str, http: httpx.AsyncClient, key: str | None, reason: str
) -> None:
    async with socket(url) as ws:
        await ws.send(
            {
                "type": "connection_init",
                "payload": {} if key is None else {"authorization": f"Bearer {key}"},
            }
        )
        await ws.subscribe("1", operation("create_customer"), CREATE)
        code, said = await ws.closed()
        assert code == 4401
        assert said is not None
        assert said.startswith(reason[:60])
    found = await http.post(
        "/graphql",
        json={"query": operation("customer"), "variables": {"externalCustomerId": "ws-1"}},
    )
    assert found.json()["data"] == {"customer": None}


async def test_a_missing_scope_is_forbidden_and_closes_4403(url: str) -> None:
    async with socket(url) as ws:
        assert (await ws.init(WRITER_KEY))["type"] == "connection_ack"
        await ws.subscribe("1", SUBSCRIPTION)
        error = await ws.receive()
        assert error["type"] == "error"
        assert [(e["message"], e["extensions"]["code"]) for e in error["payload"]] == [
            (
                "Your API key or token may not use Subscription.customerEvents: it needs the "
                "customers:read scope.",
                "FORBIDDEN",
            )
        ]
        code, reason = await ws.closed()
        assert code == 4403
        assert reason is not None
        assert reason.startswith("Forbidden: Your API key or token may not use")


async def test_queries_and_mutations_over_the_socket_follow_keys_scopes_and_limits(
    url: str,
) -> None:
    async with socket(url) as ws:
        await ws.init(TEST_API_KEY)
        await ws.subscribe("1", operation("create_customer"), CREATE)
        created = await ws.receive()
        assert created["type"] == "next"
        assert created["payload"]["data"]["createCustomer"]["userErrors"] == []
        cost = created["payload"]["extensions"]["cost"]
        assert cost["throttleStatus"]["maximumAvailable"] == 1_000_000_000  # drawn as over HTTP
        assert (await ws.receive()) == {"id": "1", "type": "complete"}
        too_costly = (
            "{ "
            + " ".join(
                f"a{n}: customers(first: 100) {{ nodes {{ kycVerifications {{ id status }} }} }}"
                for n in range(10)
            )
            + " }"
        )
        await ws.subscribe("2", too_costly)
        refused = await ws.receive()
        assert refused["type"] == "error", refused
        assert refused["payload"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    async with socket(url) as ws:
        await ws.init(READER_KEY)
        await ws.subscribe("1", operation("create_customer"), CREATE)
        refused = await ws.receive()
        assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"
        assert (await ws.closed())[0] == 4403


async def feed_end(http: httpx.AsyncClient) -> str | None:
    response = await http.post("/graphql", json={"query": operation("customer_events")})
    end: str | None = response.json()["data"]["customerEvents"]["pageInfo"]["endCursor"]
    return end


async def test_events_arrive_in_order_and_resume_after_a_cursor(
    url: str, http: httpx.AsyncClient
) -> None:
    await create(http, "before")
    async with socket(url) as ws:
        await ws.init(READER_KEY)
        await ws.subscribe("live", SUBSCRIPTION, {"after": await feed_end(http)})
        for n in range(3):
            await create(http, f"c-{n}")
        live = await events(ws, "live", 3)
    assert [(e["type"], e["externalCustomerId"], e["actor"]) for e in live] == [
        ("CUSTOMER_CREATED", f"c-{n}", "key:tests") for n in range(3)
    ]
    async with socket(url) as ws:
        await ws.init(READER_KEY)
        await ws.subscribe("again", SUBSCRIPTION, {"after": live[0]["cursor"]})
        resumed = await events(ws, "again", 2)
        assert resumed == live[1:]
        await create(http, "c-3")
        [newest] = await events(ws, "again", 1)
        assert newest["externalCustomerId"] == "c-3"
        await ws.subscribe(
            "filtered",
            SUBSCRIPTION,
            {"after": live[0]["cursor"], "filter": {"externalCustomerId": "c-2"}},
        )
        [only] = await events(ws, "filtered", 1)
        assert only == live[2]


async def test_without_after_a_subscription_starts_at_the_end_of_the_feed(
    url: str, http: httpx.AsyncClient
) -> None:
    await create(http, "old")
    async with socket(url) as ws:
        await ws.init(READER_KEY)
        await ws.subscribe("1", SUBSCRIPTION)
        for n in range(50):  # until the subscription has started: then it gets what follows
            await create(http, f"new-{n}")
            try:
                first = await ws.receive(within=0.2)
                break
            except TimeoutError:
                continue
        assert first["payload"]["data"]["customerEvents"]["externalCustomerId"].startswith("new-")


async def test_a_bad_cursor_is_an_error_for_that_subscription(url: str) -> None:
    async with socket(url) as ws:
        await ws.init(READER_KEY)
        await ws.subscribe("1", SUBSCRIPTION, {"after": "nonsense"})
        error = await ws.receive()
        assert error["type"] in ("error", "next")
        errors = error["payload"] if error["type"] == "error" else error["payload"]["errors"]
        assert [(e["message"], e["extensions"]["code"]) for e in errors] == [
            ("The cursor is not valid; use a cursor from a page of this list.", "BAD_USER_INPUT")
        ]


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    return {
        "max_subscriptions_per_connection": 2,
        "max_subscriptions": 3,
        "ws_heartbeat_seconds": 0.2,
    }


async def test_subscriptions_are_bounded_per_connection_and_per_process(url: str) -> None:
    async with socket(url) as first, socket(url) as second:
        await first.init(READER_KEY)
        await second.init(READER_KEY)
        for id in ("1", "2"):
            await first.subscribe(id, SUBSCRIPTION)
        await first.subscribe("3", SUBSCRIPTION)
        refused = await first.receive()
        assert (refused["id"], refused["type"]) == ("3", "error")
        assert refused["payload"][0]["message"] == "Subscription limit reached"
        await second.subscribe("1", SUBSCRIPTION)
        await second.subscribe("2", SUBSCRIPTION)
        full = await second.receive()
        assert (full["id"], full["type"]) == ("2", "error")
        assert full["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"


async def test_the_server_sends_heartbeats(url: str) -> None:
    async with socket(url) as ws:
        await ws.init(READER_KEY)
        assert json.loads(await ws.connection.recv()) == {"type": "ping"}
