"""Clients that never finish cannot hold a real server: every connection closes within the
timeouts, the process stays small, and other requests are answered meanwhile.

SLOW_CLIENTS (default 200) sets how many of each kind of slow client the test opens; the
issue's figure is 200 of each. bench/slow_clients.py times the cheap query beside them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable

import httpx
import pytest

from bench.slow_clients import CHEAP, Closed, dribble_head, rss_bytes, stall_body, until_closed
from tests.databases import TEST_API_KEY
from tests.servers import running_server

SLOW_CLIENTS = int(os.environ.get("SLOW_CLIENTS", "200"))
HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT = 2.0, 3.0, 2.0
# A timer never fires early; a loaded 2-core machine may run it late, and the clients' own
# clocks start a little before the server's. So: no earlier than the timeout, and not much later.
EARLY, LATE = 0.2, 10.0
MiB = 2**20
AUTHORIZATION = f"authorization: Bearer {TEST_API_KEY}\r\n".encode()


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the edge does not depend on the database


def closed_within(closed: list[Closed], timeout: float) -> list[float]:
    """The connections' lifetimes that fall outside [timeout, timeout + LATE]."""
    return [c.seconds for c in closed if not timeout - EARLY <= c.seconds <= timeout + LATE]


async def idle_after_one_request(host: str, port: int) -> Closed:
    reader, writer = await asyncio.open_connection(host, port)
    body = b'{"query": "{ __typename }"}'
    writer.write(
        b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + AUTHORIZATION
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )
    began = time.monotonic()
    try:
        answer = await until_closed(reader)
        return Closed(time.monotonic() - began, answer)
    finally:
        writer.close()


def test_slow_clients_are_closed_within_the_timeouts(database_url: str) -> None:
    with running_server(
        database_url,
        HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        IDLE_TIMEOUT_SECONDS=str(IDLE_TIMEOUT),
        KYC_SWEEP_INTERVAL_SECONDS="0",
    ) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        headers = {"authorization": f"Bearer {TEST_API_KEY}"}

        async def run() -> tuple[int, int, list[int], dict[str, list[Closed]]]:
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
                for _ in range(20):  # warm up: the first requests fill the server's caches
                    assert (await client.post("/graphql", json={"query": CHEAP})).is_success
                before = peak = rss_bytes(server.pid)
                started = [asyncio.Event() for _ in range(2 * SLOW_CLIENTS + 20)]
                events = iter(started)
                kinds: dict[str, list[Awaitable[Closed]]] = {
                    "head": [
                        dribble_head(host, int(port), next(events)) for _ in range(SLOW_CLIENTS)
                    ],
                    "body without key": [
                        stall_body(host, int(port), next(events)) for _ in range(SLOW_CLIENTS)
                    ],
                    "body with key": [
                        stall_body(host, int(port), next(events), AUTHORIZATION) for _ in range(10)
                    ],
                    "body after 401": [
                        stall_body(host, int(port), next(events), trickle=True) for _ in range(10)
                    ],
                }  # fmt: skip
                tasks = {
                    kind: [asyncio.ensure_future(c) for c in clients]
                    for kind, clients in kinds.items()
                }
                idle = asyncio.ensure_future(idle_after_one_request(host, int(port)))
                await asyncio.gather(*(event.wait() for event in started))
                statuses = []
                while not all(t.done() for ts in tasks.values() for t in ts):
                    response = await client.post("/graphql", json={"query": CHEAP})
                    statuses.append(response.status_code)
                    peak = max(peak, rss_bytes(server.pid))
                    await asyncio.wait([t for ts in tasks.values() for t in ts], timeout=0.2)
                closed = {kind: [t.result() for t in ts] for kind, ts in tasks.items()}
                closed["idle"] = [await idle]
                return before, peak, statuses, closed

        before, peak, statuses, closed = asyncio.run(run())

    assert closed_within(closed["head"], HEADER_TIMEOUT) == []
    assert {c.answer for c in closed["head"]} == {b""}  # closed without a word
    for kind in ("body without key", "body after 401"):
        assert closed_within(closed[kind], IDLE_TIMEOUT) == [], kind
        assert {c.answer.split(b"\r\n")[0] for c in closed[kind]} == {b"HTTP/1.1 401 Unauthorized"}
    assert closed_within(closed["body with key"], BODY_TIMEOUT) == []
    assert {c.answer.split(b"\r\n")[0] for c in closed["body with key"]} == {
        b"HTTP/1.1 408 Request Timeout"
    }
    assert closed_within(closed["idle"], IDLE_TIMEOUT) == []
    assert closed["idle"][0].answer.startswith(b"HTTP/1.1 200 OK")
    assert statuses
    assert set(statuses) == {200}  # the cheap query was answered all along
    assert peak - before < 30 * MiB
    assert not [line for line in server.log if " ERROR " in line]


def test_heads_and_connections_are_bounded(database_url: str) -> None:
    with running_server(
        database_url, MAX_HEADER_BYTES="2048", MAX_CONNECTIONS="4", KYC_SWEEP_INTERVAL_SECONDS="0"
    ) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)

        async def ask(head: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(head)
            try:
                return (await reader.readuntil(b"\r\n")).rstrip()
            finally:
                writer.close()

        async def run() -> tuple[bytes, bytes]:
            # A head not finished within the bound: the server will not buffer more of it.
            too_big = await ask(b"GET /graphql HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 4096)
            held = [await asyncio.open_connection(host, int(port)) for _ in range(4)]
            try:
                refused = await ask(b"GET /graphql HTTP/1.1\r\nhost: x\r\n\r\n")
            finally:
                for _, writer in held:
                    writer.close()
            return too_big, refused

        too_big, refused = asyncio.run(run())
    assert too_big == b"HTTP/1.1 400 Bad Request"
    assert refused == b"HTTP/1.1 503 Service Unavailable"
