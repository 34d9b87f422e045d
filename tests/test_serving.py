"""The serving stack: uvloop and orjson in use, and WORKERS processes on one port."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families
from uvicorn.importer import import_from_string

from db.engine import Database
from db.models import utc_now
from schema import schema
from server import WORKER_PROTOCOL, Settings, parser
from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import operation
from tests.support.servers import running_server
from web.app import app_state
from web.view import GraphQLView

AUTH = {"authorization": f"Bearer {TEST_API_KEY}"}
METRICS_TOKEN = "metrics-token-for-tests-0123456789"


def test_responses_are_encoded_with_orjson() -> None:
    db = Database("sqlite+aiosqlite:///:memory:")
    state = asyncio.run(app_state(db, Settings(cursor_secret="k" * 32), utc_now))
    view = GraphQLView(schema, state, body_timeout=5)
    data = {"data": {"customer": {"id": "Q3VzdG9tZXI6MQ", "name": "Zoë"}}}
    assert view.encode_json(data) == orjson.dumps(data)


def test_the_server_runs_on_uvloop_with_the_edge_protocol_on_httptools(database_url: str) -> None:
    """uvloop, and web/timeouts.py's protocol (its deadlines and head bound) on httptools."""
    with running_server(database_url) as server:
        response = httpx.post(
            server.url + "/graphql", json={"query": operation("customers")}, headers=AUTH
        )
        assert response.status_code == 200
    log = "".join(server.log)
    assert "serving with the uvloop event loop and orjson" in log
    assert "HTTP protocol EdgeProtocol (httptools)" in log


def test_workers_serve_with_the_edge_protocol_on_httptools() -> None:
    """WORKERS > 1 names the protocol by its import path (uvicorn's supervisor logs nothing
    of it): that path is the edge protocol, on httptools."""
    assert parser(import_from_string(WORKER_PROTOCOL)) == "httptools"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.ConnectError:  # bound, but no worker listens yet
        return False


def test_several_workers_serve_one_port_and_add_up_their_metrics(database_url: str) -> None:
    settings = {"WORKERS": "2", "METRICS_TOKEN": METRICS_TOKEN, "PORT": str(free_port())}
    with (
        running_server(database_url, None, **settings) as server,
        httpx.Client(base_url=server.url, headers=AUTH) as client,
    ):
        deadline = time.monotonic() + 120  # each worker imports the app afresh
        while not ready(client):  # the workers are still starting
            assert time.monotonic() < deadline
        for _ in range(20):
            # A new connection each time, so both workers get some.
            response = httpx.post(
                server.url + "/graphql",
                json={"query": operation("customers")},
                headers={**AUTH, "connection": "close"},
            )
            assert response.status_code == 200
        scraped = client.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}).text
    served = [
        sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "graphql_requests_total" and sample.labels["operation"] == "Customers"
    ]
    assert sum(served) == 20  # counted in two processes, added up
    log = "".join(server.log)
    assert "with 2 workers" in log
    assert log.count("Application startup complete.") == 2
