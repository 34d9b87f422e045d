"""OpenTelemetry traces: off unless the OTEL_* settings ask for them (docs/operations.md,
"Tracing").

With tracing on, an HTTP request continues the trace of its W3C `traceparent` (or starts one)
in a server span; beneath it, the GraphQL operation (its type and name, whichever executor
answered), and each database statement (its SQL, whose values are bound parameters: never
the values). The trace a write belongs to is stored with its events (db/events.py's
`traceparent`), so that each webhook delivery attempt is a span of that trace, and the
receiver gets its own `traceparent` header.

No span holds what a client sent beyond the method, path and operation name: no query
string, no document, no variables, no statement parameters, no client address, and no
exception message (a database error can quote a value): a failure is told by its type alone.

With tracing off (`Tracing.off()`), nothing here runs for a request: the edge is not wrapped,
no statement observer is added, the view's operation context is a shared no-op, and a log
line or an event written looks at one module flag.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from cross_web import HTTPException
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db import events
from db.driver import StatementEnd
from db.engine import Database
from web.requests import request_info

if TYPE_CHECKING:
    from web.settings import Settings

logger = logging.getLogger("customer_api")

PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent and tracestate
# The routes whose path names the span; any other path (a scanner's) is named by its method.
ROUTES = frozenset({"/graphql", "/", "/healthz", "/readyz", "/metrics"})


def sampler(name: str, argument: float | None) -> Sampler:
    """OTEL_TRACES_SAMPLER's sampler (OTEL_TRACES_SAMPLER_ARG: the ratio, 1.0 when unset)."""
    ratio = 1.0 if argument is None else argument
    root: Sampler = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
    }[name.removeprefix("parentbased_")]
    return ParentBased(root) if name.startswith("parentbased_") else root


def tracing_of(settings: Settings) -> Tracing:
    """Tracing as the OTEL_* settings say: off unless they name an exporter or an endpoint."""
    exporters = settings.traces_exporters
    if not exporters:
        return Tracing.off()
    sampled = sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)
    provider = TracerProvider(
        sampler=sampled, resource=Resource.create({"service.name": settings.otel_service_name})
    )
    for name in exporters:
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter()
        else:
            # Imported only when used: it brings `requests` and protobuf.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(
                endpoint=settings.otlp_traces_url,
                headers=otlp_headers(settings.otel_exporter_otlp_headers),
            )
        provider.add_span_processor(BatchSpanProcessor(exporter))
    # The exporters' names, never the endpoint (a URL may hold credentials).
    logger.info("tracing on: %s, sampler %s", ", ".join(exporters), settings.otel_traces_sampler)
    return Tracing(provider)


def otlp_headers(given: SecretStr | None) -> dict[str, str] | None:
    """OTEL_EXPORTER_OTLP_HEADERS' pairs (key=value, comma-separated, values URL-encoded)."""
    if given is None:
        return None
    headers = {}
    for pair in given.get_secret_value().split(","):
        key, separator, value = pair.partition("=")
        if separator and key.strip():
            headers[key.strip().lower()] = unquote(value.strip())
    return headers


# Whether this process ever turned tracing on: until then the look for a current span that a
# log line or an event makes is skipped (a context look-up each, about 1 µs on a busy core).
_started = False


def traceparent() -> str | None:
    """The current span's W3C traceparent, None outside a span (always so with tracing off)."""
    if not _started:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


# Events written inside a traced request keep its trace, for their deliveries.
events.current_trace = traceparent


def log_ids() -> tuple[str, str] | None:
    """The trace and span id of the current span, in hex, for a log line; None outside one."""
    if not _started:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


def failed(span: trace.Span, error: BaseException) -> None:
    """Marks `span` failed, by the error's type alone: its message may quote data."""
    span.set_attribute("error.type", type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR))


@dataclass
class Operation:
    """What the view tells of the operation it ran: which executor answered."""

    compiled: bool = False


_OFF: AbstractContextManager[Operation] = nullcontext(Operation())


class Tracing:
    """The server's tracer, or none (`off()`): every method is then a no-op."""

    def __init__(self, provider: TracerProvider | None) -> None:
        global _started
        self.provider = provider
        self.tracer = None if provider is None else provider.get_tracer("customer_api")
        _started = _started or provider is not None

    @classmethod
    def off(cls) -> Tracing:
        return cls(None)

    @classmethod
    def exporting(
        cls,
        exporter: SpanExporter,
        *,
        service_name: str = "customer-api",
        sampled: Sampler = ALWAYS_ON,
        batch: bool = True,
    ) -> Tracing:
        """Spans sent to `exporter`: in batches from a thread of the SDK's (`batch`), or each
        as it ends (tests, with an in-memory exporter)."""
        provider = TracerProvider(
            sampler=sampled, resource=Resource.create({"service.name": service_name})
        )
        processor: SpanProcessor = (
            BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        )
        provider.add_span_processor(processor)
        return cls(provider)

    @property
    def on(self) -> bool:
        return self.tracer is not None

    def asgi(self, app: ASGIApp) -> ASGIApp:
        """`app` with a server span around each HTTP request (`app` itself when off)."""
        return app if self.tracer is None else TracedHTTP(app, self.tracer)

    def operation(self) -> AbstractContextManager[Operation]:
        """A span for the GraphQL operation the block runs, named by its type and name once
        the block has run (from what the view told the edge: web/requests.py)."""
        return _OFF if self.tracer is None else self._operation(self.tracer)

    @contextmanager
    def _operation(self, tracer: trace.Tracer) -> Iterator[Operation]:
        told = Operation()
        with tracer.start_as_current_span(
            "GraphQL Operation", record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield told
            except HTTPException as error:  # a refusal (a 400, a 405): the client's to mend
                span.set_attribute("error.type", str(error.status_code))
                raise
            except BaseException as error:
                failed(span, error)
                raise
            finally:
                info = request_info()
                kind = info.operation_type if info else None
                name = info.operation_name if info else None
                if kind:
                    span.set_attribute("graphql.operation.type", kind)
                    span.update_name(f"{kind} {name}" if name else kind)
                if name:
                    span.set_attribute("graphql.operation.name", name)
                if info and info.outcome:
                    span.set_attribute("customer_api.outcome", info.outcome)
                    if info.outcome == "error":
                        span.set_status(Status(StatusCode.ERROR))
                span.set_attribute(
                    "customer_api.executor", "compiled" if told.compiled else "graphql-core"
                )

    def watch(self, db: Database) -> None:
        """A span for each statement `db` runs inside a traced request or delivery, whichever
        way it runs (`Database.statement_observers` are told of them all). Statements outside
        a span (the background jobs' polls) get none: each would be a trace of its own."""
        if self.tracer is None:
            return
        statements = Statements(self.tracer, db.engine.dialect.name)
        db.statement_observers.append(statements.started)

    def delivery(
        self, parent: str | None, *, delivery_id: int, endpoint_id: int, attempt: int
    ) -> AbstractContextManager[Delivery | None]:
        """A client span for one webhook delivery attempt, in the trace of the write that made
        its event (`parent`: the traceparent stored with it); the headers that carry it on."""
        if self.tracer is None:
            return nullcontext()
        return self._delivery(self.tracer, parent, delivery_id, endpoint_id, attempt)

    @contextmanager
    def _delivery(
        self,
        tracer: trace.Tracer,
        parent: str | None,
        delivery_id: int,
        endpoint_id: int,
        attempt: int,
    ) -> Iterator[Delivery]:
        # Not the worker's own context: the attempt belongs to the write's trace, or none.
        given = PROPAGATOR.extract({"traceparent": parent}) if parent else otel_context.Context()
        attributes: dict[str, str | int] = {
            "http.request.method": "POST",
            "customer_api.webhook.delivery_id": delivery_id,
            "customer_api.webhook.endpoint_id": endpoint_id,
            "customer_api.webhook.attempt": attempt,
        }
        with tracer.start_as_current_span(
            "webhook delivery",
            context=given,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            headers: dict[str, str] = {}
            PROPAGATOR.inject(headers)
            told = Delivery(span, headers)
            try:
                yield told
            except BaseException as error:
                failed(span, error)
                raise

    async def close(self) -> None:
        """Send what is still queued, for up to a second; the exporter's thread is then left
        to end with the process (a collector that hangs must not hold the stop)."""
        if self.provider is None:
            return
        provider = self.provider
        done = threading.Event()

        def flush_and_stop() -> None:
            provider.force_flush(1000)
            done.set()
            provider.shutdown()

        threading.Thread(target=flush_and_stop, name="trace export stop", daemon=True).start()
        await asyncio.to_thread(done.wait, 1.2)  # the flush blocks: waited for off the loop


@dataclass
class Delivery:
    """A delivery attempt's span, and the headers that continue its trace at the receiver."""

    span: trace.Span
    headers: Mapping[str, str]

    def answered(self, status: int | None, error: str | None) -> None:
        """The attempt's outcome: the status it got (None: no answer), and why it failed."""
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)
        if error is not None:
            # The worker's own words, never the receiver's: "answered HTTP 500", "no answer
            # within 10 s", "could not connect (ConnectError)".
            self.span.set_attribute("error.type", "no_answer" if status is None else str(status))
            self.span.set_status(Status(StatusCode.ERROR, error))


class Statements:
    """Spans for a database's statements, each beneath the span current when it starts."""

    def __init__(self, tracer: trace.Tracer, system: str) -> None:
        self.tracer = tracer
        self.system = system

    def _start(self, sql: str) -> trace.Span | None:
        if not trace.get_current_span().is_recording():
            return None
        operation = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "SQL"
        return self.tracer.start_span(
            operation,
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": self.system,
                "db.operation.name": operation,
                # The SQL as compiled: every value in it is a bound parameter (?, $1),
                # which no span holds.
                "db.query.text": sql,
            },
        )

    def started(self, sql: str) -> StatementEnd | None:
        """`Database.statement_observers`' observer: what ends the statement's span."""
        span = self._start(sql)
        if span is None:
            return None

        def ended(error: BaseException | None) -> None:
            if error is not None:
                failed(span, error)
            span.end()

        return ended


class TracedHTTP:
    """ASGI middleware: a server span for each HTTP request, continuing its `traceparent`."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        carrier = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode()] = value.decode("latin-1")
        method, path = scope["method"], scope["path"]
        route = path if path in ROUTES else None
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        if route:  # any other path (a scanner's, a static file's) may hold anything: left out
            attributes["url.path"] = attributes["http.route"] = route
        with self.tracer.start_as_current_span(
            f"{method} {route}" if route else method,
            context=PROPAGATOR.extract(carrier),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_attribute("error.type", str(status))
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, sending)
            except BaseException as error:
                failed(span, error)
                raise
        return None
