"""What the edge knows about the request in hand: its id, its operation, who sent it; and how
a failure outside GraphQL is answered.

web/edge.py gives every request an id (`request_id`: a sane `X-Request-Id` from the client,
else a new one), returns it in the response header and makes it visible to every log line
written while the request runs (`current`); a failure outside GraphQL is answered as JSON
with an error id (`failure_of`, `send_failure`) instead of a bare 500.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import uuid
from dataclasses import dataclass

import orjson
from starlette.types import Scope, Send

from schema.errors import SERVICE_UNAVAILABLE, Failure, report

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
    principal: str | None = None  # who acts (`key:<name>`, `token:<iss>#<sub>`), never a credential


current: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "request", default=None
)


def request_info() -> RequestInfo | None:
    return current.get()


def request_id(given: bytes | None) -> str:
    """The client's X-Request-Id (its first) when it is sane, else a new one: 32 hex digits."""
    if given is not None:
        candidate = given.decode("latin-1")
        if _SANE_ID.fullmatch(candidate):
            return candidate
    return os.urandom(16).hex()


def stopping() -> Failure:
    error_id = uuid.uuid4().hex[:16]
    logger.warning("request %s cut off: the server is stopping", error_id)
    message = f"The server is stopping; send the request again (error id {error_id})."
    return Failure(error_id, SERVICE_UNAVAILABLE, message)


def failure_of(error: BaseException, scope: Scope) -> Failure:
    """A failure outside GraphQL (say, in the key check), logged with its error id: 503 when
    the database is sick or the server is stopping, else 500."""
    if isinstance(error, asyncio.CancelledError):
        # The grace time of a stopping server ran out: say so (the request may or may not
        # have been done; a client retries on 503), rather than a bare 500.
        return stopping()
    return report(error, f"{scope['method']} {scope['path']}")


async def send_failure(failure: Failure, send: Send) -> None:
    """The failure as a GraphQL-shaped JSON error with its error id."""
    body = orjson.dumps({"errors": [failure.as_error()]})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if failure.status == 503:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": failure.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
