"""A WebSocket's credential stays checked while the socket is open: a key revoked by another
process (the command line, or another server's API) ends its subscriptions with 4403 within
WS_CREDENTIAL_CHECK_SECONDS plus KEY_CACHE_SECONDS; a token ends them with 4401 once it
expires. One principal holds at most
MAX_SUBSCRIPTIONS_PER_PRINCIPAL of a process's subscriptions. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from db import keys
from server import Settings, create_app
from tests.support.clock import Clock
from tests.support.databases import TEST_API_KEY, add_key
from tests.support.graphql_client import operation
from tests.support.identity import IdentityProvider
from tests.support.servers import run_cli, running_server
from tests.support.sockets import Socket, serving, socket
from tests.test_subscriptions import create, feed_end

SUBSCRIPTION = operation("on_customer_events")
CHECK_SECONDS = 1.0
CACHE_SECONDS = 1.0
BOUND = CHECK_SECONDS + CACHE_SECONDS  # the documented bound for a revocation
SLACK = 3.0  # what a loaded machine may add (starting a process excluded: timed after it)
DOOMED_KEY = keys.new_key()


@pytest.fixture
def setting_overrides(idp: IdentityProvider) -> dict[str, Any]:
    return {
        **idp.settings(),
        "jwt_leeway_seconds": 0,
        "ws_credential_check_seconds": CHECK_SECONDS,
        "key_cache_seconds": CACHE_SECONDS,
        "max_subscriptions_per_principal": 2,
    }


@pytest.fixture
async def url(settings: Settings, clock: Clock) -> AsyncIterator[str]:
    app = create_app(settings, clock)
    async with serving(app) as ws_url:
        await add_key(app.state.db, "doomed", DOOMED_KEY, [keys.Scope.CUSTOMERS_READ])
        yield ws_url


@pytest.fixture
async def http(url: str) -> AsyncIterator[httpx.AsyncClient]:
    base = url.replace("ws://", "http://").removesuffix("/graphql")
    headers = {"authorization": f"Bearer {TEST_API_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        yield client


async def live_subscription(ws: Socket, http: httpx.AsyncClient, id: str) -> None:
    """Subscribe from the end of the feed and see one event arrive: the subscription runs."""
    await ws.subscribe(id, SUBSCRIPTION, {"after": await feed_end(http)})
    await create(http, f"alive-{id}-{time.monotonic_ns()}")
    arrived = await ws.receive()
    while arrived["id"] != id and arrived["type"] == "next":  # an earlier subscription's
        arrived = await ws.receive()
    assert (arrived["id"], arrived["type"]) == (id, "next"), arrived


def revoke_in_another_process(database_url: str, name: str) -> None:
    """`python server.py keys revoke NAME`: a process of its own, as an operator would."""
    done = run_cli(database_url, "keys", "revoke", name)
    assert done.returncode == 0, done.stderr


async def test_a_key_revoked_by_another_process_ends_its_subscription_within_the_bound(
    url: str, http: httpx.AsyncClient, database_url: str
) -> None:
    async with socket(url) as ws:
        assert (await ws.init(DOOMED_KEY))["type"] == "connection_ack"
        await live_subscription(ws, http, "1")
        await asyncio.to_thread(revoke_in_another_process, database_url, "doomed")
        assert await ws.closed(within=BOUND + SLACK) == (
            4403,
            "Forbidden: This API key is unknown or revoked.",
        )


async def test_a_key_revoked_through_another_server_ends_its_subscription_within_the_bound(
    url: str, http: httpx.AsyncClient, database_url: str
) -> None:
    """The revocation an operator makes through the API of another server process, sharing
    only the database with the one that holds the socket."""
    async with socket(url) as ws:
        assert (await ws.init(DOOMED_KEY))["type"] == "connection_ack"
        await live_subscription(ws, http, "1")
        with running_server(database_url) as other:
            async with httpx.AsyncClient(base_url=other.url, timeout=30) as client:
                answer = await client.post(
                    "/graphql",
                    json={
                        "query": operation("revoke_api_key"),
                        "variables": {"input": {"name": "doomed"}},
                    },
                    headers={"authorization": f"Bearer {TEST_API_KEY}"},
                )
            revoked = answer.json()["data"]["revokeApiKey"]
            assert (revoked["userErrors"], revoked["apiKey"]["name"]) == ([], "doomed")
            assert await ws.closed(within=BOUND + SLACK) == (
                4403,
                "Forbidden: This API key is unknown or revoked.",
            )


async def test_an_expired_token_ends_its_subscription_when_it_expires(
    url: str, http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    expires = int(time.time()) + 4
    async with socket(url) as ws:
        assert (await ws.init(idp.token(exp=expires)))["type"] == "connection_ack"
        await live_subscription(ws, http, "1")
        code, reason = await ws.closed(within=expires - time.time() + SLACK)
        assert code == 4401
        assert reason is not None
        assert reason.startswith("Unauthorized: The token has expired")
    assert time.time() >= expires  # not before it expired (the leeway is 0 here)


async def test_one_principal_holds_at_most_its_share_of_the_subscriptions(
    url: str, http: httpx.AsyncClient
) -> None:
    async with socket(url) as other:
        async with socket(url) as first, socket(url) as second:
            for ws in (first, second, other):
                assert (await ws.init(DOOMED_KEY if ws is not other else TEST_API_KEY))[
                    "type"
                ] == "connection_ack"
            await live_subscription(first, http, "1")
            await live_subscription(first, http, "2")
            await second.subscribe("3", SUBSCRIPTION)
            refused = await second.receive()
            assert (refused["id"], refused["type"]) == ("3", "error")
            assert [(e["message"], e["extensions"]["code"]) for e in refused["payload"]] == [
                (
                    "Your API key or token holds 2 subscriptions on this server already "
                    "(MAX_SUBSCRIPTIONS_PER_PRINCIPAL); end one, or retry later.",
                    "TOO_MANY_SUBSCRIPTIONS",
                )
            ]
            await live_subscription(other, http, "1")  # another principal is served
        # The first socket is gone: its slots come back.
        async with socket(url) as again:
            await again.init(DOOMED_KEY)
            await subscribed_once_freed(again, http)


async def subscribed_once_freed(ws: Socket, http: httpx.AsyncClient) -> None:
    """Subscribe until the slots of a closed socket are released (bounded: 10 tries)."""
    for attempt in range(10):
        id = f"retry-{attempt}"
        await ws.subscribe(id, SUBSCRIPTION, {"after": await feed_end(http)})
        await create(http, f"freed-{attempt}")
        message = await ws.receive()
        if message["type"] == "next":
            return
        assert message["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    raise AssertionError("a closed socket's subscriptions were never released")
