"""Subscriptions and a sick database, end to end: PostgreSQL behind a proxy the test cuts,
under a real server process. A cut shorter than SUBSCRIPTION_OUTAGE_SECONDS leaves a live
subscription receiving the next events, none lost; a longer one closes its socket with 1013,
which graphql-ws clients reconnect on; a connection_init while the database is down is
closed with 1013 too. None of it, nor a SIGTERM with subscribers connected, logs a
traceback."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from schema.events import IDLE_SECONDS
from tests.support.databases import TEST_API_KEY, Databases
from tests.support.graphql_client import operation
from tests.support.node_tools import NODE_ENV
from tests.support.paths import ROOT
from tests.support.proxy import Proxy
from tests.support.servers import Server, running_server
from tests.support.sockets import Socket, socket
from tests.test_faults import proxied_postgres  # noqa: F401 - a fixture

SUBSCRIPTION = operation("on_customer_events")
HEADERS = {"authorization": f"Bearer {TEST_API_KEY}"}
# Longer than a subscription's idle wait: it reads the database at least once during the cut.
CUT_SECONDS = IDLE_SECONDS + 1


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/graphql"


async def create(http: httpx.AsyncClient, external_id: str, within: float = 30) -> None:
    """Create a customer, trying again while the server still answers that the database is
    unavailable (bounded)."""
    data = {"email": f"{external_id}@example.com"}
    variables = {"input": {"externalCustomerId": external_id, "data": data}}
    body = {"query": operation("create_customer"), "variables": variables}
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(httpx.HTTPError):
            answer = (await http.post("/graphql", json=body)).json()
            if answer.get("data") and answer["data"]["createCustomer"]:
                assert answer["data"]["createCustomer"]["userErrors"] == []
                return
        assert time.monotonic() < deadline, f"no write succeeded within {within} s"


async def events(ws: Socket, count: int) -> list[str]:
    """The external ids of the next `count` events; any other message fails the test."""
    found: list[str] = []
    while len(found) < count:
        message = await ws.receive(within=30)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        found.append(message["payload"]["data"]["customerEvents"]["externalCustomerId"])
    return found


@contextlib.asynccontextmanager
async def subscribed(server: Server) -> AsyncIterator[tuple[Socket, httpx.AsyncClient]]:
    """A live subscription on the server (one event seen), and an HTTP client to write."""
    async with (
        httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=30) as http,
        socket(ws_url(server)) as ws,
    ):
        assert (await ws.init(TEST_API_KEY))["type"] == "connection_ack"
        end = await http.post("/graphql", json={"query": operation("customer_events")})
        after = end.json()["data"]["customerEvents"]["pageInfo"]["endCursor"]
        await ws.subscribe("feed", SUBSCRIPTION, {"after": after})
        await create(http, "before-the-cut")
        assert await events(ws, 1) == ["before-the-cut"]
        yield ws, http


def quiet(server: Server) -> None:
    """The server's log has no traceback (a failure's frames are fine: they are not one)."""
    log = "".join(server.log)
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    assert "Exception in worker task" not in log


async def test_a_subscription_rides_out_a_short_cut_and_misses_nothing(
    proxied_postgres: tuple[str, Proxy],  # noqa: F811
) -> None:
    url, proxy = proxied_postgres
    with running_server(url) as server:
        async with subscribed(server) as (ws, http):
            proxy.cut()
            await asyncio.sleep(CUT_SECONDS)  # the outage itself, not a wait for something
            proxy.restore()
            for n in range(3):
                await create(http, f"after-the-cut-{n}")
            assert await events(ws, 3) == [f"after-the-cut-{n}" for n in range(3)]
        assert server.stop() == 0
    quiet(server)


async def test_a_cut_longer_than_the_bound_closes_the_socket_with_1013(
    proxied_postgres: tuple[str, Proxy],  # noqa: F811
) -> None:
    url, proxy = proxied_postgres
    with running_server(url, SUBSCRIPTION_OUTAGE_SECONDS="1") as server:
        async with subscribed(server) as (ws, _http), socket(ws_url(server)) as late:
            assert (await late.init(TEST_API_KEY))["type"] == "connection_ack"
            proxy.cut()
            await late.subscribe("late", SUBSCRIPTION)  # it cannot start: the same close
            # It reads within IDLE_SECONDS, retries for a second, each try within 5 s.
            closed = [await ws.closed(within=IDLE_SECONDS + 1 + 5 + 10), await late.closed()]
            proxy.restore()
            assert closed == [(1013, "Try again later: the database is unavailable")] * 2
        assert server.stop() == 0
    quiet(server)


async def test_connection_init_while_the_database_is_down_closes_with_1013(
    proxied_postgres: tuple[str, Proxy],  # noqa: F811
) -> None:
    url, proxy = proxied_postgres
    with running_server(url) as server:
        proxy.cut()
        async with socket(ws_url(server)) as ws:
            await ws.send({"type": "connection_init", "payload": {"Authorization": HEADERS[
                "authorization"]}})  # fmt: skip
            assert await ws.closed(within=15) == (
                1013,
                "Try again later: the database is unavailable",
            )
        proxy.restore()
        deadline = time.monotonic() + 30
        while True:  # the server recovers by itself: a later connection_init is acknowledged
            async with socket(ws_url(server)) as ws:
                with contextlib.suppress(Exception):
                    if (await ws.init(TEST_API_KEY))["type"] == "connection_ack":
                        break
            assert time.monotonic() < deadline, "not acknowledged after the database came back"
        assert server.stop() == 0
    quiet(server)


@pytest.fixture
def postgres_url(databases: Databases) -> Iterator[str]:
    url = databases.url_for("postgresql")
    yield url
    databases.drop(url)


async def test_sigterm_with_subscribers_receiving_events_logs_no_error(postgres_url: str) -> None:
    """Subscribers on one server while another writes: the stop that follows logs nothing
    of the subscriptions it ends (3 times)."""
    with running_server(postgres_url) as writer:
        async with httpx.AsyncClient(base_url=writer.url, headers=HEADERS, timeout=30) as http:
            stop = asyncio.Event()

            async def write() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    await create(http, f"busy-{n}")

            writing = asyncio.create_task(write())
            try:
                for _ in range(3):
                    await stop_with_subscribers(postgres_url)
            finally:
                stop.set()
                await writing


async def stop_with_subscribers(url: str) -> None:
    with running_server(url) as server:
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(socket(ws_url(server))) for _ in range(3)]
            for ws in sockets:
                assert (await ws.init(TEST_API_KEY))["type"] == "connection_ack"
                for id in range(5):
                    await ws.subscribe(str(id), SUBSCRIPTION)
            await events_arriving(sockets[0])
            assert await asyncio.to_thread(server.stop) == 0
    quiet(server)


async def events_arriving(ws: Socket) -> Any:
    """The first event on this socket: the subscriptions are live and events flow."""
    message = await ws.receive(within=30)
    assert message["type"] == "next", message
    return message


class Follower:
    """tests/node/follow.mjs (the documented client) running, its lines read as they come."""

    def __init__(self, node: str, url: str, after: str, count: int) -> None:
        script = str(ROOT / "tests" / "node" / "follow.mjs")
        self.process = subprocess.Popen(
            [node, script, url, TEST_API_KEY, after, str(count)],
            cwd=ROOT,
            env=NODE_ENV,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout or ():
            self.lines.put(line.strip())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.reader.join()
        if self.process.stdout is not None:
            self.process.stdout.close()

    async def next_line(self, within: float = 30) -> str:
        line = await asyncio.to_thread(self.lines.get, timeout=within)
        self.seen.append(line)
        return line


async def test_the_documented_client_resumes_after_a_1013_and_misses_nothing(
    proxied_postgres: tuple[str, Proxy],  # noqa: F811
    node: str,
) -> None:
    url, proxy = proxied_postgres
    with running_server(url, SUBSCRIPTION_OUTAGE_SECONDS="1") as server:
        async with httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=30) as http:
            await create(http, "zero")  # the client starts after it, whenever it connects
            end = await http.post("/graphql", json={"query": operation("customer_events")})
            after = end.json()["data"]["customerEvents"]["pageInfo"]["endCursor"]
            follower = Follower(node, ws_url(server), after, 3)
            try:
                await create(http, "first")
                assert await follower.next_line() == "event first"
                proxy.cut()
                assert await follower.next_line() == "closed 1013"
                proxy.restore()
                await create(http, "second")
                await create(http, "third")
                while len([line for line in follower.seen if line.startswith("event")]) < 3:
                    await follower.next_line()
                assert await asyncio.to_thread(follower.process.wait, 30) == 0
            finally:
                follower.close()
        assert server.stop() == 0
    events_seen = [line for line in follower.seen if line.startswith("event")]
    assert events_seen == ["event first", "event second", "event third"], follower.seen
