"""CORS by setting: the headers a browser needs, for listed origins only (Chromium: see
test_browser_app.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from db.engine import Database
from server import Settings
from tests.support.databases import TEST_API_KEY
from web.cors import HEADERS, METHODS, Cors

APP = "http://127.0.0.1:5173"
OTHER = "https://evil.example"


pytestmark = pytest.mark.sqlite_only  # headers only


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    return {"cors_allow_origins": f"{APP}, https://app.example.com"}


def preflight(origin: str, headers: str = "authorization,content-type") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": headers,
    }


# What graphql-http's client and Apollo Client ask to send.
@pytest.mark.parametrize(
    "requested",
    [
        "authorization,content-type",
        "accept,authorization,content-type",
        "apollographql-client-name,apollographql-client-version,authorization,content-type",
    ],
)
async def test_a_preflight_from_a_listed_origin_needs_no_key(
    anonymous: httpx.AsyncClient, requested: str
) -> None:
    response = await anonymous.options("/graphql", headers=preflight(APP, requested))
    assert response.status_code == 204
    assert response.content == b""
    headers = response.headers
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-methods"] == "GET, POST"
    allowed = {h.strip() for h in headers["access-control-allow-headers"].lower().split(",")}
    assert {"authorization", "content-type", "accept"} <= allowed
    assert headers["access-control-max-age"] == "600"
    assert "Origin" in headers["vary"]
    assert "access-control-allow-credentials" not in headers


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        (preflight(OTHER), "origin"),
        (preflight(APP, "authorization,x-secret"), "headers"),
        ({**preflight(APP), "access-control-request-method": "DELETE"}, "method"),
    ],
)
async def test_a_preflight_asking_for_what_is_not_allowed_gets_no_allow_origin(
    anonymous: httpx.AsyncClient, headers: dict[str, str], refused: str
) -> None:
    response = await anonymous.options("/graphql", headers=headers)
    assert response.status_code == 400
    assert response.text == f"Disallowed CORS {refused}"
    if refused == "origin":
        assert "access-control-allow-origin" not in response.headers


@pytest.mark.both_executors
async def test_a_request_from_a_listed_origin_may_be_read_by_it(
    anonymous: httpx.AsyncClient,
) -> None:
    query = {"query": "{ __typename }"}
    headers = {"origin": APP, "authorization": f"Bearer {TEST_API_KEY}"}
    response = await anonymous.post("/graphql", json=query, headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert "Origin" in response.headers["vary"]
    # A 401 too, so the app can show why.
    refused = await anonymous.post("/graphql", json=query, headers={"origin": APP})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == APP
    # Any other origin gets nothing that would let its page read the answer.
    elsewhere = await anonymous.post("/graphql", json=query, headers={**headers, "origin": OTHER})
    assert "access-control-allow-origin" not in elsewhere.headers
    assert "Origin" in elsewhere.headers["vary"]


def test_no_origin_is_allowed_unless_listed() -> None:
    assert Settings().cors_origins == ()
    assert Settings(
        cors_allow_origins=" https://a.example ,http://localhost:5173,"
    ).cors_origins == (
        "https://a.example",
        "http://localhost:5173",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("*", "list exact origins; a wildcard"),
        ("https://*.example.com", "list exact origins; a wildcard"),
        ("https://app.example.com/", "scheme, host and port only"),
        ("app.example.com", "is not an origin like https://app.example.com"),
    ],
)
def test_origins_are_exact(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(cors_allow_origins=value)


async def test_a_preflight_answer_carries_the_edge_headers_and_its_own_vary(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.options(
        "/graphql", headers={**preflight(APP), "x-request-id": "pre-1"}
    )
    assert response.status_code == 204
    assert response.headers["x-request-id"] == "pre-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers.get_list("vary") == [
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
        "Access-Control-Request-Private-Network"
    ]


async def test_a_failure_outside_graphql_is_readable_by_a_listed_origin(
    anonymous: httpx.AsyncClient, db: Database
) -> None:
    async with db.write() as session:
        await session.execute(text("ALTER TABLE api_key RENAME TO api_key_gone"))
    response = await anonymous.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"origin": APP, "authorization": "Bearer cak_fresh-key", "x-request-id": "e-1"},
    )
    assert response.status_code == 500
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["x-request-id"] == "e-1"
    assert response.headers["cache-control"] == "no-store"


# What the app's responses may already carry, and what Starlette's middleware makes of them.
RESPONSE_HEADERS = [
    [],
    [(b"content-type", b"text/plain")],
    [(b"vary", b"Accept")],
    [(b"vary", b"Accept"), (b"content-length", b"0"), (b"vary", b"Accept-Encoding")],
    [(b"access-control-allow-origin", b"https://else.example"), (b"vary", b"Accept")],
]


@pytest.mark.parametrize("headers", RESPONSE_HEADERS)
@pytest.mark.parametrize("origin", [None, APP, OTHER])
async def test_response_headers_are_what_starlettes_middleware_adds(
    headers: list[tuple[bytes, bytes]], origin: str | None
) -> None:
    async def ignored(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError

    middleware = CORSMiddleware(
        ignored, allow_origins=[APP], allow_methods=METHODS, allow_headers=HEADERS, max_age=600
    )
    request = Headers(headers={} if origin is None else {"origin": origin})
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    start = {"type": "http.response.start", "status": 200, "headers": list(headers)}
    await middleware.send(start, send, request)
    ours = list(headers)
    Cors([APP]).add_headers(ours, None if origin is None else origin.encode())
    assert ours == sent[0]["headers"]
