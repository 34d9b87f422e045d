"""Prometheus metrics: what the server counts, and `GET /metrics` to read them.

Every metric is declared here, on one registry, so a new subsystem adds its counters in one
place (declare it below, then call `.inc()` where the thing happens). With several worker
processes (`WORKERS` > 1) the server sets `PROMETHEUS_MULTIPROC_DIR` before the workers start;
each worker writes its values to files there and `/metrics` adds them up across workers.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from db import events, kyc, webhooks
from db.models import KycStatus

if TYPE_CHECKING:
    from web.requests import RequestInfo

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "graphql_requests",
    "GraphQL requests by operation name, operation type and outcome "
    "(ok, user_error, refused, error).",
    ["operation", "type", "outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "graphql_request_duration_seconds",
    "Time from the request's arrival to its response, by operation type and outcome.",
    ["type", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "Requests being served right now.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
HTTP_RESPONSES = Counter(
    "http_responses", "HTTP responses by route and status.", ["path", "status"], registry=REGISTRY
)
POOL_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "db_pool_waiting",
    "Callers waiting for a database connection (a free one, a new one, or its ping).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
KYC_TRANSITIONS = Counter(
    "kyc_transitions",
    "KYC verification status changes written, by from and to status ('none': a new one).",
    ["from_status", "to_status"],
    registry=REGISTRY,
)
EVENTS = Counter(
    "customer_events", "Customer events written to the feed, by type.", ["type"], registry=REGISTRY
)
WEBHOOK_ATTEMPTS = Counter(
    "webhook_delivery_attempts",
    "Webhook delivery attempts, by the delivery's status after each (succeeded, pending a "
    "retry, failed for good).",
    ["status"],
    registry=REGISTRY,
)
SWEEP_RUNS = Counter(
    "kyc_expiry_sweep_runs", "KYC expiry sweeps run, by outcome.", ["outcome"], registry=REGISTRY
)
SWEEP_ROWS = Counter(
    "kyc_expiry_sweep_rows", "KYC verifications the expiry sweeps expired.", registry=REGISTRY
)
RATE_LIMIT_UNMETERED = Counter(
    "rate_limit_unmetered",
    "Requests that ran without a rate-limit draw because Redis did not answer in time.",
    registry=REGISTRY,
)

# What a label may hold: route and operation names are the client's to choose, so they are
# bounded, else a client could grow the metrics without end.
ROUTES = frozenset({"/", "/graphql", "/healthz", "/readyz", "/metrics"})
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
MAX_OPERATION_NAMES = 200
_operation_names: set[str] = set()
_pool_status: Callable[[], tuple[int, int]] | None = None
# With worker processes, /metrics is read in one of them and reads the others' gauges from
# their files: each worker writes its pool's after every request. One process is read at
# the scrape itself (`exposition`), so its requests need not.
_sample_every_request = False


def operation_label(name: str | None) -> str:
    if name is None:
        return "anonymous"
    if not _NAME.fullmatch(name):
        return "other"
    if name not in _operation_names:
        if len(_operation_names) >= MAX_OPERATION_NAMES:
            return "other"
        _operation_names.add(name)
    return name


def watch_pool(status: Callable[[], tuple[int, int]] | None) -> None:
    """Report this pool's in-use and waiting counts (None: stop, at shutdown)."""
    global _pool_status, _sample_every_request
    _pool_status = status
    _sample_every_request = bool(os.environ.get(MULTIPROCESS_DIR))
    _sample_pool()
    if status is None and os.environ.get(MULTIPROCESS_DIR):
        # A stopping worker's live gauges (in use, waiting, in progress) leave the sums.
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _sample_pool() -> None:
    in_use, waiting = _pool_status() if _pool_status else (0, 0)
    POOL_IN_USE.set(in_use)
    POOL_WAITING.set(waiting)


# The labelled children each request counts into, kept: `labels()` checks and converts its
# values and takes a lock every time. Their labels are bounded, so are these.
@functools.cache
def _responses(route: str, status: int) -> Counter:
    return HTTP_RESPONSES.labels(route, status)


@functools.cache
def _requests(operation: str, kind: str, outcome: str) -> Counter:
    return REQUESTS.labels(operation, kind, outcome)


@functools.cache
def _latency(kind: str, outcome: str) -> Histogram:
    return LATENCY.labels(kind, outcome)


def observe_request(path: str, status: int, info: RequestInfo, seconds: float) -> None:
    graphiql = path.startswith("/graphiql/")
    route = path if path in ROUTES else "/graphiql/*" if graphiql else "other"
    _responses(route, status).inc()
    if info.outcome is not None:
        kind = info.operation_type or "unknown"
        _requests(operation_label(info.operation_name), kind, info.outcome).inc()
        _latency(kind, info.outcome).observe(seconds)
    if _sample_every_request:
        _sample_pool()


def count_transition(before: KycStatus | None, after: KycStatus, count: int) -> None:
    KYC_TRANSITIONS.labels(before.value if before else "none", after.value).inc(count)


kyc.transition_observers.append(count_transition)
events.event_observers.append(lambda type_: EVENTS.labels(type_.value).inc())
webhooks.attempt_observers.append(lambda status: WEBHOOK_ATTEMPTS.labels(status.value).inc())


def count_sweep(expired: int | None) -> None:
    """One sweep done: how many rows it expired, or None when it failed."""
    SWEEP_RUNS.labels("ok" if expired is not None else "error").inc()
    if expired:
        SWEEP_ROWS.inc(expired)


def exposition() -> bytes:
    _sample_pool()
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def metrics_route(token: str | None) -> Callable[[Request], Awaitable[Response]]:
    """`GET /metrics` for `Authorization: Bearer <token>`; 404 when no token is set."""
    expected = f"Bearer {token}".encode() if token else None

    async def metrics(request: Request) -> Response:
        if expected is None:
            return PlainTextResponse("Not Found", status_code=404)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return PlainTextResponse(
                "Send the metrics token as 'Authorization: Bearer <METRICS_TOKEN>'.",
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="metrics"'},
            )
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics
