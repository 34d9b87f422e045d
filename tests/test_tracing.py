"""OpenTelemetry tracing (web/tracing.py): one request's spans form one trace that continues
the client's traceparent, with the GraphQL operation and its statements beneath the HTTP span
and the webhook delivery attempt of the event it wrote, on each executor and backend; no
span holds a variable's value or personal data; the JSON log line names the trace; and
tracing stays off, sending nothing, unless the OTEL_* settings ask for it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError
from starlette.applications import Starlette

from server import Settings, create_app
from tests.support.clock import Clock
from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import GraphQLClient, operation
from tests.support.log_privacy import personal_data_in
from tests.support.receivers import receiving
from tests.test_webhooks import SETTINGS as WEBHOOK_SETTINGS
from tests.test_webhooks import RealClock
from web.edge import Edge
from web.logs import JsonFormatter, RequestIdFilter
from web.tracing import Tracing, tracing_of

pytestmark = pytest.mark.both_executors

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
EMAIL = "ann.traced@example.com"
COLLECTOR = "http://127.0.0.1:9"  # nothing listens: these apps are never started
PHONE = "+12015550123"


@pytest.fixture
def clock() -> Clock:
    return RealClock()  # deliveries are retried by the wall clock


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    return dict(WEBHOOK_SETTINGS)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def app(
    settings: Settings, clock: Clock, spans: InMemorySpanExporter
) -> AsyncIterator[Starlette]:
    tracing = Tracing.exporting(spans, batch=False)  # each span exported as it ends
    app = create_app(settings, clock, tracing=tracing)
    async with LifespanManager(app):
        yield app


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The access log's lines as LOG_FORMAT=json writes them (web/logs.py)."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("customer_api.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        yield written
    finally:
        access.removeHandler(handler)
        access.setLevel(level)


def attributes_of(finished: Sequence[ReadableSpan]) -> list[str]:
    """Every attribute of every span, and every span's name, as text."""
    texts = []
    for span in finished:
        texts.append(span.name)
        texts.extend(key + "=" + str(value) for key, value in (span.attributes or {}).items())
        if span.status.description:
            texts.append(span.status.description)
    return texts


async def wait_for_span(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    """The first finished span called `name`, waiting for the worker to end it."""
    for _ in range(1500):  # 30 s
        found = [s for s in spans.get_finished_spans() if s.name == name]
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {name!r} span ended")


async def stamps_written(app: Starlette) -> None:
    """Until the key's last-used stamps that requests started are written: a stamp runs beside
    its request, in its trace, and may end after it (web/auth.py)."""
    if stamps := app.state.view.keys.stamps:
        await asyncio.wait(list(stamps))


async def test_a_request_continues_the_trace_down_to_its_statements_and_webhook_delivery(
    app: Starlette,
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    spans: InMemorySpanExporter,
    json_log: io.StringIO,
    compiled_path: bool,
) -> None:
    with receiving() as receiver:
        made = await gql.run("create_webhook_endpoint", input={"url": receiver.url})
        assert made["createWebhookEndpoint"]["userErrors"] == []
        await stamps_written(app)
        spans.clear()  # the endpoint's request is a trace of its own
        answered_before = app.state.view.compiled_answers
        variables = {
            "input": {
                "externalCustomerId": "c-traced",
                "data": {"email": EMAIL, "phone": PHONE, "firstName": "Annabel"},
            }
        }
        response = await http.post(
            "/graphql",
            json={"query": operation("create_customer"), "variables": variables},
            headers={"traceparent": TRACEPARENT},
        )
        assert response.status_code == 200
        assert response.json()["data"]["createCustomer"]["userErrors"] == []
        # Which executor answered is the one under test.
        assert app.state.view.compiled_answers - answered_before == (1 if compiled_path else 0)
        [received] = await asyncio.to_thread(receiver.wait_for, 1)
        delivery = await wait_for_span(spans, "webhook delivery")

    traced = [s for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == TRACE_ID]
    by_id = {s.context.span_id: s for s in traced}
    [http_span] = [s for s in traced if s.kind is SpanKind.SERVER]
    assert http_span.name == "POST /graphql"
    assert http_span.parent is not None
    assert http_span.parent.is_remote
    assert f"{http_span.parent.span_id:016x}" == PARENT_ID
    assert (http_span.attributes or {})["http.response.status_code"] == 200

    [operation_span] = [s for s in traced if s.name == "mutation CreateCustomer"]
    assert operation_span.parent is not None
    assert operation_span.parent.span_id == http_span.context.span_id
    assert dict(operation_span.attributes or {}) == {
        "graphql.operation.type": "mutation",
        "graphql.operation.name": "CreateCustomer",
        "customer_api.outcome": "ok",
        "customer_api.executor": "compiled" if compiled_path else "graphql-core",
    }

    def ancestors(span: ReadableSpan) -> list[int]:
        found = []
        while span.parent is not None and span.parent.span_id in by_id:
            found.append(span.parent.span_id)
            span = by_id[span.parent.span_id]
        return found

    statements = [s for s in traced if "db.query.text" in (s.attributes or {})]
    under_operation = [s for s in statements if operation_span.context.span_id in ancestors(s)]
    texts = [str((s.attributes or {})["db.query.text"]) for s in under_operation]
    assert any(text.startswith("INSERT INTO customer ") for text in texts), texts
    # The event's INSERT: a statement of its own, or on PostgreSQL inside the counter's WITH.
    assert any("INSERT INTO customer_event " in text for text in texts), texts
    for statement in statements:
        assert set(statement.attributes or {}) == {
            "db.system.name",
            "db.operation.name",
            "db.query.text",
        }
        assert (statement.attributes or {})["db.system.name"] == app.state.db.engine.dialect.name
        assert http_span.context.span_id in ancestors(statement)

    # The delivery attempt: a span of the same trace, beneath the operation that wrote the
    # event, whose traceparent the receiver got.
    assert f"{delivery.context.trace_id:032x}" == TRACE_ID
    assert delivery.kind is SpanKind.CLIENT
    assert delivery.parent is not None
    assert delivery.parent.span_id == operation_span.context.span_id
    assert (delivery.attributes or {})["http.response.status_code"] == 204
    assert received.headers["traceparent"] == (f"00-{TRACE_ID}-{delivery.context.span_id:016x}-01")

    # No value the client sent, nor anything shaped like personal data, in any span.
    every = attributes_of(spans.get_finished_spans())
    assert personal_data_in(every) == []
    assert not [text for text in every if "Annabel" in text or "c-traced" in text]

    # The access line of the request names its trace (and its HTTP span).
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    [line] = [entry for entry in lines if entry.get("operation") == "CreateCustomer"]
    assert (line["trace_id"], line["span_id"]) == (TRACE_ID, f"{http_span.context.span_id:016x}")


async def test_a_query_on_either_executor_is_an_operation_span_with_its_reads(
    app: Starlette, gql: GraphQLClient, http: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    await gql.create("c-1", phone=PHONE)
    await stamps_written(app)
    spans.clear()
    response = await http.post(
        "/graphql",
        json={"query": operation("customer"), "variables": {"externalCustomerId": "c-1"}},
        headers={"traceparent": TRACEPARENT},
    )
    assert response.json()["data"]["customer"]["externalCustomerId"] == "c-1"
    finished = spans.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in finished} == {TRACE_ID}
    [operation_span] = [s for s in finished if s.name.startswith("query")]
    reads = [
        s
        for s in finished
        if s.parent is not None and s.parent.span_id == operation_span.context.span_id
    ]
    # One statement on the compiled path; graphql-core's loaders may add one for KYC.
    assert reads
    assert {(s.attributes or {})["db.operation.name"] for s in reads} == {"SELECT"}
    assert "FROM customer" in str((reads[0].attributes or {})["db.query.text"])
    assert personal_data_in(attributes_of(finished)) == []


@pytest.mark.sqlite_only
async def test_without_a_traceparent_a_request_starts_a_trace_of_its_own(
    app: Starlette, gql: GraphQLClient, spans: InMemorySpanExporter
) -> None:
    await gql.customer("c-none")
    [http_span] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert http_span.parent is None
    traces = {s.context.trace_id for s in spans.get_finished_spans()}
    assert traces == {http_span.context.trace_id}


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("given", "on"),
    [
        ({}, False),
        ({"otel_service_name": "api"}, False),
        ({"otel_traces_sampler": "always_on"}, False),
        ({"otel_traces_exporter": "none", "otel_exporter_otlp_endpoint": COLLECTOR}, False),
        ({"otel_exporter_otlp_endpoint": COLLECTOR}, True),
        ({"otel_exporter_otlp_traces_endpoint": COLLECTOR + "/v1/traces"}, True),
        ({"otel_traces_exporter": "console"}, True),
        ({"otel_sdk_disabled": True, "otel_exporter_otlp_endpoint": COLLECTOR}, False),
    ],
)
async def test_tracing_is_off_unless_an_exporter_or_endpoint_is_set(
    given: dict[str, Any], on: bool
) -> None:
    tracing = tracing_of(Settings(**given))
    try:
        assert tracing.on is on
    finally:
        await tracing.close()


@pytest.mark.sqlite_only
async def test_a_refused_request_is_the_clients_error_not_the_servers(
    app: Starlette, http: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    response = await http.get("/graphql", params={"query": "mutation { __typename }"})
    assert response.status_code == 405
    finished = spans.get_finished_spans()
    [operation_span] = [s for s in finished if s.kind is SpanKind.INTERNAL]
    assert (operation_span.attributes or {})["error.type"] == "405"
    assert all(s.status.status_code is not StatusCode.ERROR for s in finished)


@pytest.mark.sqlite_only
def test_with_tracing_off_a_request_meets_none_of_it(settings: Settings) -> None:
    """Off, the edge is not wrapped and no statement is observed (the engine's hook that
    tells observers of the ORM's statements finds none, db/engine.py): what a request costs
    is what it cost before tracing existed."""
    app = create_app(settings)
    assert isinstance(app.build_middleware_stack(), Edge)
    assert app.state.db.statement_observers == []


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"otel_traces_exporter": "jaeger"}, "otel_traces_exporter"),
        ({"otel_traces_sampler": "sometimes"}, "otel_traces_sampler"),
        ({"otel_traces_sampler_arg": 2}, "otel_traces_sampler_arg"),
        ({"otel_exporter_otlp_endpoint": "127.0.0.1:4318"}, "otel_exporter_otlp_endpoint"),
    ],
)
def test_a_bad_tracing_setting_is_refused_by_name(given: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(**given)
    assert [error["loc"] for error in raised.value.errors()] == [(field,)]


@pytest.mark.sqlite_only
async def test_otel_exporter_otlp_endpoint_sends_the_spans_over_otlp_http(
    settings: Settings, clock: Clock
) -> None:
    with receiving(lambda _n: 200) as collector:
        base = collector.url.removesuffix("/hook")
        traced = Settings(
            **{
                **settings.model_dump(),
                "otel_exporter_otlp_endpoint": base,
                "otel_exporter_otlp_headers": "x-collector-key=k%3D1",
                "otel_service_name": "customers-test",
            }
        )
        app = create_app(traced, clock)
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                await http.post(
                    "/graphql",
                    json={"query": "query Hello { __typename }"},
                    headers={"authorization": f"Bearer {TEST_API_KEY}", "traceparent": TRACEPARENT},
                )
        # The stop flushed the batch: the collector has it by now.
        [export] = collector.succeeded()
    assert export.headers["content-type"] == "application/x-protobuf"
    assert export.headers["x-collector-key"] == "k=1"
    sent = ExportTraceServiceRequest.FromString(export.body)
    [resource_spans] = sent.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "customers-test"
    sent_spans = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert {s.trace_id.hex() for s in sent_spans} == {TRACE_ID}
    # The key's look-up (a SELECT) too.
    assert {"POST /graphql", "query Hello"} <= {s.name for s in sent_spans}
