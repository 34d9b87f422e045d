"""A sick database, end to end: PostgreSQL behind a proxy on 127.0.0.1 that the test cuts or
black-holes, under a real server process. Every request answers within 5 s with an error id
and SERVICE_UNAVAILABLE; /readyz follows the database; the server recovers by itself and
stops on SIGTERM within the grace time plus 5 s, exit code 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, make_url, select

from db import events
from db.driver import DriverStatement
from db.engine import Database, Timeouts
from db.faults import Fault
from db.feed import FeedSignal
from tests.support.databases import TEST_API_KEY, Databases
from tests.support.graphql_client import operation
from tests.support.pg_locks import dsn_of
from tests.support.proxy import Proxy, proxy_to
from tests.support.servers import Server, running_server

BOUND = 5.0  # seconds: what a client may wait for any answer while the database is sick
HEADERS = {
    "authorization": f"Bearer {TEST_API_KEY}",
    "accept": "application/graphql-response+json",
}


@pytest.fixture
def postgres_url(databases: Databases) -> Iterator[str]:
    url = databases.url_for("postgresql")
    yield url
    databases.drop(url)


@pytest.fixture
def proxied_postgres(postgres_url: str) -> Iterator[tuple[str, Proxy]]:
    """The test's database through a proxy: its URL, and the proxy."""
    target = make_url(postgres_url)
    with proxy_to(target.host or "127.0.0.1", target.port or 5432) as proxy:
        yield target.set(port=proxy.port).render_as_string(hide_password=False), proxy


def timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    began = time.monotonic()
    response = call()
    return time.monotonic() - began, response


def wait_for(condition: Callable[[], bool], within: float) -> float:
    """Poll `condition` until it holds; returns how long it took (fails after `within` s)."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < within, f"not within {within} s"
    return time.monotonic() - began


def status(server: Server, path: str) -> int:
    try:
        return httpx.get(server.url + path, timeout=BOUND + 1).status_code
    except httpx.HTTPError:
        return 0


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert error["extensions"]["errorId"] in error["message"]
    assert "unavailable" in error["message"]


def create(client: httpx.Client, n: int) -> httpx.Response:
    variables = {"input": {"externalCustomerId": f"c-{n}", "data": {"email": f"c{n}@example.com"}}}
    return client.post(
        "/graphql", json={"query": operation("create_customer"), "variables": variables}
    )


def created(response: httpx.Response) -> bool:
    return (
        response.status_code == 200
        and response.json()["data"]["createCustomer"]["userErrors"] == []
    )


def requests_while_sick(server: Server, count: int) -> list[tuple[float, httpx.Response]]:
    body: dict[str, Any] = {"query": operation("customers")}
    with (
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as client,
        ThreadPoolExecutor(count) as pool,
    ):
        calls = [lambda: client.post("/graphql", json=body) for _ in range(count)]
        return list(pool.map(timed, calls))


@pytest.mark.parametrize("sickness", ["cut", "black_hole"])
def test_a_sick_database_answers_503_within_5_s_and_recovers(
    proxied_postgres: tuple[str, Proxy], sickness: str
) -> None:
    url, proxy = proxied_postgres
    with running_server(url) as server, httpx.Client(base_url=server.url, headers=HEADERS) as ok:
        assert ok.post("/graphql", json={"query": operation("customers")}).status_code == 200
        getattr(proxy, sickness)()
        went = time.monotonic()
        answers = requests_while_sick(server, 30)
        for seconds, response in answers:
            assert seconds < BOUND
            assert_unavailable(response)
        # Later ones fail in the key check, once the key's cached principal has expired:
        # a JSON error with an id all the same.
        wait_for(lambda: status(server, "/readyz") == 503, BOUND - (time.monotonic() - went))
        assert httpx.get(server.url + "/readyz").json()["status"] == "unavailable"
        assert status(server, "/healthz") == 200  # the process itself is fine

        proxy.restore()
        wait_for(lambda: status(server, "/readyz") == 200, BOUND)
        body = {"query": operation("customers")}
        wait_for(lambda: ok.post("/graphql", json=body).status_code == 200, BOUND)
    logged = "".join(server.log)
    assert "database unavailable" in logged
    assert logged.count("Traceback") == 0  # frames only, and once per cause a minute


def test_sigterm_while_the_database_is_black_holed_exits_0_in_time(
    proxied_postgres: tuple[str, Proxy],
) -> None:
    url, proxy = proxied_postgres
    grace = 3.0
    with running_server(url, SHUTDOWN_GRACE_SECONDS=str(grace)) as server:
        with httpx.Client(base_url=server.url, headers=HEADERS) as client:
            assert client.post("/graphql", json={"query": operation("customers")}).is_success
        proxy.black_hole()
        with ThreadPoolExecutor(5) as pool:  # requests in flight on the hung database
            pending = [
                pool.submit(
                    lambda: httpx.post(
                        server.url + "/graphql",
                        json={"query": operation("customers")},
                        headers=HEADERS,
                        timeout=60,
                    )
                )
                for _ in range(5)
            ]
            began = time.monotonic()
            assert server.stop(timeout=grace + BOUND) == 0
            assert time.monotonic() - began < grace + BOUND
            for future in pending:
                # An answer (503, the database being sick), or cut off at the end of the grace
                # time: both allowed; a bare 500 is not.
                with contextlib.suppress(httpx.HTTPError):
                    assert future.result().status_code in (503, 200)


# -- one server cut off inside its commit window ----------------------------------------------
# Every write takes the event counter's row lock (db/events.py) and holds it until it commits.
# A server that falls silent right after taking it must not stop the other servers' writes:
# PostgreSQL ends a transaction idle for Timeouts.idle_in_transaction seconds, releasing the
# lock, and the writes queued behind it go through.

COUNTER_UPDATE = b"UPDATE event_counter SET last"  # in the statement's text (its Parse)
# In the reply: the statement (a SELECT of the counter's new number from its UPDATE, which
# notifies too: db/events.py) ran, and the lock is taken.
UPDATED_ONE_ROW = b"SELECT 1\x00"
HELD_AT_MOST = Timeouts.idle_in_transaction + 1.5  # the bound, and a busy machine's margin


def test_a_server_frozen_inside_its_commit_window_holds_other_servers_writes_briefly(
    postgres_url: str, proxied_postgres: tuple[str, Proxy]
) -> None:
    proxied_url, proxy = proxied_postgres
    with (
        running_server(proxied_url) as frozen,
        running_server(postgres_url) as other,
        httpx.Client(base_url=frozen.url, headers=HEADERS, timeout=60) as to_frozen,
        httpx.Client(base_url=other.url, headers=HEADERS, timeout=60) as to_other,
        ThreadPoolExecutor(1) as pool,
    ):
        sprung = proxy.freeze_after(COUNTER_UPDATE, UPDATED_ONE_ROW)
        stuck = pool.submit(create, to_frozen, 0)
        assert sprung.wait(BOUND), "the frozen server's write never took the counter"
        for n in range(1, 13):
            seconds, response = timed(lambda n=n: create(to_other, n))  # type: ignore[misc]
            assert created(response), response.text
            assert seconds < HELD_AT_MOST
        # Its own write ran into its timeout, and was answered so: never run again.
        assert stuck.result().status_code == 503


def test_a_write_that_waits_too_long_on_a_lock_says_so(postgres_url: str) -> None:
    async def hold_the_counter(holding: threading.Event, done: threading.Event) -> None:
        holder = await asyncpg.connect(dsn_of(postgres_url))
        try:
            async with holder.transaction():
                await holder.execute("UPDATE event_counter SET last = last WHERE id = 1")
                holding.set()
                await asyncio.to_thread(done.wait)  # held, and busy: not idle in transaction
        finally:
            await holder.close()

    holding, done = threading.Event(), threading.Event()
    with (
        running_server(postgres_url) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        held = pool.submit(asyncio.run, hold_the_counter(holding, done))
        try:
            assert holding.wait(BOUND)
            seconds, response = timed(lambda: create(client, 1))
        finally:
            done.set()
        held.result()
        assert seconds < BOUND
        assert response.status_code == 503, response.text
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert error["message"].startswith(Fault.LOCK_TIMEOUT.value)
        assert created(create(client, 1))  # and once the lock is free, it goes through


# -- the first write after PostgreSQL comes back ----------------------------------------------


def backends(postgres_url: str) -> int:
    """The connections open to the test's database, the test's own query's included."""

    async def count() -> int:
        connection = await asyncpg.connect(dsn_of(postgres_url))
        try:
            name = make_url(postgres_url).database
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
            return int(await connection.fetchval(query, name))
        finally:
            await connection.close()

    return asyncio.run(count())


def test_the_first_write_after_the_database_comes_back_succeeds(
    postgres_url: str, proxied_postgres: tuple[str, Proxy]
) -> None:
    proxied_url, proxy = proxied_postgres
    with (
        running_server(
            proxied_url, KYC_SWEEP_INTERVAL_SECONDS="3600", WEBHOOK_WORKER="false"
        ) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        # Several pooled connections, all of which the cut kills: the fallback to graphql-core
        # after a failed checkout meets a second dead one.
        batches = iter(range(0, 1000, 8))

        def pooled_several() -> bool:
            first = next(batches)
            assert all(
                created(r) for r in pool.map(lambda n: create(client, n), range(first, first + 8))
            )
            return backends(postgres_url) >= 5  # the test's own, the readers', the pool's

        wait_for(pooled_several, BOUND * 4)
        proxy.cut()
        proxy.restore()
        response = create(client, 1000)
        assert created(response), response.text


# -- the event listener after a half-open connection, or an outage ------------------------------

FALLBACK = 3.0  # the listener's check of its connection, every so many seconds
# Its check times out (the connect timeout), it reconnects (as long again), and reads the head.
RECOVERED_WITHIN = FALLBACK + 3 * Timeouts.connect + 1.0


async def advance_the_feed(postgres_url: str) -> int:
    """What a write does to the feed's counter, and its NOTIFY, on a connection of its own."""
    connection = await asyncpg.connect(dsn_of(postgres_url))
    try:
        async with connection.transaction():
            last = await connection.fetchval(
                "UPDATE event_counter SET last = last + 1 WHERE id = 1 RETURNING last"
            )
            await connection.execute("SELECT pg_notify($1, $2)", events.CHANNEL, str(last))
        return int(last)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def listening(url: str) -> AsyncIterator[FeedSignal]:
    db = Database(url, timeouts=Timeouts())
    feed = FeedSignal(db, fallback_seconds=FALLBACK)
    try:
        yield feed
    finally:
        await feed.close()
        await db.dispose()


async def test_a_half_open_listener_connection_recovers(
    postgres_url: str, proxied_postgres: tuple[str, Proxy]
) -> None:
    proxied_url, proxy = proxied_postgres
    async with listening(proxied_url) as feed:
        first = await advance_the_feed(postgres_url)
        assert await feed.wait_beyond(first - 1, BOUND) == first  # listening
        proxy.freeze()  # its connection falls silent and stays open, as behind a dead route
        second = await advance_the_feed(postgres_url)
        assert await feed.wait_beyond(first, RECOVERED_WITHIN) == second
        # Listening again: the next event is told at once, not at the next check.
        third = await advance_the_feed(postgres_url)
        assert await feed.wait_beyond(second, FALLBACK / 3) == third


async def test_the_listener_backs_off_and_warns_once_per_outage(
    postgres_url: str, proxied_postgres: tuple[str, Proxy], caplog: pytest.LogCaptureFixture
) -> None:
    proxied_url, proxy = proxied_postgres
    async with listening(proxied_url) as feed:
        first = await advance_the_feed(postgres_url)
        assert await feed.wait_beyond(first - 1, BOUND) == first
        with caplog.at_level(logging.WARNING, logger="customer_api.feed"):
            refused = proxy.accepted
            proxy.cut()
            async with asyncio.timeout(BOUND):
                while True:  # until four attempts to reconnect were refused
                    if proxy.accepted >= refused + 4:
                        break
                    await asyncio.sleep(0.01)  # polls a condition, bounded by the timeout
            proxy.restore()
            second = await advance_the_feed(postgres_url)
            assert await feed.wait_beyond(first, RECOVERED_WITHIN) == second
    messages = [r.getMessage() for r in caplog.records if r.name == "customer_api.feed"]
    assert len(messages) == 2, messages
    assert "lost its connection" in messages[0]
    assert "connected again" in messages[1]


# -- what every connection carries --------------------------------------------------------------

SESSION_SETTINGS = (
    "idle_in_transaction_session_timeout",
    "lock_timeout",
    "tcp_keepalives_idle",
    "tcp_keepalives_interval",
    "tcp_keepalives_count",
    "tcp_user_timeout",
)
EXPECTED = ["2s", "2s", "5", "2", "3", "10000"]  # as current_setting() prints them


async def test_the_pool_and_the_compiled_readers_end_a_dead_clients_session(
    postgres_url: str,
) -> None:
    db = Database(postgres_url, timeouts=Timeouts())
    settings = select(*(func.current_setting(name).label(name) for name in SESSION_SETTINGS))
    try:
        async with db.write() as session:
            assert list((await session.execute(settings)).one()) == EXPECTED
        statement = DriverStatement.compile(settings, db.engine.dialect)
        [read] = await db.fetch(statement, {})
        assert list(read) == EXPECTED
    finally:
        await db.dispose()
