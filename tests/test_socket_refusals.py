"""Hostile WebSocket messages and credentials against a real server process: each one is a
clean refusal (a 44xx close code that says why), and the server's log holds no traceback.

One server serves every case; its log is read once it has stopped."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.databases import TEST_API_KEY, Databases
from tests.support.graphql_client import operation
from tests.support.identity import IdentityProvider, unsigned
from tests.support.servers import running_server
from tests.support.sockets import Socket, socket

DEEP = 100_000  # far past the 64 levels a request body may nest


def init(authorization: str) -> dict[str, Any]:
    return {"type": "connection_init", "payload": {"Authorization": authorization}}


def subscribe(payload: object, id: object = "1") -> dict[str, Any]:
    return {"type": "subscribe", "id": id, "payload": payload}


QUERY = operation("on_customer_events")

# Sent first, on a socket of their own: (name, raw text, the close code, its reason's start).
BEFORE_INIT = [
    ("a deep array", "[" * DEEP + "]" * DEEP, 4400, "The message nests arrays and objects"),
    ("a deep object", '{"a":' * DEEP + "1" + "}" * DEEP, 4400, "The message nests arrays"),
    ("a long number", "1" * 5000, 4400, "A number in the message has more than 100 digits."),
    ("not JSON", "{", 4400, "The message is not JSON"),
    ("a number", "1", 4400, "A message must be a JSON object."),
    ("an array", "[]", 4400, "A message must be a JSON object."),
    ("a type that is not a string", '{"type": ["x"]}', 4400, "A message's type must be a"),
    ("a complete without id", '{"type": "complete", "id": []}', 4400, "A complete message's"),
]


def tokens(idp: IdentityProvider) -> list[tuple[str, str]]:
    """Credentials whose header the verifier may not expect: each is refused with 4401."""
    claims = idp.claims()
    return [
        ("a token that is not base64", "Bearer eyJ.eyJ.x"),
        ("a token whose kid is a number", "Bearer " + unsigned({"alg": "RS256", "kid": 5}, claims)
         + ".c2ln"),
        ("a token with crit", "Bearer " + unsigned(
            {"alg": "RS256", "kid": idp.keys["rsa"].kid, "crit": ["exp"]}, claims) + ".c2ln"),
        ("a token whose header is a list", "Bearer " + unsigned([1], claims) + ".c2ln"),  # type: ignore[arg-type]
    ]  # fmt: skip


# Sent after an acknowledged connection_init: (name, message, its close reason's start).
AFTER_INIT: list[tuple[str, dict[str, Any], str]] = [
    ("a payload that is a number", subscribe(5), "A subscribe message's payload must be"),
    ("a query that is a number", subscribe({"query": 5}), "A subscribe message's payload"),
    ("variables that are a number", subscribe({"query": QUERY, "variables": 5}), "A subscribe"),
    ("an id that is a list", subscribe({"query": QUERY}, id=[1]), "A subscribe message's id"),
    ("an operationName that is a list", subscribe({"query": QUERY, "operationName": []}), "A"),
]


async def close_of(ws: Socket) -> tuple[int | None, str | None]:
    """The server's close code and reason (None, None: dropped without one); (0, None) when
    the socket is still open after 10 s."""
    try:
        return await ws.closed()
    except TimeoutError:
        return 0, None


@pytest.fixture
def sqlite_url(databases: Databases) -> str:
    return databases.url_for("sqlite")  # these cases do not depend on the backend


async def test_hostile_messages_and_credentials_close_the_socket_without_a_traceback(
    sqlite_url: str, idp: IdentityProvider
) -> None:
    url = sqlite_url
    seen: list[tuple[str, int | None, bool]] = []
    expected: list[tuple[str, int | None, bool]] = []
    with running_server(url, None, **idp.environment()) as server:
        ws_url = server.url.replace("http://", "ws://") + "/graphql"
        for name, text, code, reason in BEFORE_INIT:
            async with socket(ws_url) as ws:
                await ws.connection.send(text)
                closed, said = await close_of(ws)
            seen.append((name, closed, (said or "").startswith(reason)))
            expected.append((name, code, True))
        for name, authorization in tokens(idp):
            async with socket(ws_url) as ws:
                await ws.send(init(authorization))
                closed, said = await close_of(ws)
            seen.append((name, closed, (said or "").startswith("Unauthorized: ")))
            expected.append((name, 4401, True))
        for name, message, reason in AFTER_INIT:
            async with socket(ws_url) as ws:
                assert (await ws.init(TEST_API_KEY))["type"] == "connection_ack"
                await ws.send(message)
                closed, said = await close_of(ws)
            seen.append((name, closed, (said or "").startswith(reason)))
            expected.append((name, 4400, True))
        assert server.stop() == 0
    assert seen == expected, "\n".join(map(str, seen))
    log = "".join(server.log)
    assert "Traceback" not in log
    assert "ERROR" not in log
