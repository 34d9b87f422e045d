"""Unexpected errors are masked: the client gets an error id, the log gets the details."""

from __future__ import annotations

import contextlib
import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import FloatValueNode, GraphQLError, IntValueNode
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from db.faults import fault_of

logger = logging.getLogger("customer_api.errors")

INTERNAL_ERROR = "INTERNAL_SERVER_ERROR"
BAD_USER_INPUT = "BAD_USER_INPUT"
MAX_DIGITS = 4300  # Python's limit on converting a string to an int (sys.get_int_max_str_digits)


def bad_input(message: str, **located: Any) -> GraphQLError:
    """An error in the client's input: the request's fault, so never logged as the server's."""
    return GraphQLError(message, extensions={"code": BAD_USER_INPUT}, **located)


SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


def refuse(context: ExecutionContext, errors: list[GraphQLError]) -> None:
    """Stop an operation with these errors before anything runs (from an `on_execute` hook).

    Strawberry ignores a result set there for a subscription, so a subscription's first error
    is raised instead: it reaches the client as the operation's only result all the same.
    """
    if context.operation_type is OperationType.SUBSCRIPTION:
        raise errors[0]
    context.result = GraphQLExecutionResult(data=None, errors=errors)


def is_unexpected(error: GraphQLError) -> bool:
    """True for a Python exception escaping a resolver; GraphQL's own errors stay readable."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class TracebackThrottle:
    """Lets a cause's traceback into the log once per window, counting the repeats between.

    A cause is the exception's type and the line it was raised at: a database outage that
    fails 3,000 requests logs one traceback a minute with a count, and every error id still
    gets its own short line.
    """

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self.seen: dict[tuple[str, str, int], list[float]] = {}  # cause: [shown at, repeats]

    def admit(self, cause: tuple[str, str, int]) -> int | None:
        """None to leave the traceback out; else how many repeats went unshown before it."""
        now = self.clock()
        entry = self.seen.get(cause)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return None
        if len(self.seen) > 1000:  # many distinct causes: forget them rather than grow
            self.seen.clear()
        self.seen[cause] = [now, 0]
        return int(entry[1]) if entry else 0


throttle = TracebackThrottle()


@dataclass(frozen=True)
class Failure:
    """What a client is told about an unexpected failure: a message, a code, an error id."""

    error_id: str
    code: str
    message: str

    @property
    def status(self) -> int:
        return 503 if self.code == SERVICE_UNAVAILABLE else 500

    def as_error(self) -> dict[str, object]:
        """The GraphQL-shaped error of a response made outside GraphQL execution."""
        extensions = {"code": self.code, "errorId": self.error_id}
        return {"message": self.message, "extensions": extensions}


def raised_at(
    error: BaseException, frames: traceback.StackSummary | None = None
) -> tuple[str, int]:
    """The file and line an exception was raised at ("", 0 when it has no traceback)."""
    frames = traceback.extract_tb(error.__traceback__) if frames is None else frames
    return (frames[-1].filename, frames[-1].lineno or 0) if frames else ("", 0)


def report(error: BaseException, where: str) -> Failure:
    """Log an unexpected failure under a new error id, and say what the client gets.

    The log has the exception's type and where it was raised, never its message: a database
    error quotes the statement's parameters, which hold e-mails, phones and names. A sick
    database (unreachable, timing out, out of space) is SERVICE_UNAVAILABLE, not a bug.
    """
    error_id = uuid.uuid4().hex[:16]
    fault = fault_of(error)
    frames = traceback.extract_tb(error.__traceback__)
    cause = (type(error).__name__, *raised_at(error, frames))
    repeats = throttle.admit(cause)
    kind = "database unavailable" if fault else "unexpected error"
    line = f"{kind} {error_id} at {where}: {type(error).__name__}"
    if repeats is None:
        logger.error("%s (traceback shown earlier this minute)", line)
    else:
        shown = "\n".join(f"  {f.filename}:{f.lineno} in {f.name}" for f in frames)
        again = f" ({repeats} more like it since its last traceback)" if repeats else ""
        logger.error("%s%s\n%s", line, again, shown.rstrip())
    if fault is None:
        return Failure(error_id, INTERNAL_ERROR, f"Internal server error (error id {error_id}).")
    return Failure(error_id, SERVICE_UNAVAILABLE, f"{fault.value} (error id {error_id})")


class MaskUnexpectedErrors(MaskErrors):
    """Replace unexpected errors by a generic message that carries an id found in the log."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error or error
        failure = report(original, ".".join(str(part) for part in error.path or ()) or "-")
        return GraphQLError(
            failure.message,
            nodes=error.nodes,
            path=error.path,
            extensions={"code": failure.code, "errorId": failure.error_id},
        )


def unreadable_number(error: GraphQLError) -> GraphQLError | None:
    """A number literal too long for Python to read (past 4,300 digits) fails validation with
    a ValueError inside, which would be masked as a server error; it is the client's."""
    nodes = error.nodes or ()
    if is_unexpected(error) and any(
        isinstance(node, IntValueNode | FloatValueNode) for node in nodes
    ):
        return bad_input(
            f"A number in the document is too long to read; at most {MAX_DIGITS} digits.",
            nodes=nodes,
        )
    return None


_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


class HideSuggestions(SchemaExtension):
    """Drop "Did you mean ...?" from error messages: with introspection off, suggestions would
    hand out the schema's names one guess at a time."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        for error in getattr(result, "errors", None) or ():
            error.message = _SUGGESTION.sub("", error.message)


class ReportOperation(SchemaExtension):
    """Note the operation's name and type on the context, for the request's log and metrics
    (the view reads them back; nothing else of the document leaves the schema)."""

    def on_operation(self) -> Iterator[None]:
        yield
        execution = self.execution_context
        operation = getattr(execution.context, "operation", None)
        if operation is None:
            return
        operation.name = execution.operation_name
        with contextlib.suppress(Exception):  # no document, or no such operation in it
            operation.type = execution.operation_type.value
