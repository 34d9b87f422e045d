"""Stopping: SIGTERM (or SIGINT) lets the requests in flight finish, refuses new connections,
closes the pools and exits 0, with no traceback."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url

from tests.conftest import operation
from tests.databases import TEST_API_KEY, Databases
from tests.servers import running_server

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
