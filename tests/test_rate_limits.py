"""Rate limits per principal (web/rate_limits.py), over real HTTP on both executors: a key's
small bucket throttles it with THROTTLED and Retry-After, refills at its restore rate as the
test's clock moves, and every answer says where the bucket stands; buckets in Redis are
shared by two apps, and a Redis that stops answering lets requests through unmetered."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from sqlalchemy import update
from starlette.applications import Starlette

from db import keys
from db.engine import Database
from db.keys import Scope
from db.models import ApiKey
from server import create_app, create_key_command
from tests.support import sockets
from tests.support.clock import Clock
from tests.support.databases import add_key
from tests.support.graphql_client import GraphQLClient
from tests.support.proxy import proxy_to
from web.metrics import REGISTRY
from web.settings import Settings

pytestmark = pytest.mark.both_executors

REDIS = ("127.0.0.1", 6379)
# One customer by id: 2 points (the field and its one subfield), answered by either executor.
READ = '{ customer(externalCustomerId: "c-1") { id } }'
GRAPHQL_RESPONSE = "application/graphql-response+json"
SOCKET_KEY = keys.new_key()


async def make_key(gql: GraphQLClient, name: str, **limits: Any) -> str:
    """A key with customers:read and these limits, made through createApiKey."""
    created = await gql.run(
        "create_api_key",
        input={"name": name, "scopes": ["customers:read"], **limits},
    )
    payload = created["createApiKey"]
    assert payload["userErrors"] == [], payload
    secret: str = payload["secret"]
    return secret


async def read(
    http: httpx.AsyncClient, key: str, accept: str = "application/json"
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", "accept": accept}
    return await http.post("/graphql", json={"query": READ}, headers=headers)


def cost(response: httpx.Response) -> dict[str, Any]:
    found: dict[str, Any] = response.json()["extensions"]["cost"]
    return found


def status(maximum: int, available: int, rate: float) -> dict[str, Any]:
    return {"maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": rate}


async def test_a_small_bucket_throttles_then_refills_at_its_rate(
    gql: GraphQLClient, http: httpx.AsyncClient, clock: Clock
) -> None:
    key = await make_key(gql, "small", maxCost=5, restoreRate=0.5)
    first, second = await read(http, key), await read(http, key)
    assert first.json() == {
        "data": {"customer": None},
        "extensions": {
            "cost": {
                "requestedQueryCost": 2,
                "actualQueryCost": 2,
                "throttleStatus": status(5, 3, 0.5),
            }
        },
    }
    assert cost(second)["throttleStatus"] == status(5, 1, 0.5)
    # 1 point left of the 2 it needs: 1 more point takes 2 s at 0.5 a second.
    for accept, code in (("application/json", 200), (GRAPHQL_RESPONSE, 429)):
        throttled = await read(http, key, accept)
        assert throttled.status_code == code, accept
        assert throttled.headers["retry-after"] == "2"
        assert throttled.headers["content-type"].startswith(accept)
        body = throttled.json()
        assert "data" not in body
        (error,) = body["errors"]
        assert error["extensions"] == {"code": "THROTTLED"}
        assert "costs 2 points" in error["message"]
        assert "retry in 2 s" in error["message"]
        assert body["extensions"]["cost"] == {
            "requestedQueryCost": 2,
            "actualQueryCost": None,
            "throttleStatus": status(5, 1, 0.5),
        }
    clock.advance(timedelta(seconds=1.5))  # 1.75 points: not yet
    assert (await read(http, key)).json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    clock.advance(timedelta(seconds=0.5))  # 2 points
    recovered = await read(http, key)
    assert recovered.json()["data"] == {"customer": None}
    assert cost(recovered)["throttleStatus"] == status(5, 0, 0.5)
    clock.advance(timedelta(hours=1))  # full again, never past its size
    assert cost(await read(http, key))["throttleStatus"] == status(5, 3, 0.5)


async def test_each_principal_has_a_bucket_of_its_own(
    gql: GraphQLClient, http: httpx.AsyncClient
) -> None:
    one = await make_key(gql, "one", maxCost=2, restoreRate=1)
    other = await make_key(gql, "other", maxCost=2, restoreRate=1)
    assert cost(await read(http, one))["throttleStatus"] == status(2, 0, 1.0)
    assert (await read(http, one)).json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert cost(await read(http, other))["throttleStatus"] == status(2, 0, 1.0)


async def test_a_request_its_bucket_can_never_hold_is_refused_for_good(
    gql: GraphQLClient, http: httpx.AsyncClient
) -> None:
    key = await make_key(gql, "tiny", maxCost=1)
    for accept, code in (("application/json", 200), (GRAPHQL_RESPONSE, 400)):
        refused = await read(http, key, accept)
        assert refused.status_code == code
        assert "retry-after" not in refused.headers
        (error,) = refused.json()["errors"]
        assert error["extensions"] == {"code": "MAX_COST_EXCEEDED"}
        assert "can never run" in error["message"]
        assert cost(refused) == {
            "requestedQueryCost": 2,
            "actualQueryCost": None,
            "throttleStatus": status(1, 1, 500.0),  # the default rate
        }


async def test_a_refused_document_draws_nothing(
    gql: GraphQLClient, http: httpx.AsyncClient
) -> None:
    key = await make_key(gql, "careful", maxCost=5, restoreRate=1)
    headers = {"authorization": f"Bearer {key}"}
    forbidden = await http.post(
        "/graphql", json={"query": "{ apiKeys { nodes { name } } }"}, headers=headers
    )
    assert forbidden.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert cost(forbidden)["throttleStatus"] == status(5, 5, 1.0)
    assert cost(forbidden)["actualQueryCost"] is None


@pytest.mark.parametrize(
    ("limits", "field", "rule"),
    [
        ({"maxCost": 0}, "maxCost", "from 1"),
        ({"restoreRate": 0}, "restoreRate", "above 0"),
        ({"restoreRate": -1.5}, "restoreRate", "above 0"),
    ],
)
async def test_limits_out_of_range_are_user_errors(
    gql: GraphQLClient, limits: dict[str, Any], field: str, rule: str
) -> None:
    created = await gql.run(
        "create_api_key", input={"name": "bad", "scopes": ["customers:read"], **limits}
    )
    payload = created["createApiKey"]
    assert payload["secret"] is None
    (error,) = payload["userErrors"]
    assert (error["field"], error["code"]) == (["input", field], "INVALID")
    assert rule in error["message"]
    keys = await gql.run("api_keys", first=50)
    assert "bad" not in [node["name"] for node in keys["apiKeys"]["nodes"]]  # nothing written


async def test_the_key_shows_its_limits(gql: GraphQLClient) -> None:
    await make_key(gql, "shown", maxCost=7, restoreRate=2.5)
    await make_key(gql, "defaults")
    query = "{ apiKeys(first: 50) { nodes { name maxCost restoreRate } } }"
    response = await gql.post(query)
    body = response.json()
    assert "errors" not in body, body
    nodes = body["data"]["apiKeys"]["nodes"]
    by_name = {node["name"]: node for node in nodes}
    assert (by_name["shown"]["maxCost"], by_name["shown"]["restoreRate"]) == (7, 2.5)
    assert (by_name["defaults"]["maxCost"], by_name["defaults"]["restoreRate"]) == (None, None)


async def test_the_command_line_makes_a_key_with_its_limits(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await create_key_command(db, "cli", [Scope.CUSTOMERS_READ], max_cost=3) == 0
    assert await create_key_command(db, "bad", [Scope.CUSTOMERS_READ], restore_rate=0.0) == 1
    assert "above 0" in capsys.readouterr().err
    async with db.read() as session:
        rows = {row.name: row for row in await keys.list_keys(session)}
    assert (rows["cli"].max_cost, rows["cli"].restore_rate) == (3, None)
    assert "bad" not in rows


@pytest.mark.one_executor("over WebSocket graphql-core answers every operation")
async def test_socket_operations_draw_when_they_start(settings: Settings, clock: Clock) -> None:
    app = create_app(settings, clock)
    async with sockets.serving(app) as url:
        await add_key(app.state.db, "socket", SOCKET_KEY, [Scope.CUSTOMERS_READ])
        async with app.state.db.write() as session:  # a bucket of 3 points, 1 a second
            await session.execute(
                update(ApiKey).where(ApiKey.name == "socket").values(max_cost=3, restore_rate=1)  # type: ignore[arg-type]
            )
        async with sockets.socket(url) as ws:
            await ws.init(SOCKET_KEY)
            await ws.subscribe("1", READ)
            ran = await ws.receive()
            assert ran["type"] == "next"
            assert ran["payload"]["extensions"]["cost"] == {
                "requestedQueryCost": 2,
                "actualQueryCost": 2,
                "throttleStatus": status(3, 1, 1.0),
            }
            assert (await ws.receive()) == {"id": "1", "type": "complete"}
            await ws.subscribe("2", READ)
            refused = await ws.receive()
            assert refused["type"] == "error"
            (error,) = refused["payload"]
            assert error["extensions"] == {"code": "THROTTLED", "retryAfter": 1}
            clock.advance(timedelta(seconds=1))
            await ws.subscribe("3", READ)  # the connection stays open
            assert (await ws.receive())["type"] == "next"


# -- Redis -------------------------------------------------------------------------------------


def require_redis() -> None:
    """Skip without Redis at 127.0.0.1:6379, but fail under CI=true (CI runs it)."""
    try:
        socket.create_connection(REDIS, timeout=1).close()
    except OSError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires Redis at {REDIS[0]}:{REDIS[1]}: {error}")
        pytest.skip(f"Redis at {REDIS[0]}:{REDIS[1]} unreachable: {error}")


@asynccontextmanager
async def serving(settings: Settings, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    app: Starlette = create_app(settings, clock)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def redis_settings(settings: Settings, port: int = REDIS[1]) -> Settings:
    """The test's settings with buckets in Redis, under a prefix no other test uses."""
    return settings.model_copy(
        update={
            "rate_limit_redis_url": SecretStr(f"redis://127.0.0.1:{port}/0"),
            "rate_limit_redis_prefix": f"test:{uuid.uuid4().hex}:",
            "rate_limit_redis_timeout_seconds": 0.2,
        }
    )


async def test_two_apps_sharing_redis_draw_from_one_bucket(
    gql: GraphQLClient, db: Database, settings: Settings, clock: Clock
) -> None:
    require_redis()
    key = await make_key(gql, "shared", maxCost=6, restoreRate=1)
    shared = redis_settings(settings)
    async with serving(shared, clock) as one, serving(shared, clock) as other:
        assert cost(await read(one, key))["throttleStatus"] == status(6, 4, 1.0)
        assert cost(await read(other, key))["throttleStatus"] == status(6, 2, 1.0)
        assert cost(await read(one, key))["throttleStatus"] == status(6, 0, 1.0)
        throttled = await read(other, key)
        assert throttled.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert throttled.headers["retry-after"] == "2"
        clock.advance(timedelta(seconds=2))
        assert cost(await read(other, key))["throttleStatus"] == status(6, 0, 1.0)


def unmetered() -> float:
    return REGISTRY.get_sample_value("rate_limit_unmetered_total") or 0.0


async def test_a_redis_that_stops_answering_fails_open(
    gql: GraphQLClient,
    settings: Settings,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_redis()
    key = await make_key(gql, "open", maxCost=4, restoreRate=1)
    with proxy_to(*REDIS) as proxy:
        async with serving(redis_settings(settings, proxy.port), clock) as http:
            assert cost(await read(http, key))["throttleStatus"] == status(4, 2, 1.0)
            before = unmetered()
            # Replies stop coming (the worst case: only the timeout notices). Each request
            # runs unmetered after RATE_LIMIT_REDIS_TIMEOUT_SECONDS, past what the bucket
            # holds, and the log says so once.
            proxy.black_hole()
            with caplog.at_level(logging.WARNING, logger="customer_api.rate_limits"):
                for _ in range(3):
                    answered = await read(http, key)
                    assert answered.json()["data"] == {"customer": None}
                    assert cost(answered) == {
                        "requestedQueryCost": 2,
                        "actualQueryCost": 2,
                        "throttleStatus": None,
                    }
            assert unmetered() == before + 3
            warnings = [r for r in caplog.records if r.name == "customer_api.rate_limits"]
            assert len(warnings) == 1
            assert "Redis did not answer a rate-limit draw" in warnings[0].getMessage()


async def test_a_persisted_document_sent_by_its_hash_alone_draws_its_cost(
    gql: GraphQLClient, http: httpx.AsyncClient
) -> None:
    """The cost is the stored document's: a hash alone is not a free request."""
    key = await make_key(gql, "hashes", maxCost=5, restoreRate=0.5)
    digest = hashlib.sha256(READ.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    headers = {"authorization": f"Bearer {key}"}
    registered = await http.post(
        "/graphql", json={"query": READ, "extensions": persisted}, headers=headers
    )
    assert cost(registered)["throttleStatus"] == status(5, 3, 0.5)
    by_hash = await http.post("/graphql", json={"extensions": persisted}, headers=headers)
    assert by_hash.json()["data"] == {"customer": None}
    assert cost(by_hash)["throttleStatus"] == status(5, 1, 0.5)
    throttled = await http.post("/graphql", json={"extensions": persisted}, headers=headers)
    assert throttled.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
