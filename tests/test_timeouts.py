"""Clients that never finish cannot hold a real server: every connection closes within the
timeouts, the process stays small, and other requests are answered meanwhile.

SLOW_CLIENTS (default 200) sets how many of each kind of slow client the test opens; the
issue's figure is 200 of each. bench/slow_clients.py times the cheap query beside them.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bench.slow_clients import CHEAP, Closed, dribble_head, rss_bytes, stall_body, until_closed
from tests.support.databases import TEST_API_KEY
from tests.support.servers import running_server
from web.timeouts import EdgeProtocol, edge_protocol

SLOW_CLIENTS = int(os.environ.get("SLOW_CLIENTS", "200"))
HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT = 2.0, 3.0, 2.0
# A timer never fires early; a loaded 2-core machine may run it late, and the clients' own
# clocks start a little before the server's. So: no earlier than the timeout, and not much later.
EARLY, LATE = 0.2, 10.0
MiB = 2**20
AUTHORIZATION = f"authorization: Bearer {TEST_API_KEY}\r\n".encode()


pytestmark = pytest.mark.sqlite_only  # the edge does not depend on the database


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


# -- The protocol alone, on a transport that keeps what the server writes ------------------------


class Wire(asyncio.Transport):
    """The server's end of a connection: what it writes, and whether it closed it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.wrote = asyncio.Event()
        self.closed = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self.wrote.set()

    def close(self) -> None:
        self.closed.set()

    def is_closing(self) -> bool:
        return self.closed.is_set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    async def answers(self, count: int) -> list[bytes]:
        """The status lines of the first `count` answers, once they are all written."""
        async with asyncio.timeout(10):
            while self.written.count(b"HTTP/1.1 ") < count:
                self.wrote.clear()
                await self.wrote.wait()
        return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", self.written)


async def answer_at_once(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers without reading the body, as the key check does (401)."""
    assert scope["type"] == "http"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": b"no"})


async def connect(header_timeout: float = 10, max_head_bytes: int = 2048) -> tuple[Any, Wire]:
    config = uvicorn.Config(
        answer_at_once,
        log_config=None,
        lifespan="off",
        proxy_headers=False,
        timeout_keep_alive=5,
    )
    protocol = edge_protocol(header_timeout, max_head_bytes)(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    wire = Wire()
    protocol.connection_made(wire)
    return protocol, wire


HEAD = b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-length: 40\r\n\r\n"


def test_the_edge_protocol_reads_with_httptools() -> None:
    assert issubclass(EdgeProtocol, HttpToolsProtocol)


@pytest.mark.parametrize("read", [1, 100, 10_000], ids=["byte by byte", "100 a read", "one read"])
async def test_an_unfinished_head_past_the_bound_gets_400_however_it_arrives(read: int) -> None:
    protocol, wire = await connect(max_head_bytes=2048)
    data = b"GET /graphql HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 4096
    for start in range(0, len(data), read):
        if wire.is_closing():
            break
        protocol.data_received(data[start : start + read])
    assert await wire.answers(1) == [b"HTTP/1.1 400 Bad Request"]
    assert b"The request line and headers are too large." in wire.written
    assert wire.is_closing()


async def test_heads_within_the_bound_are_read_across_reads_and_pipelined() -> None:
    protocol, wire = await connect(max_head_bytes=2048)
    padded = b"GET /graphql HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 1900 + b"\r\n\r\n"
    for start in range(0, len(padded), 7):  # each request's head within the bound, in pieces
        protocol.data_received(padded[start : start + 7])
    assert await wire.answers(1) == [b"HTTP/1.1 401 Unauthorized"]
    # Two requests in one read, then a third whose head ends in a read of its own: the bytes
    # of the heads before it do not count against it.
    protocol.data_received(padded + padded + padded[:1000])
    protocol.data_received(padded[1000:])
    assert len(await wire.answers(4)) == 4
    assert not wire.is_closing()


async def test_a_head_not_complete_in_time_is_closed_without_a_word() -> None:
    protocol, wire = await connect(header_timeout=0.05)
    protocol.data_received(HEAD[:10])
    async with asyncio.timeout(10):  # the deadline, not this, closes it
        await wire.closed.wait()
    assert wire.written == b""


async def test_blank_lines_between_requests_do_not_hold_the_connection() -> None:
    protocol, wire = await connect(header_timeout=0.05)
    protocol.data_received(HEAD + b"x" * 40)
    assert await wire.answers(1) == [b"HTTP/1.1 401 Unauthorized"]
    protocol.data_received(b"\r\n")  # stops the idle timer; begins no request
    async with asyncio.timeout(10):  # the head deadline, not this, closes it
        await wire.closed.wait()


async def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline() -> None:
    _protocol, wire = await connect(header_timeout=0.05)
    async with asyncio.timeout(10):
        await wire.closed.wait()
    assert wire.written == b""


async def test_the_body_of_a_request_answered_early_does_not_keep_the_connection() -> None:
    protocol, wire = await connect()
    protocol.data_received(HEAD + b"x" * 10)
    assert await wire.answers(1) == [b"HTTP/1.1 401 Unauthorized"]
    idle = protocol.timeout_keep_alive_task
    assert idle is not None
    for _ in range(20):  # the rest of the body, a byte now and then: the idle timer runs on
        protocol.data_received(b"x")
    assert protocol.timeout_keep_alive_task is idle
    assert not idle.cancelled()
    # The body ends and a next request begins: it is answered, and the connection is no
    # longer idle while it is.
    protocol.data_received(b"x" * 10 + HEAD[:20])
    assert idle.cancelled()
    protocol.data_received(HEAD[20:] + b"x" * 40)
    assert await wire.answers(2) == [b"HTTP/1.1 401 Unauthorized"] * 2
    assert not wire.is_closing()
