"""What the edge knows about the request in hand: its id, its operation, who sent it.

`RequestScope` is the outermost middleware: it gives every request an id (a sane
`X-Request-Id` from the client, else a new one), returns it in the response header, makes it
visible to every log line written while the request runs, records the request's metrics,
and answers any failure outside GraphQL as JSON with an error id instead of a bare 500.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
import uuid
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schema.errors import SERVICE_UNAVAILABLE, Failure, report
from web import metrics

logger = logging.getLogger("customer_api.errors")

# Letters, digits and a few separators, at most 64: anything else (a log injection, a
# megabyte of header) is replaced by an id of our own.
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


@dataclass
class RequestInfo:
    """Filled in as the request goes: the view adds the operation, outcome and key name."""

    id: str
    operation_name: str | None = None
    operation_type: str | None = None
    outcome: str | None = None  # ok, user_error, refused, error (GraphQL requests only)
    principal: str | None = None  # the key's (or token's) name, never the credential


current: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "request", default=None
)


def request_info() -> RequestInfo | None:
    return current.get()


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SANE_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestScope:
    """ASGI middleware, outermost: the request id in the log and the response, and metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        info = RequestInfo(request_id_from(scope))
        token = current.set(info)
        began = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            if not observed:
                observed = True
                metrics.observe_request(scope["path"], status, info, time.perf_counter() - began)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Counted before the client can have the answer: a scrape that follows a
                # response always includes it.
                observe(message["status"])
                headers = [*message.get("headers", ()), (b"x-request-id", info.id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        metrics.IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            metrics.IN_PROGRESS.dec()
            observe(500)  # no response at all
            current.reset(token)
        return None


def stopping() -> Failure:
    error_id = uuid.uuid4().hex[:16]
    logger.warning("request %s cut off: the server is stopping", error_id)
    message = f"The server is stopping; send the request again (error id {error_id})."
    return Failure(error_id, SERVICE_UNAVAILABLE, message)


class JsonErrors:
    """ASGI middleware, innermost: a failure outside GraphQL (say, in the key check) answers
    a GraphQL-shaped JSON error with an error id, 503 when the database is sick, else 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except (Exception, asyncio.CancelledError) as error:
            if isinstance(error, asyncio.CancelledError):
                # The grace time of a stopping server ran out: say so (the request may or may
                # not have been done; a client retries on 503), rather than a bare 500.
                failure = stopping()
            else:
                failure = report(error, f"{scope['method']} {scope['path']}")
            if (info := current.get()) is not None:
                info.outcome = "error"
            if started:  # too late for an answer of its own: the connection is dropped
                raise
            body = orjson.dumps({"errors": [failure.as_error()]})
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            if failure.status == 503:
                headers.append((b"retry-after", b"5"))
            await send(
                {"type": "http.response.start", "status": failure.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
        return None
