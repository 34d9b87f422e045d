"""Identity-provider tokens beside API keys: what is accepted, what is refused and why, and the
provider's keys fetched, cached, refreshed and survived when the provider is down."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from db import keys
from db.engine import Database
from db.keys import ALL_SCOPES, Principal, Scope
from server import Settings, create_app
from tests.support.clock import Clock
from tests.support.databases import add_key
from tests.support.graphql_client import GraphQLClient, operation
from tests.support.identity import AUDIENCE, IdentityProvider, b64, identity_provider, make_key
from tests.support.sockets import serving, socket
from web.auth import Unauthenticated, token_principal
from web.tokens import (
    MAX_AGE_SECONDS,
    MIN_REFRESH_SECONDS,
    Jwks,
    KeysUnavailable,
    TokenSettings,
    TokenVerifier,
)

pytestmark = [pytest.mark.sqlite_only, pytest.mark.both_executors]

CREATE = {"input": {"externalCustomerId": "c-new", "data": {"email": "new@example.com"}}}


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    with identity_provider() as idp:
        yield idp


@pytest.fixture
def idp(provider: IdentityProvider) -> Iterator[IdentityProvider]:
    """The run's provider, up and with its own keys published, its request log empty."""
    provider.mode, provider.published = "up", list(provider.keys.values())
    provider.requests.clear()
    if provider.server is None:
        provider.start()
    yield provider
    provider.released.set()  # free a handler left hanging
    provider.released.clear()


@pytest.fixture
def setting_overrides(provider: IdentityProvider) -> dict[str, Any]:
    return provider.settings(timeout_seconds=0.5)


async def post(
    http: httpx.AsyncClient, token: str, name: str, variables: dict[str, Any] | None = None
) -> httpx.Response:
    return await http.post(
        "/graphql",
        json={"query": operation(name), "variables": variables or {}},
        headers={"authorization": f"Bearer {token}"},
    )


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
async def test_a_valid_token_runs_with_its_scopes(
    anonymous: httpx.AsyncClient, gql: GraphQLClient, idp: IdentityProvider, kind: str
) -> None:
    await gql.create("c-1")
    token = idp.token(kind, scope="openid customers:read profile")
    read = await post(anonymous, token, "customer", {"externalCustomerId": "c-1"})
    assert read.status_code == 200
    assert read.json()["data"]["customer"]["externalCustomerId"] == "c-1"
    # customers:read only: the write is refused whole.
    write = (await post(anonymous, token, "create_customer", CREATE)).json()
    assert write["data"] is None
    assert [e["extensions"]["code"] for e in write["errors"]] == ["FORBIDDEN"]
    assert await gql.customer("c-new") is None


def expired(idp: IdentityProvider) -> str:
    return idp.token(exp=int(time.time()) - 3600, scope="customers:write")


def tampered(idp: IdentityProvider) -> str:
    """A customers:read token whose payload was swapped for one granting customers:write."""
    header, _, signature = idp.token(scope="customers:read").split(".")
    forged = idp.token(scope="customers:write").split(".")[1]
    return f"{header}.{forged}.{signature}"


REFUSED = {
    "expired": (expired, "The token has expired"),
    "wrong issuer": (
        lambda idp: idp.token(iss="https://other.example/", scope="customers:write"),
        "issuer ('iss') is not",
    ),
    "wrong audience": (
        lambda idp: idp.token(aud="another-api", scope="customers:write"),
        f"audience ('aud') is not '{AUDIENCE}'",
    ),
    "alg none": (
        lambda idp: idp.alg_none_token(scope="customers:write"),
        "signed with 'none'; only RS256, ES256, EdDSA are accepted",
    ),
    "HS256 with the public key": (
        lambda idp: idp.hs256_with_public_key(scope="customers:write"),
        "signed with 'HS256'; only RS256, ES256, EdDSA are accepted",
    ),
    "unknown kid": (
        lambda idp: idp.token(kid="rotated-9", scope="customers:write"),
        "signing key 'rotated-9' is not one of the identity provider's keys",
    ),
    "tampered payload": (tampered, "signature does not match"),
    "not yet valid": (
        lambda idp: idp.token(nbf=int(time.time()) + 3600, scope="customers:write"),
        "not valid yet",
    ),
    "issued in the future": (
        lambda idp: idp.token(iat=int(time.time()) + 3600, scope="customers:write"),
        "not valid yet (its 'iat' is to come)",
    ),
    "issued at no number": (
        lambda idp: idp.token(iat="yesterday", scope="customers:write"),
        "The token's 'iat' claim is not a number",
    ),
    "no subject": (lambda idp: idp.token(sub=None, scope="customers:write"), "no 'sub' claim"),
    "no expiry": (lambda idp: idp.token(exp=None, scope="customers:write"), "no 'exp' claim"),
    "alg of another key type": (
        lambda idp: idp.token("ec", kid="rsa-1", scope="customers:write"),
        "'alg' is not RS256, the algorithm of its key",
    ),
    "self without its customer": (
        lambda idp: idp.token(scope="customers:self customers:write"),
        "customers:self scope but no 'external_customer_id' claim",
    ),
    "not a JWT": (lambda idp: "abc.def.ghi", "not a well-formed JWT"),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_bad_token_is_refused_saying_why_and_nothing_runs(
    anonymous: httpx.AsyncClient, gql: GraphQLClient, idp: IdentityProvider, case: str
) -> None:
    make, reason = REFUSED[case]
    response = await post(anonymous, make(idp), "create_customer", CREATE)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert reason in error["message"]
    assert "data" not in response.json()
    assert await gql.customer("c-new") is None


def under_header(idp: IdentityProvider, header: str) -> str:
    """A good token's claims and signature under this (base64url) header."""
    _, claims, signature = idp.token(scope="customers:write").split(".")
    return f"{header}.{claims}.{signature}"


def encoded(header: Any) -> str:
    return b64(json.dumps(header).encode())


RSA = {"alg": "RS256", "kid": "rsa-1"}
# Headers no provider would sign, base64url, and what the refusal names: each is refused (401,
# saying what is wrong) before any key is looked at, never a 500.
MALFORMED_HEADERS: dict[str, tuple[str, str]] = {
    **{
        f"kid {kind}": (encoded({**RSA, "kid": kid}), "'kid'")
        for kind, kid in [
            ("number", 5),
            ("list", ["rsa-1"]),
            ("object", {"rsa-1": 1}),
            ("null", None),
            ("true", True),
            ("empty", ""),
        ]
    },
    "no kid": (encoded({"alg": "RS256"}), "'kid'"),
    **{
        f"crit {kind}": (encoded({**RSA, "crit": crit}), "'crit'")
        for kind, crit in [
            ("naming a claim", ["exp"]),
            ("naming b64", ["b64"]),
            ("empty", []),
            ("a string", "exp"),
            ("null", None),
            ("of numbers", [1]),
        ]
    },
    "b64 false": (encoded({**RSA, "b64": False}), "'b64'"),
    **{
        f"alg {kind}": (encoded({**RSA, "alg": alg}), "'alg'")
        for kind, alg in [
            ("list", ["RS256"]),
            ("object", {"RS256": True}),
            ("number", 256),
            ("null", None),
            ("lower case", "rs256"),
            ("long", "RS256" * 1000),
        ]
    },
    "no alg": (encoded({"kid": "rsa-1"}), "'alg'"),
    **{
        f"header {kind}": (b64(raw), "not a well-formed JWT")
        for kind, raw in [
            ("a list", b'["RS256"]'),
            ("a string", b'"RS256"'),
            ("a number", b"1"),
            ("null", b"null"),
            ("not JSON", b"{alg: RS256}"),
            ("not UTF-8", b"\xff\xfe{}"),
            ("nested deep", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
            ("a huge number", b'{"alg":"RS256","kid":"rsa-1","x":' + b"9" * 5000 + b"}"),
        ]
    },
    "header of junk base64": ("@@@", "not a well-formed JWT"),
    "header empty": ("", "not a well-formed JWT"),
}


@pytest.mark.parametrize("case", list(MALFORMED_HEADERS))
async def test_a_malformed_header_is_refused_before_any_key_is_fetched(
    anonymous: httpx.AsyncClient,
    gql: GraphQLClient,
    idp: IdentityProvider,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    header, names = MALFORMED_HEADERS[case]
    with caplog.at_level(logging.INFO):
        response = await post(anonymous, under_header(idp, header), "create_customer", CREATE)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert list(response.json()) == ["errors"]
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert names in error["message"]
    assert len(error["message"]) < 300  # what the token says is not echoed at any length
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert idp.jwks_fetches() == 0
    assert await gql.customer("c-new") is None


@pytest.mark.parametrize("case", ["kid number", "crit naming a claim", "alg list", "header a list"])
async def test_a_malformed_header_over_a_websocket_is_closed_4401(
    settings: Settings,
    clock: Clock,
    idp: IdentityProvider,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    header, names = MALFORMED_HEADERS[case]
    token = under_header(idp, header)
    with caplog.at_level(logging.INFO):
        async with serving(create_app(settings, clock)) as url, socket(url) as ws:
            await ws.send(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            )
            code, reason = await ws.closed()
    assert code == 4401
    assert reason is not None
    assert reason.startswith("Unauthorized: ")
    assert names in reason
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_actors_say_what_they_are_so_no_subject_passes_for_a_key_or_the_sweep(
    anonymous: httpx.AsyncClient,
    gql: GraphQLClient,
    db: Database,
    idp: IdentityProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin_key = keys.new_key()
    await add_key(db, "admin", admin_key, [Scope.CUSTOMERS_READ, Scope.CUSTOMERS_WRITE])
    writers = {
        "c-1": idp.token(sub="system", scope="customers:read customers:write"),
        "c-2": idp.token(sub="admin", scope="customers:read customers:write"),
        "c-3": admin_key,
    }
    caplog.set_level(logging.INFO, logger="customer_api.access")
    for external_id, credential in writers.items():
        data = {"email": f"{external_id}@example.com"}
        variables = {"input": {"externalCustomerId": external_id, "data": data}}
        created = await post(anonymous, credential, "create_customer", variables)
        assert created.json()["data"]["createCustomer"]["userErrors"] == [], created.text
    actors = [f"token:{idp.issuer}#system", f"token:{idp.issuer}#admin", "key:admin"]
    page = (await gql.run("customer_events"))["customerEvents"]
    assert [(e["externalCustomerId"], e["actor"]) for e in page["nodes"]] == list(
        zip(writers, actors, strict=True)
    )
    # The access log names each writer as its events do.
    logged = [getattr(r, "actor", None) for r in caplog.records if r.name == "customer_api.access"]
    assert logged[: len(actors)] == actors


@pytest.mark.parametrize(
    ("sub", "reason"),
    [
        ("x" * 300, "The token's 'sub' claim is longer than"),
        ("ann\x00", "The token's 'sub' claim has a character that is not printable"),
        ("ann\ud800", "The token's 'sub' claim has a character that is not printable"),
    ],
)
async def test_a_subject_no_event_can_hold_is_refused(
    anonymous: httpx.AsyncClient, gql: GraphQLClient, idp: IdentityProvider, sub: str, reason: str
) -> None:
    token = idp.token(sub=sub, scope="customers:write")
    response = await post(anonymous, token, "create_customer", CREATE)
    assert response.status_code == 401, response.text
    [error] = response.json()["errors"]
    assert reason in error["message"]
    assert await gql.customer("c-new") is None


@pytest.mark.parametrize(("seconds_ago", "status"), [(10, 200), (60, 401)])
async def test_expiry_allows_the_leeway_and_no_more(
    anonymous: httpx.AsyncClient, idp: IdentityProvider, seconds_ago: int, status: int
) -> None:
    token = idp.token(exp=int(time.time()) - seconds_ago)  # the leeway is 30 s by default
    response = await post(anonymous, token, "customer", {"externalCustomerId": "c-1"})
    assert response.status_code == status


async def test_keys_are_fetched_once_and_kept(
    anonymous: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    for kind in ("rsa", "ec", "ed25519", "rsa"):
        response = await post(anonymous, idp.token(kind), "customer", {"externalCustomerId": "x"})
        assert response.status_code == 200
    # A made-up key id right after a fetch makes no other fetch.
    refused = await post(
        anonymous, idp.token(kid="made-up"), "customer", {"externalCustomerId": "x"}
    )
    assert refused.status_code == 401
    assert idp.jwks_fetches() == 1


async def test_an_unknown_kid_refreshes_the_keys_at_most_once_a_minute(
    idp: IdentityProvider,
) -> None:
    now = [1000.0]
    jwks = Jwks(idp.jwks_url, 2.0, monotonic=lambda: now[0])
    assert await jwks.key("rsa-1") is not None
    rotated = make_key("rsa", "rsa-2")
    idp.published = [*idp.published, rotated]  # the provider rotates in a new key
    now[0] += MIN_REFRESH_SECONDS - 1
    for _ in range(5):  # a stream of tokens with the new (or made-up) ids
        assert await jwks.key("rsa-2") is None
    assert idp.jwks_fetches() == 1
    now[0] += 1
    found = await jwks.key("rsa-2")
    assert found is not None
    assert found.key_id == "rsa-2"
    assert idp.jwks_fetches() == 2


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    """Wait for the condition to hold, failing the test if it does not within the bound."""
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)  # the pace of the polling, not a wait for anything


async def test_old_keys_are_refreshed_in_the_background_and_kept_when_that_fails(
    idp: IdentityProvider,
) -> None:
    now = [1000.0]
    jwks = Jwks(idp.jwks_url, 2.0, monotonic=lambda: now[0])
    assert await jwks.key("ec-1") is not None
    now[0] += MAX_AGE_SECONDS
    idp.published = [key for key in idp.published if key.kid != "ec-1"]  # withdrawn
    assert await jwks.key("ec-1") is not None  # in hand: answered now, and a refresh starts
    await until(lambda: jwks.fetched_at == now[0])
    assert await jwks.key("ec-1") is None  # the refresh has landed: the key no longer works
    assert idp.jwks_fetches() == 2
    now[0] += MAX_AGE_SECONDS
    idp.mode = "error"
    assert await jwks.key("rsa-1") is not None
    await until(lambda: jwks.failed_at == now[0])
    assert await jwks.key("rsa-1") is not None  # the provider is down: the keys in hand serve
    assert idp.jwks_fetches() == 3


async def test_stale_keys_answer_at_once_while_their_refresh_waits_on_a_hanging_provider(
    idp: IdentityProvider,
) -> None:
    now = [1000.0]
    jwks = Jwks(idp.jwks_url, 20.0, monotonic=lambda: now[0])
    verifier = TokenVerifier(TokenSettings(idp.issuer, AUDIENCE, idp.jwks_url), jwks)
    assert (await verifier.principal(idp.token("ec"))).name == "user-1"
    idp.mode = "hang"
    now[0] += MAX_AGE_SECONDS
    for kind in ("ec", "rsa", "ed25519", "ec"):
        assert (await verifier.principal(idp.token(kind))).name == "user-1"
    # One refresh for all of them, in the background, still waiting on the provider: none of
    # the tokens above waited for it (the fetch may take 20 s).
    await until(lambda: idp.jwks_fetches() == 2)
    assert (jwks.fetched_at, jwks.failed_at) == (1000.0, None)
    # A key id not in hand cannot be answered from the keys in hand: it waits for that same
    # refresh, which fails when the provider gives up without an answer.
    unknown = asyncio.create_task(jwks.key("rsa-2"))
    idp.released.set()
    with pytest.raises(KeysUnavailable, match="could not be reached"):
        await unknown
    assert idp.jwks_fetches() == 2
    await jwks.close()


async def test_over_http_stale_keys_answer_at_once_while_the_provider_hangs(
    settings: Settings, clock: Clock, idp: IdentityProvider
) -> None:
    # Keys old at once, and a fetch that may take 20 s: a request that waited for it would
    # see the refresh fail before it was answered.
    changed = {"jwt_jwks_timeout_seconds": 20, "jwt_jwks_max_age_seconds": 0.001}
    app = create_app(settings.model_copy(update=changed), clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        jwks: Jwks = app.state.view.tokens.jwks
        assert jwks.max_age_seconds == 0.001
        token = idp.token()
        assert (
            await post(client, token, "customer", {"externalCustomerId": "x"})
        ).status_code == 200
        idp.mode = "hang"
        async with asyncio.timeout(10):
            while idp.jwks_fetches() < 2:  # until a request finds the keys old
                response = await post(client, token, "customer", {"externalCustomerId": "x"})
                assert response.status_code == 200
                # A turn of the loop for the refresh that request started: over an in-process
                # transport a SQLite lookup (a point read on the loop's thread) answers
                # without ever suspending, so nothing else ran, not even this timeout.
                await asyncio.sleep(0)
        for _ in range(3):
            response = await post(client, token, "customer", {"externalCustomerId": "x"})
            assert response.status_code == 200
        assert jwks.failed_at is None  # the refresh still waits on the provider
        assert idp.jwks_fetches() == 2


async def test_concurrent_requests_share_one_fetch(idp: IdentityProvider) -> None:
    jwks = Jwks(idp.jwks_url, 2.0)
    found = await asyncio.gather(*(jwks.key("ec-1") for _ in range(20)))
    assert all(key is not None for key in found)
    assert idp.jwks_fetches() == 1


async def poll_until_ok(http: httpx.AsyncClient, token: str, deadline_seconds: float) -> int:
    """Requests until one is answered 200, or the deadline passes; how many it took."""
    deadline = time.monotonic() + deadline_seconds
    tries = 0
    while True:
        tries += 1
        response = await post(http, token, "customer", {"externalCustomerId": "x"})
        if response.status_code == 200:
            return tries
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, "the server did not recover"
        await asyncio.sleep(0.1)  # the pace of the polling, not a wait for anything


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("down", "it could not be reached"),
        ("error", "it answered 503"),
        ("hang", "no answer within 0.5 s"),
    ],
)
async def test_a_provider_that_is_down_gets_a_quick_503_and_recovery_needs_nobody(
    anonymous: httpx.AsyncClient, idp: IdentityProvider, mode: str, reason: str
) -> None:
    if mode == "down":
        idp.stop()
    else:
        idp.mode = mode
    token = idp.token()
    began = time.monotonic()
    response = await post(anonymous, token, "customer", {"externalCustomerId": "x"})
    assert time.monotonic() - began < 5  # bounded by the 0.5 s timeout, never a hang
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "UNAVAILABLE"}
    assert reason in error["message"]
    # Back up: the next requests fetch again by themselves.
    if mode == "down":
        idp.start()
    idp.mode = "up"
    idp.released.set()
    await poll_until_ok(anonymous, token, deadline_seconds=10)


async def test_keys_in_hand_outlive_an_outage(
    anonymous: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    token = idp.token()
    assert (
        await post(anonymous, token, "customer", {"externalCustomerId": "x"})
    ).status_code == 200
    idp.stop()
    try:
        response = await post(anonymous, token, "customer", {"externalCustomerId": "x"})
        assert response.status_code == 200
    finally:
        idp.start()


async def test_keys_unavailable_says_why(idp: IdentityProvider) -> None:
    idp.mode = "error"
    with pytest.raises(KeysUnavailable, match="it answered 503"):
        await Jwks(idp.jwks_url, 2.0).key("rsa-1")


async def test_keys_from_an_answer_that_is_no_jwks_are_unavailable(idp: IdentityProvider) -> None:
    idp.mode = "junk"
    with pytest.raises(KeysUnavailable, match="its answer is not a JWKS"):
        await Jwks(idp.jwks_url, 2.0).key("rsa-1")


def test_a_server_without_token_settings_accepts_keys_only() -> None:
    assert Settings().tokens is None


async def test_a_token_to_a_server_without_token_settings_is_refused(
    idp: IdentityProvider,
) -> None:
    with pytest.raises(Unauthenticated, match="accepts API keys only"):
        await token_principal(idp.token(), None)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"jwt_issuer": "https://id.example/"}, "need JWT_AUDIENCE and JWT_JWKS_URL as well"),
        (
            {"jwt_issuer": "i", "jwt_audience": "a", "jwt_jwks_url": "file:///etc/keys"},
            "must be an http(s) URL",
        ),
        (
            {"jwt_issuer": "https://id.example/" + "x" * 200, "jwt_audience": "a"},
            "at most 128 characters",
        ),
    ],
)
def test_token_settings_come_complete(given: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**given)  # type: ignore[arg-type]


def test_customers_self_is_a_token_scope_only() -> None:
    assert Scope.CUSTOMERS_SELF not in ALL_SCOPES


async def test_the_customer_claim_is_named_by_a_setting(idp: IdentityProvider) -> None:
    settings = TokenSettings(idp.issuer, AUDIENCE, idp.jwks_url, customer_claim="https://ex/cid")
    token = idp.token(sub="ann", scope="customers:self", **{"https://ex/cid": "c-9"})
    principal = await TokenVerifier(settings).principal(token)
    assert principal == Principal("ann", frozenset({Scope.CUSTOMERS_SELF}), "c-9", idp.issuer)
