"""What an operator sees: health and readiness, metrics, request ids, the log's shape, errors
outside GraphQL, and the key cache (through the app over HTTP, on both backends)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from starlette.applications import Starlette

from db import keys
from db.engine import Database
from db.keys import Scope
from db.models import utc_now
from schema.errors import TracebackThrottle
from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import GraphQLClient
from web.auth import ApiKeys, Unauthenticated
from web.logs import PLAIN, JsonFormatter, LoopTurnHandler, PlainFormatter, RequestIdFilter
from web.requests import RequestInfo, current

METRICS_TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    return {"metrics_token": METRICS_TOKEN}


@pytest.fixture
async def anonymous(app: Starlette) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


# -- health ---------------------------------------------------------------------------------


async def test_healthz_and_readyz_need_no_key_and_say_little(anonymous: httpx.AsyncClient) -> None:
    health = await anonymous.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await anonymous.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert ready.headers["cache-control"] == "no-store"


async def test_readyz_is_503_with_a_reason_when_the_schema_is_behind(
    anonymous: httpx.AsyncClient, db: Database
) -> None:
    async with db.write() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "reason": "The database schema is not at the latest migration.",
    }
    assert not re.search(r"\d{4}", ready.text)  # no versions revealed


# -- metrics --------------------------------------------------------------------------------


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text (0 when it is absent)."""
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


async def scrape(anonymous: httpx.AsyncClient) -> str:
    response = await anonymous.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_need_the_token(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/metrics")).status_code == 401
    wrong = await anonymous.get("/metrics", headers={"authorization": f"Bearer {TEST_API_KEY}"})
    assert wrong.status_code == 401


@pytest.mark.parametrize("setting_overrides", [{}])
async def test_metrics_are_404_without_a_token_set(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/metrics", headers={"authorization": "Bearer anything"})
    assert response.status_code == 404


@pytest.mark.both_executors
async def test_metrics_count_requests_transitions_and_the_pool(
    anonymous: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    before = await scrape(anonymous)
    await gql.create("m-1")
    assert (await gql.create("m-1"))["userErrors"]  # TAKEN: a user error
    started = await gql.start_kyc("m-1")
    await gql.record_kyc(started["verification"]["id"], "UNDER_REVIEW")
    refused = await gql.post("{ nope }")
    assert refused.status_code == 200
    after = await scrape(anonymous)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    counted = "graphql_requests_total"
    assert grew(counted, operation="CreateCustomer", type="mutation", outcome="ok") == 1
    assert grew(counted, operation="CreateCustomer", type="mutation", outcome="user_error") == 1
    assert grew(counted, operation="anonymous", type="query", outcome="refused") == 1
    assert grew("kyc_transitions_total", from_status="none", to_status="PENDING") == 1
    assert grew("kyc_transitions_total", from_status="PENDING", to_status="UNDER_REVIEW") == 1
    assert grew("graphql_request_duration_seconds_count", type="mutation", outcome="ok") >= 2
    assert sample(after, "db_pool_connections_in_use") >= 0
    assert "db_pool_waiting " in after
    assert "kyc_expiry_sweep_runs_total" in after or "kyc_expiry_sweep_rows_total" in after
    assert "@example.com" not in after


# -- request ids and the log ------------------------------------------------------------------


@pytest.mark.both_executors
async def test_request_id_is_taken_when_sane_and_made_otherwise(
    gql: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="customer_api.access"):
        kept = await gql.http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"x-request-id": "abc-123.X"}
        )
        made = await gql.http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"x-request-id": "evil id\r; drop " + "x" * 80},
        )
    assert kept.headers["x-request-id"] == "abc-123.X"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    [first, second] = [r for r in caplog.records if r.name == "customer_api.access"]
    assert (first.operation_type, first.outcome, first.actor) == ("query", "ok", "key:tests")  # type: ignore[attr-defined]
    assert second.status == 200  # type: ignore[attr-defined]


def test_json_log_lines_carry_the_request_id_and_fields() -> None:
    record = logging.LogRecord(
        "customer_api.access", logging.INFO, "x", 1, "POST %s", ("/g",), None
    )
    record.status = 200
    record.operation = "Customers"
    token = current.set(RequestInfo("req-1"))
    try:
        RequestIdFilter().filter(record)
    finally:
        current.reset(token)
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["request_id"] == "req-1"
    assert (entry["message"], entry["status"], entry["operation"]) == ("POST /g", 200, "Customers")
    assert (entry["level"], entry["logger"]) == ("info", "customer_api.access")


def test_log_times_are_written_as_ever_second_by_second() -> None:
    """The formatters write each second's text once (web/logs.py: SecondsCache): every
    record's time is still what logging.Formatter, and strftime of the UTC time, write."""
    plain, json_form, reference = PlainFormatter(), JsonFormatter(), logging.Formatter(PLAIN)
    base = 1_780_000_000.0
    for created in (base + 0.001, base + 0.999, base + 1.0, base + 0.5, base + 86_400.25):
        record = logging.LogRecord("x", logging.INFO, "x", 1, "m", (), None)
        record.created, record.msecs, record.request_id = created, (created % 1) * 1000, "-"
        assert plain.format(record) == reference.format(record)
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        assert json.loads(json_form.format(record))["time"] == (
            f"{moment}.{int(record.msecs):03d}Z"
        )


class Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)


def _handler_and_logger() -> tuple[Writes, LoopTurnHandler, logging.Logger]:
    stream = Writes()
    handler = LoopTurnHandler(stream, deferred=frozenset({"turns"}))
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger("turns")  # not registered: no other handler sees it
    logger.addHandler(handler)
    return stream, handler, logger


async def test_a_turns_log_lines_are_written_at_its_end_in_one_write() -> None:
    stream, _, logger = _handler_and_logger()
    for n in range(3):
        logger.warning("line %d", n)
    assert stream.writes == []  # the turn is not over
    await asyncio.sleep(0)  # the next turn: the handler's call_soon has run
    assert stream.writes == ["line 0\nline 1\nline 2\n"]
    logger.warning("line 3")
    await asyncio.sleep(0)
    assert stream.writes[1:] == ["line 3\n"]


async def test_a_line_from_another_thread_is_written_at_once_after_those_waiting() -> None:
    stream, handler, logger = _handler_and_logger()
    logger.warning("from the loop")
    await asyncio.to_thread(logger.warning, "from a thread")
    assert "".join(stream.writes) == "from the loop\nfrom a thread\n"
    logger.warning("last")
    handler.flush()  # as logging.shutdown does at exit
    assert "".join(stream.writes).endswith("from a thread\nlast\n")


async def test_other_loggers_lines_are_written_at_once_after_those_waiting() -> None:
    stream, handler, logger = _handler_and_logger()
    logger.warning("an access line")  # waits for the turn's end
    other = logging.Logger("other")
    other.addHandler(handler)
    other.warning("Application shutdown complete.")
    assert stream.writes == ["an access line\nApplication shutdown complete.\n"]


def test_without_a_loop_lines_are_written_at_once() -> None:
    stream, _, logger = _handler_and_logger()
    logger.warning("now")
    assert stream.writes == ["now\n"]


def test_a_burst_of_one_failure_shows_its_traceback_once_a_minute_with_a_count() -> None:
    now = [0.0]
    throttle = TracebackThrottle(window=60, clock=lambda: now[0])
    cause = ("TimeoutError", "db.py", 10)
    assert throttle.admit(cause) == 0  # shown
    assert [throttle.admit(cause) for _ in range(2999)] == [None] * 2999
    assert throttle.admit(("KeyError", "x.py", 1)) == 0  # another cause has its own
    now[0] = 61
    assert throttle.admit(cause) == 2999  # shown again, with how many went unshown


# -- failures outside GraphQL -------------------------------------------------------------------


async def test_a_failure_in_the_key_check_is_json_with_an_error_id(
    anonymous: httpx.AsyncClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with db.write() as session:
        await session.execute(text("ALTER TABLE api_key RENAME TO api_key_gone"))
    caplog.handler.addFilter(RequestIdFilter())  # what the server's handler has
    with caplog.at_level(logging.ERROR, logger="customer_api.errors"):
        response = await anonymous.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"authorization": "Bearer cak_fresh-key", "x-request-id": "req-500"},
        )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    [error] = response.json()["errors"]
    error_id = error["extensions"]["errorId"]
    assert error == {
        "message": f"Internal server error (error id {error_id}).",
        "extensions": {"code": "INTERNAL_SERVER_ERROR", "errorId": error_id},
    }
    [logged] = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged.request_id == "req-500"  # type: ignore[attr-defined]
    assert "api_key" not in logged.getMessage().splitlines()[0]  # type, never the message


# -- the key cache and the last-used stamp ------------------------------------------------------


async def test_requests_that_find_a_key_expired_together_read_it_once(db: Database) -> None:
    """32 clients of one key found its entry expired at once, every cache_seconds, and each
    read the key: now the first read is shared by every request that waits meanwhile."""
    async with db.write() as session:
        key = await keys.create_key(session, "shared", [Scope.CUSTOMERS_READ], utc_now())
    read: list[str] = []
    api_keys = ApiKeys(db, utc_now, cache_seconds=5, monotonic=lambda: 0.0)
    db.statement_observers.append(lambda sql: read.append(sql) if "api_key" in sql else None)
    try:
        found = await asyncio.gather(*(api_keys.principal(key) for _ in range(20)))
        assert {principal.name for principal in found} == {"shared"}
        assert len([sql for sql in read if sql.lstrip().upper().startswith("SELECT")]) == 1
        assert api_keys.loading == {}  # the read is done with
        with pytest.raises(Unauthenticated):  # an unknown key: every waiter is told so
            await asyncio.gather(*(api_keys.principal("cak_unknown") for _ in range(3)))
    finally:
        db.statement_observers.pop()
        await api_keys.close()


async def test_a_cached_principal_lives_at_most_the_cache_time(db: Database) -> None:
    async with db.write() as session:
        key = await keys.create_key(session, "cached", [Scope.CUSTOMERS_READ], utc_now())
    now = [0.0]
    api_keys = ApiKeys(db, utc_now, cache_seconds=5, monotonic=lambda: now[0])
    assert (await api_keys.principal(key)).name == "cached"
    async with db.write() as session:
        await keys.revoke_key(session, "cached", utc_now())
    now[0] = 4.9
    assert (await api_keys.principal(key)).name == "cached"  # within the bound
    now[0] = 5.0
    with pytest.raises(Unauthenticated):
        await api_keys.principal(key)
    await api_keys.close()
