"""API keys managed through GraphQL (keys:manage): made with their secret shown once, listed
without it, revoked, each with its actor recorded; a key never grants more than its maker
holds, and a revoked key is refused by every server within KEY_CACHE_SECONDS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlmodel import select
from starlette.applications import Starlette

from db import keys
from db.engine import Database
from db.keys import Scope
from db.models import ApiKey
from schema.scalars import serialize
from server import create_key_command, list_keys_command, revoke_key_command
from tests.support.clock import Clock
from tests.support.databases import add_key
from tests.support.graphql_client import GraphQLClient, operation
from tests.support.servers import run_cli
from web.app import create_app
from web.settings import Settings

TESTS_KEY = "key:tests"  # the actor of the fixtures' key, named "tests", with every scope


async def create(gql: GraphQLClient, name: str, *scopes: str) -> dict[str, Any]:
    result = await gql.run("create_api_key", input={"name": name, "scopes": list(scopes)})
    payload: dict[str, Any] = result["createApiKey"]
    return payload


async def revoke(gql: GraphQLClient, name: str) -> dict[str, Any]:
    result = await gql.run("revoke_api_key", input={"name": name})
    payload: dict[str, Any] = result["revokeApiKey"]
    return payload


async def listed(gql: GraphQLClient, **variables: Any) -> dict[str, Any]:
    page: dict[str, Any] = (await gql.run("api_keys", **variables))["apiKeys"]
    return page


@asynccontextmanager
async def client_with(app: Starlette, key: str) -> AsyncIterator[GraphQLClient]:
    """A client of the app that sends `key`."""
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as http:
        yield GraphQLClient(http)


async def stored_names(db: Database) -> list[str]:
    async with db.read() as session:
        return list(await session.scalars(select(ApiKey.name).order_by(ApiKey.name)))


async def test_a_key_is_made_with_its_secret_shown_once_and_never_listed(
    gql: GraphQLClient, app: Starlette, db: Database, clock: Clock
) -> None:
    made = await create(gql, "back-office", "keys:manage", "customers:read", "customers:read")
    secret = made.pop("secret")
    assert secret.startswith(keys.KEY_PREFIX)
    assert made == {
        "apiKey": {
            "name": "back-office",
            "prefix": secret[: keys.SHOWN_CHARACTERS],
            "scopes": ["customers:read", "keys:manage"],
            "createdAt": serialize(clock.now),
            "createdBy": TESTS_KEY,
        },
        "userErrors": [],
    }
    # Stored as its hash alone.
    async with db.read() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.name == "back-office"))
    assert row is not None
    assert row.key_hash == keys.hash_key(secret)
    # The list shows every key's public fields, and no secret anywhere in it.
    response = await gql.post(operation("api_keys"))
    assert secret not in response.text
    assert secret[keys.SHOWN_CHARACTERS :] not in response.text
    page = response.json()["data"]["apiKeys"]
    assert [node["name"] for node in page["nodes"]] == ["tests", "back-office"]
    assert page["nodes"][0]["createdBy"] is None  # made before makers were recorded
    assert page["nodes"][1] == {
        **made["apiKey"],
        "lastUsedAt": None,
        "revokedAt": None,
        "revokedBy": None,
    }
    # The secret works, as what it was given.
    async with client_with(app, secret) as as_new:
        assert len((await listed(as_new))["nodes"]) == 2
        refused = (await as_new.post(operation("webhook_endpoints"))).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_keys_are_listed_a_page_at_a_time_oldest_first(gql: GraphQLClient) -> None:
    for name in ("a", "b", "c"):
        assert (await create(gql, name, "customers:read"))["userErrors"] == []
    first = await listed(gql, first=2)
    assert [node["name"] for node in first["nodes"]] == ["tests", "a"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await listed(gql, first=2, after=first["pageInfo"]["endCursor"])
    assert [node["name"] for node in rest["nodes"]] == ["b", "c"]
    assert rest["pageInfo"]["hasNextPage"] is False
    bad = (await gql.post(operation("api_keys"), {"after": "not-a-cursor"})).json()
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


NAME = ["input", "name"]
SCOPES = ["input", "scopes"]


@pytest.mark.parametrize(
    ("name", "scopes", "errors"),
    [
        ("  ", ["customers:read"], [(NAME, "REQUIRED", "Give the key a name.")]),
        ("x" * 101, ["customers:read"], [(NAME, "TOO_LONG", "Use at most 100 characters.")]),
        ("no-scope", [], [(SCOPES, "REQUIRED", "Give the key at least one scope.")]),
        (
            "",
            [],
            [
                (NAME, "REQUIRED", "Give the key a name."),
                (SCOPES, "REQUIRED", "Give the key at least one scope."),
            ],
        ),
        (
            "odd",
            ["customers:read", "admin"],
            [(SCOPES, "INVALID", "'admin' is not a key's scope; use ")],
        ),
        (
            "self",
            ["customers:self"],
            [(SCOPES, "INVALID", "'customers:self' is not a key's scope; use ")],
        ),
        ("tests", ["customers:read"], [(NAME, "TAKEN", "A key named 'tests' exists already.")]),
        (" tests ", ["customers:read"], [(NAME, "TAKEN", "A key named 'tests' exists already.")]),
    ],
)
async def test_a_key_that_cannot_be_made_is_a_user_error_and_nothing_is_written(
    gql: GraphQLClient, db: Database, name: str, scopes: list[str], errors: list[Any]
) -> None:
    made = await create(gql, name, *scopes)
    assert made["apiKey"] is None
    assert made["secret"] is None
    found = [(e["field"], e["code"], e["message"]) for e in made["userErrors"]]
    assert [(f, c) for f, c, _ in found] == [(f, c) for f, c, _ in errors]
    for (_, _, message), (_, _, start) in zip(found, errors, strict=True):
        assert message.startswith(start), message
    assert await stored_names(db) == ["tests"]


async def test_a_key_cannot_grant_a_scope_its_maker_lacks(app: Starlette, db: Database) -> None:
    key = keys.new_key()
    await add_key(db, "reader-admin", key, [Scope.KEYS_MANAGE, Scope.CUSTOMERS_READ])
    async with client_with(app, key) as manager:
        refused = await create(manager, "writer", "customers:read", "customers:write")
        assert refused["apiKey"] is None
        assert refused["secret"] is None
        assert refused["userErrors"] == [
            {
                "field": SCOPES,
                "code": "INVALID",
                "message": "You may not grant customers:write: a key can hold only scopes its "
                "maker holds.",
            }
        ]
        allowed = await create(manager, "reader", "customers:read", "keys:manage")
        assert allowed["userErrors"] == []
        assert allowed["apiKey"]["createdBy"] == "key:reader-admin"
    assert await stored_names(db) == ["reader", "reader-admin", "tests"]


async def test_a_key_is_revoked_once_with_who_revoked_it(
    gql: GraphQLClient, db: Database, clock: Clock
) -> None:
    await create(gql, "old", "customers:read")
    clock.advance(timedelta(hours=1))
    revoked = await revoke(gql, " old")
    assert revoked == {
        "apiKey": {"name": "old", "revokedAt": serialize(clock.now), "revokedBy": TESTS_KEY},
        "userErrors": [],
    }
    for name in ("old", "never-made"):
        assert await revoke(gql, name) == {
            "apiKey": None,
            "userErrors": [
                {
                    "field": NAME,
                    "code": "NOT_FOUND",
                    "message": f"There is no active key named {name!r}.",
                }
            ],
        }
    # A revoked key's name stays taken: a log that names it names one key.
    assert [e["code"] for e in (await create(gql, "old", "customers:read"))["userErrors"]] == [
        "TAKEN"
    ]
    [_, old] = (await listed(gql))["nodes"]
    assert (old["revokedAt"], old["revokedBy"]) == (serialize(clock.now), TESTS_KEY)


@pytest.mark.parametrize(
    ("name", "variables"),
    [
        ("api_keys", {}),
        ("create_api_key", {"input": {"name": "sneaky", "scopes": ["customers:read"]}}),
        ("revoke_api_key", {"input": {"name": "tests"}}),
    ],
)
async def test_a_key_without_keys_manage_is_forbidden(
    app: Starlette, db: Database, name: str, variables: dict[str, Any]
) -> None:
    key = keys.new_key()
    # Every other scope: none of them reaches keys.
    await add_key(db, "almost-all", key, keys.ALL_SCOPES - {Scope.KEYS_MANAGE})
    async with client_with(app, key) as client:
        body = (await client.post(operation(name), variables)).json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "needs the keys:manage scope" in error["message"]
    async with db.read() as session:
        rows = list(await session.scalars(select(ApiKey)))
    assert sorted(row.name for row in rows) == ["almost-all", "tests"]
    assert all(row.revoked_at is None for row in rows)


async def test_the_command_line_records_itself_as_the_actor(
    gql: GraphQLClient, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await create_key_command(db, "from-shell", [Scope.KEYS_MANAGE]) == 0
    assert await revoke_key_command(db, "from-shell") == 0
    assert await revoke_key_command(db, "from-shell") == 1  # no active key of that name
    await list_keys_command(db)
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("from-shell")]
    assert row.endswith("keys:manage; system:cli; system:cli")
    [_, made] = (await listed(gql))["nodes"]
    assert (made["name"], made["createdBy"], made["revokedBy"]) == (
        "from-shell",
        "system:cli",
        "system:cli",
    )


@pytest.mark.sqlite_only
async def test_an_operator_bootstraps_key_management_from_the_command_line(
    app: Starlette, database_url: str
) -> None:
    done = await asyncio.to_thread(
        run_cli, database_url, "keys", "create", "--name", "ops", "--scope", "keys:manage"
    )
    assert done.returncode == 0, done.stderr
    secret = done.stdout.splitlines()[-1]  # printed once, last
    async with client_with(app, secret) as operator:
        made = await create(operator, "rotated", "keys:manage")
        assert made["userErrors"] == []
        assert made["apiKey"]["createdBy"] == "key:ops"
        [_, ops, _] = (await listed(operator))["nodes"]
    assert (ops["name"], ops["scopes"], ops["createdBy"]) == ("ops", ["keys:manage"], "system:cli")


def key_cache_on(app: Starlette, clock: Clock) -> None:
    """Keep the app's key cache bound on the test's clock (it is kept on the monotonic clock),
    so that moving the clock by hand passes it, with no sleep."""
    app.state.view.keys.monotonic = lambda: clock.now.timestamp()


@pytest.fixture
async def other_process(settings: Settings, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """A second server on the same database and clock, with a key cache of its own."""
    app = create_app(settings, clock)
    async with LifespanManager(app):
        key_cache_on(app, clock)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as client:
            yield client


async def test_a_revoked_key_is_refused_by_every_server_within_the_cache_bound(
    app: Starlette,
    gql: GraphQLClient,
    anonymous: httpx.AsyncClient,
    other_process: httpx.AsyncClient,
    settings: Settings,
    clock: Clock,
) -> None:
    key_cache_on(app, clock)
    secret = (await create(gql, "leaked", "keys:manage"))["secret"]
    servers = [anonymous, other_process]

    async def status(server: httpx.AsyncClient) -> int:
        body = {"query": "{ apiKeys(first: 1) { nodes { name } } }"}
        headers = {"authorization": f"Bearer {secret}"}
        response = await server.post("/graphql", json=body, headers=headers)
        return response.status_code

    assert [await status(server) for server in servers] == [200, 200]  # both cache it now
    assert (await revoke(gql, "leaked"))["userErrors"] == []
    bound = timedelta(seconds=settings.key_cache_seconds)
    clock.advance(bound - timedelta(milliseconds=100))
    assert [await status(server) for server in servers] == [200, 200]  # within the bound
    clock.advance(timedelta(milliseconds=100))
    assert [await status(server) for server in servers] == [401, 401]
