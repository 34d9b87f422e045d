"""The gate: the one place that decides whether the compiled path answers a request.

The view (web/view.py) hands it the request as plain values (`Inbound`) and gets back the
compiled path's `Answer`, or None: then graphql-core answers, as it would have without the
compiled path. Every reason to decline is here, in the order it is checked:

- the envelope: a POST of JSON (the media type as Strawberry reads it) that wants none of
  Strawberry's HTTP streaming transports (the view asks Strawberry, which alone knows which
  it enables: none here, so an Accept that merely offers multipart/mixed is still ours);
- the body: JSON (as strictly as Strawberry's parse reads it: `Inbound.body.json()`, parsed
  once whichever path answers), one plain request (no batch, no extensions) from a principal;
- the document: what `CompiledPath.answer` covers (the plan, schema/compiled/plan.py), and
  nothing graphql-core would answer with an error;
- a failure of a read: graphql-core runs the request again. A database failure it meets
  too, and reports (and masks) as any other; anything else is a fault of the compiled path
  that the fallback would hide, so its type and place are logged (never its message, which
  may quote data). A write that fails once begun is answered by the compiled path itself,
  and never run again (see schema/compiled/__init__.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from db.faults import fault_of
from db.keys import Principal
from schema.analysis import Admission
from schema.compiled import Answer, CompiledPath
from schema.errors import raised_at
from schema.ftv1 import Recorder

logger = logging.getLogger("customer_api.errors")


class JSONBody(Protocol):
    """A request body that parses itself as JSON at most once (web/body.py's `Body`)."""

    def json(self) -> Any:
        """The body's JSON value; a ValueError when it is not JSON the server takes."""


@dataclass(frozen=True)
class Inbound:
    """What the gate needs to know of an HTTP request."""

    method: str
    media_type: str  # the Content-Type's, lower case, without parameters
    streams: bool  # whether it asks for a streaming transport (Strawberry's to answer)
    body: JSONBody
    principal: Principal | None
    trace: Recorder | None = None  # a federated trace to fill (schema/ftv1), when asked for
    # The operation the view analysed and priced for the rate limit: not worked out again.
    admitted: Admission | None = None


class Gate:
    """The compiled path behind its decisions, and a count of the requests it answered."""

    def __init__(self, path: CompiledPath) -> None:
        self.path = path
        self.answers = 0  # for tests (tests/conftest.py's `app` fixture) and metrics

    async def try_answer(self, request: Inbound) -> Answer | None:
        """The compiled path's answer to `request`, or None for graphql-core to answer it."""
        if (
            request.method != "POST"
            or "application/json" not in request.media_type
            or request.streams
        ):
            return None
        try:
            parsed = request.body.json()
        except ValueError:
            return None  # graphql-core refuses it, saying what is wrong
        if not isinstance(parsed, dict):
            return None  # a batch, or a refusal of graphql-core's
        text, name, given = (
            parsed.get("query"),
            parsed.get("operationName"),
            parsed.get("variables"),
        )
        if (
            not isinstance(text, str)
            or not isinstance(name, str | None)
            or not isinstance(given, dict | None)
            or parsed.get("extensions") is not None  # a persisted query, say
            or request.principal is None  # none authenticated: never so for a POST
        ):
            return None  # graphql-core's refusal, or its to answer
        admitted = request.admitted
        if admitted is not None and (
            admitted.text is not text or admitted.name != name or admitted.variables is not given
        ):
            admitted = None  # of another reading of the request (never so): analysed again
        try:
            answered = await self.path.answer(
                text, name, given, request.principal, request.trace, admitted
            )
        except Exception as error:
            if fault_of(error) is None:
                logger.warning(
                    "the compiled path failed (%s at %s:%d); graphql-core answered",
                    type(error).__name__,
                    *raised_at(error),
                )
            return None
        if answered is not None:
            self.answers += 1
        return answered
