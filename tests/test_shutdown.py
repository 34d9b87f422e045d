"""Stopping: SIGTERM (or SIGINT) lets the requests in flight finish, refuses new connections,
closes the pools and exits 0, with no traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Literal

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url, text

import web.app
from db.engine import Database, Timeouts
from db.feed import FeedSignal
from db.models import utc_now
from db.tasks import cancel_and_wait
from server import STOP_SECONDS, Settings, create_app
from tests.support.databases import TEST_API_KEY, Databases
from tests.support.graphql_client import operation
from tests.support.servers import running_server
from web.app import app_state
from web.webhooks import DeliveryWorker

METRICS_TOKEN = "metrics-token-for-tests-0123456789"
IN_FLIGHT = 20


def in_progress(url: str) -> float:
    response = httpx.get(url + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    for family in text_string_to_metric_families(response.text):
        if family.name == "http_requests_in_progress":
            return float(family.samples[0].value)
    return 0.0


def refuses_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def sqlite_url(databases: Databases) -> str:
    return databases.url_for("sqlite")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_requests_in_flight_finish_and_the_exit_is_0(sqlite_url: str, sig: signal.Signals) -> None:
    # The test holds SQLite's write lock, so every create waits inside the server for it.
    holder = sqlite3.connect(make_url(sqlite_url).database or "", isolation_level=None)
    settings = {"METRICS_TOKEN": METRICS_TOKEN, "DB_POOL_SIZE": str(IN_FLIGHT + 5)}
    with (
        running_server(sqlite_url, None, **settings) as server,
        ThreadPoolExecutor(IN_FLIGHT) as pool,
    ):
        holder.execute("BEGIN IMMEDIATE")

        def create(n: int) -> httpx.Response:
            data = {"email": f"slow{n}@example.com"}
            variables = {"input": {"externalCustomerId": f"slow-{n}", "data": data}}
            body = {"query": operation("create_customer"), "variables": variables}
            headers = {"authorization": f"Bearer {TEST_API_KEY}"}
            return httpx.post(server.url + "/graphql", json=body, headers=headers, timeout=60)

        pending = [pool.submit(create, n) for n in range(IN_FLIGHT)]
        deadline = time.monotonic() + 30
        while in_progress(server.url) < IN_FLIGHT + 1:  # the scrape itself is one more
            assert time.monotonic() < deadline, "the requests never were all in flight"
        assert server.process is not None
        server.process.send_signal(sig)
        server.stopped = True
        deadline = time.monotonic() + 10
        while not refuses_connections(server.url):
            assert time.monotonic() < deadline, "still accepting connections"
        assert not any(p.done() for p in pending)
        holder.execute("COMMIT")  # now the creates can finish
        responses = [p.result() for p in pending]
        assert server.process.wait(timeout=30) == 0
    holder.close()
    assert [r.status_code for r in responses] == [200] * IN_FLIGHT
    assert all(r.json()["data"]["createCustomer"]["userErrors"] == [] for r in responses)
    log = "".join(server.log)
    assert "Traceback" not in log
    assert "KeyboardInterrupt" not in log


# -- background work stops when it is cancelled, whenever that comes --------------------------
# Python 3.11's asyncio.wait_for returns the awaited result, and drops the cancellation, when
# the cancellation comes as that result does (CPython gh-86296): a loop around it went on
# after a stop had cancelled it. These tests make the cancellation come at exactly that moment.


@pytest.fixture
def postgres_url(databases: Databases) -> Iterator[str]:
    url = databases.url_for("postgresql")
    yield url
    databases.drop(url)


async def test_a_checkout_cancelled_as_its_pre_ping_answers_is_cancelled(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres_url, timeouts=Timeouts())
    try:
        async with db.read() as session:  # a pooled connection: the next checkout pings it
            await session.execute(text("SELECT 1"))
        victim: asyncio.Task[None] | None = None
        answer = asyncpg.Connection.fetchrow

        async def fetchrow(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
            row = await answer(self, query, *args, **kw)
            if query == ";" and victim is not None:  # the pre-ping's answer is here: stop now
                victim.cancel()
            return row

        monkeypatch.setattr(asyncpg.Connection, "fetchrow", fetchrow)
        ran: list[int] = []

        async def read() -> None:  # one sweep's worth of work
            async with db.read() as session:
                ran.append((await session.execute(text("SELECT 1"))).scalar_one())

        victim = asyncio.create_task(read())
        await asyncio.wait([victim])
        assert victim.cancelled(), "the cancellation was lost: the work went on"
        assert ran == []
    finally:
        await db.dispose()


class Parked(asyncio.Event):
    """The feed's event, saying when someone waits on it."""

    def __init__(self, parked: asyncio.Event) -> None:
        super().__init__()
        self.parked = parked

    async def wait(self) -> Literal[True]:
        self.parked.set()
        return await super().wait()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_webhook_worker_cancelled_as_news_arrives_stops(database_url: str) -> None:
    db = Database(database_url, timeouts=Timeouts())
    feed = FeedSignal(db, poll_seconds=60, fallback_seconds=60)
    parked = asyncio.Event()
    feed._changed = Parked(parked)
    settings = Settings(cursor_secret="k" * 32, webhook_retry_schedule="1")
    state = replace(await app_state(db, settings, utc_now), feed=feed)
    worker = DeliveryWorker(state)
    task = asyncio.create_task(worker.run())
    try:
        await parked.wait()  # the worker waits for news
        feed._advance(feed.latest + 1)  # news arrives...
        task.cancel()  # ...as the server stops
        done, _ = await asyncio.wait([task], timeout=STOP_SECONDS)
        assert task in done, "the worker went on after it was cancelled"
        assert task.cancelled()
    finally:
        while not task.done():  # a lost cancellation: end it for the next test
            task.cancel()
            await asyncio.wait([task], timeout=1)
        await feed.close()
        await db.dispose()


async def test_a_stop_that_is_itself_cancelled_is_cancelled() -> None:
    started, cleaning, cleaned = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            cleaning.set()
            await cleaned.wait()  # its clean-up takes a while

    task = asyncio.create_task(slow_to_stop())
    await started.wait()
    stop = asyncio.create_task(cancel_and_wait(task))
    await cleaning.wait()
    stop.cancel()  # the stop itself is given up on...
    cleaned.set()  # ...as the task ends
    await asyncio.wait([stop])
    assert task.cancelled()
    assert stop.cancelled(), "the stop's own cancellation was taken for the task's"


async def test_a_stop_is_bounded_and_terminates_the_connections_of_work_that_ignores_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    held: list[asyncpg.Connection] = []
    holding, release = asyncio.Event(), asyncio.Event()
    stubborn: list[asyncio.Task[Any]] = []

    async def sweep_ignoring_cancellation(db: Database, *_args: Any) -> None:
        stubborn.append(asyncio.current_task())  # type: ignore[arg-type]
        async with db.read() as session:
            raw = await (await session.connection()).get_raw_connection()
            held.append(raw.driver_connection)
            holding.set()
            while not release.is_set():  # a driver call that never ends, say
                with contextlib.suppress(asyncio.CancelledError):
                    await release.wait()

    monkeypatch.setattr(web.app, "sweep_forever", sweep_ignoring_cancellation)
    settings = Settings(
        database_url=postgres_url,
        migrate_on_start=False,
        kyc_sweep_interval_seconds=60,
        webhook_worker=False,
    )
    app = create_app(settings)
    try:
        with caplog.at_level(logging.WARNING, logger="customer_api"):
            async with LifespanManager(app, shutdown_timeout=10):
                await holding.wait()  # the sweep holds its connection
                stopping = time.monotonic()
            took = time.monotonic() - stopping
        # Within the harness's 5 s (asgi-lifespan's default; orchestrators' are alike).
        assert took < 4.0, f"the stop took {took:.1f} s"
        assert any("did not stop within" in r.getMessage() for r in caplog.records)
        # Its connection is terminated, not left open for the garbage collector.
        assert held[0].is_closed()
    finally:
        release.set()
        for task in stubborn:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


# -- SIGTERM answers the requests that have arrived, parsed or not ----------------------------


def raw_request(body: bytes) -> bytes:
    head = (
        "POST /graphql HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {TEST_API_KEY}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_answer(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection (b"" for a reset)."""
    sock.settimeout(30)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        return b""
    return answer


@pytest.mark.parametrize("run", range(10))
def test_sigterm_answers_every_request_that_has_arrived(sqlite_url: str, run: int) -> None:
    request = raw_request(json.dumps({"query": operation("customers")}).encode())
    with running_server(sqlite_url) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        connections = [socket.create_connection((host, int(port))) for _ in range(IN_FLIGHT)]
        try:
            for sock in connections:
                sock.sendall(request)  # returned: the request is in the server's socket buffer
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            server.stopped = True
            answers = [read_answer(sock) for sock in connections]
        finally:
            for sock in connections:
                sock.close()
        assert server.process.wait(timeout=30) == 0
    # Each answered once, and then closed by the server (the read ended): with `Connection:
    # close`, unless its answer was under way when the signal came (its head already sent).
    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [b"HTTP/1.1 200 OK"] * IN_FLIGHT
    assert all(answer.count(b"HTTP/1.1 ") == 1 for answer in answers)
