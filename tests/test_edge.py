"""The HTTP edge against hostile requests: bodies, headers, paths and the order of checks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.types import Message

from tests.support.databases import TEST_API_KEY
from tests.support.refusals import refused
from web.access_log import printable
from web.body import MAX_JSON_DEPTH, BadJSON, _parse_json_strictly, parse_json

BAD_BODIES = [
    (b'{"query": "{ __typename }", "x": "\xff"}', "The request body is not UTF-8 (byte 34)."),
    (b"\xff\xfe{\x00}\x00", "The request body is not UTF-8 (byte 0)."),
    (
        b"[" * 5000 + b"]" * 5000,
        f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} deep.",
    ),
    (
        b'{"a":' * 65 + b"1" + b"}" * 65,
        f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} deep.",
    ),
    (
        b'{"query": "{ __typename }", "variables": {"n": ' + b"9" * 5000 + b"}}",
        "A number in the request body has more than 100 digits.",
    ),
    (
        b'{"query": "{ __typename }", "variables": {"n": NaN}}',
        "The request body is not JSON: NaN is not a JSON number.",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES, ids=[
    "invalid utf-8", "utf-16", "5000 deep", "65 deep", "5000 digits", "NaN",
])  # fmt: skip
def test_parse_json_names_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BadJSON) as raised:
        parse_json(body)
    assert str(raised.value) == message


def _outcome(parse: Any, data: bytes) -> tuple[str, str]:
    """What `parse` makes of `data`, types and all (1, 1.0 and True are told apart)."""
    try:
        return "value", repr(parse(data))
    except BadJSON as error:
        return "refused", str(error)


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text()  # lone surrogates too: the json module reads their escapes, orjson refuses
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(value=_VALUES, ascii_only=st.booleans(), cut=st.integers(0, 200), junk=st.binary(max_size=3))
def test_parse_json_reads_every_body_as_the_json_module_does(
    value: Any, ascii_only: bool, cut: int, junk: bytes
) -> None:
    """orjson's fast path (web/body.py) gives the json module's value or its error, for
    JSON texts and for texts broken at any byte."""
    text = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    for data in (text, text[:cut] + junk + text[cut:], text[:cut]):
        assert _outcome(parse_json, data) == _outcome(_parse_json_strictly, data)


@pytest.mark.parametrize("data", [
    b'{"a": 1, "b": 2, "a": 3}', b'-9223372036854775809', b'18446744073709551616',
    b'[1e400]', b'"\\ud800"', b'\xef\xbb\xbf{}', b'{"a": "\x01"}', b'[' * 64 + b']' * 64,
    b'[' * 65 + b']' * 65, b' \n{"q": [true, false, null, -0]}\t',
])  # fmt: skip
def test_parse_json_fast_path_edges(data: bytes) -> None:
    assert _outcome(parse_json, data) == _outcome(_parse_json_strictly, data)


def test_parse_json_takes_sane_values() -> None:
    nested: Any = {"a": 1}
    for _ in range(MAX_JSON_DEPTH - 1):
        nested = {"a": nested}
    assert parse_json(json.dumps(nested).encode()) == nested
    assert parse_json('{"n": -' + "9" * 100 + ', "f": 1.5e300}') == {
        "n": -int("9" * 100),
        "f": 1.5e300,
    }


@pytest.mark.parametrize(("body", "message"), BAD_BODIES[:1] + BAD_BODIES[2:3] + BAD_BODIES[4:5])
async def test_bad_bodies_are_400_saying_why_and_log_no_error(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, body: bytes, message: str
) -> None:
    with caplog.at_level(logging.INFO):
        response = await http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
    assert refused(response, 400, "BAD_REQUEST") == message
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_variables_over_get_are_held_to_the_same_limits(http: httpx.AsyncClient) -> None:
    params = {"query": "{ __typename }", "variables": "[" * 100 + "]" * 100}
    response = await http.get("/graphql", params=params)
    assert refused(response, 400, "BAD_REQUEST") == (
        f"The variables parameter nests arrays and objects more than {MAX_JSON_DEPTH} deep."
    )


@pytest.mark.both_executors
@pytest.mark.parametrize("media_type", ["APPLICATION/JSON", "Application/Json; Charset=UTF-8"])
async def test_media_types_match_in_any_case(http: httpx.AsyncClient, media_type: str) -> None:
    response = await http.post(
        "/graphql",
        content=json.dumps({"query": "{ __typename }"}),
        headers={"content-type": media_type},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"__typename": "Query"}


@pytest.mark.both_executors
@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/graphql", {}, 200),
        ("POST", "/graphql", {"authorization": "Bearer nope"}, 401),
        ("POST", "/graphql", {"content-type": "text/plain"}, 415),
        ("GET", "/graphql", {"accept": "text/html"}, 200),
        ("GET", "/graphiql/start.js", {}, 200),
        ("GET", "/nowhere", {}, 404),
    ],
)
async def test_every_response_says_nosniff_and_no_store(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    body = json.dumps({"query": "{ __typename }"}) if method == "POST" else None
    headers = {"content-type": "application/json", **headers}
    response = await http.request(method, path, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        ("POST", "/healthz", 405, "Method Not Allowed"),  # the router's
        ("GET", "/nowhere", 404, "Not Found"),  # the router's
        ("GET", "/graphiql/nothing.js", 404, "Not Found"),  # StaticFiles'
    ],
)
async def test_starlettes_own_refusals_are_plain_text_with_the_edge_headers(
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    status: int,
    text: str,
) -> None:
    with caplog.at_level(logging.INFO, logger="customer_api.access"):
        response = await http.request(method, path, headers={"x-request-id": "r-1"})
    assert (response.status_code, response.text) == (status, text)
    if status == 405:
        assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD"}
    assert response.headers["x-request-id"] == "r-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    [line] = [r.getMessage() for r in caplog.records if r.name == "customer_api.access"]
    assert line.startswith(f"{method} {path} {status} ")


async def test_too_large_bodies_say_nosniff_too(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.headers["x-content-type-options"] == "nosniff"


async def chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.both_executors
async def test_a_body_of_no_declared_length_is_counted_as_it_is_read(
    http: httpx.AsyncClient,
) -> None:
    query = json.dumps({"query": "{ __typename }"}).encode()
    headers = {"content-type": "application/json"}
    small = await http.post("/graphql", content=chunks(query), headers=headers)
    assert small.status_code == 200, small.text
    assert "content-length" not in small.request.headers  # sent chunked
    padded = query[:-1] + b', "pad": "' + b"x" * (1024 * 1024) + b'"}'
    large = await http.post("/graphql", content=chunks(padded), headers=headers)
    refused(large, 413, "PAYLOAD_TOO_LARGE")
    assert large.headers["x-content-type-options"] == "nosniff"


async def test_a_body_declared_too_large_is_413_with_or_without_a_key(
    anonymous: httpx.AsyncClient,
) -> None:
    body = b"x" * (1024 * 1024 + 1)
    for headers in ({}, {"authorization": f"Bearer {TEST_API_KEY}"}, {"authorization": "Bearer x"}):
        response = await anonymous.post("/graphql", content=body, headers=headers)
        refused(response, 413, "PAYLOAD_TOO_LARGE")


async def test_no_redirect_is_built_from_the_host_header(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql/", headers={"host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers


@pytest.mark.parametrize("path", ["/graphiql/index.html", "/graphiql/", "/graphiql"])
async def test_graphiql_is_served_by_one_route_only(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path, headers={"accept": "text/html"})
    assert response.status_code == 404
    assert "GraphiQL" not in response.text


async def test_the_graphiql_page_cannot_be_framed(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"accept": "text/html"})
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_printable_escapes_control_characters() -> None:
    assert printable("/graphql\n2025 INFO forged\x1b[31m\x7f\x85\u2028\\x") == (
        "/graphql\\x0a2025 INFO forged\\x1b[31m\\x7f\\x85\\u2028\\\\x"
    )
    assert printable("/graphql/ünïcode") == "/graphql/ünïcode"


async def test_a_decoded_path_cannot_forge_an_access_log_line(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="customer_api.access"):
        await http.get("/x%0a2025-01-01 INFO customer_api.access GET /graphql 200%1b[2J")
    [line] = [r.getMessage() for r in caplog.records if r.name == "customer_api.access"]
    assert "\n" not in line
    assert "\x1b" not in line
    assert line.startswith("GET /x\\x0a2025-01-01 INFO customer_api.access GET /graphql 200\\x1b")


# -- The order of checks: the key from the headers before any body is read -----------------------


async def call(app: Starlette, headers: list[tuple[bytes, bytes]], receive: Any) -> list[Message]:
    """The messages the app sends for one POST /graphql whose body comes from `receive`."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/graphql", "raw_path": b"/graphql", "query_string": b"",
        "root_path": "", "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


async def test_the_key_is_checked_before_the_body_is_read(app: Starlette) -> None:
    async def receive() -> Message:
        raise AssertionError("the body was read before the key was checked")

    sent = await call(app, [], receive)
    assert sent[0]["status"] == 401
    sent = await call(app, [(b"authorization", b"Bearer cak_unknown")], receive)
    assert sent[0]["status"] == 401


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    return {"body_timeout_seconds": 0.3}


async def test_a_body_that_stalls_gets_408_and_closes(app: Starlette) -> None:
    stalled = asyncio.Event()
    parts = iter([b'{"query": "{ __typ'])

    async def receive() -> Message:
        for part in parts:
            return {"type": "http.request", "body": part, "more_body": True}
        stalled.set()
        await asyncio.Event().wait()  # never more: the client stalled half-way
        raise AssertionError

    async with asyncio.timeout(10):  # the deadline, not this, must end the wait
        sent = await call(app, [(b"authorization", f"Bearer {TEST_API_KEY}".encode())], receive)
    assert stalled.is_set()
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {
        "errors": [
            {
                "message": "The request body did not arrive within 0.3 seconds.",
                "extensions": {"code": "REQUEST_TIMEOUT"},
            }
        ]
    }
