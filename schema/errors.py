"""Unexpected errors are masked: the client gets an error id, the log gets the details."""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

from graphql import FloatValueNode, GraphQLError, IntValueNode
from strawberry.extensions import MaskErrors, SchemaExtension

logger = logging.getLogger("customer_api.errors")

INTERNAL_ERROR = "INTERNAL_SERVER_ERROR"
BAD_USER_INPUT = "BAD_USER_INPUT"
MAX_DIGITS = 4300  # Python's limit on converting a string to an int (sys.get_int_max_str_digits)


def bad_input(message: str, **located: Any) -> GraphQLError:
    """An error in the client's input: the request's fault, so never logged as the server's."""
    return GraphQLError(message, extensions={"code": BAD_USER_INPUT}, **located)


def is_unexpected(error: GraphQLError) -> bool:
    """True for a Python exception escaping a resolver; GraphQL's own errors stay readable."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class MaskUnexpectedErrors(MaskErrors):
    """Replace unexpected errors by a generic message that carries an id found in the log."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        error_id = uuid.uuid4().hex[:16]
        original = error.original_error
        # The exception's type and where it was raised, never its message: a database error
        # quotes the statement's parameters, which hold e-mails, phones and names.
        frames = "\n".join(
            f"  {frame.filename}:{frame.lineno} in {frame.name}"
            for frame in traceback.extract_tb(original.__traceback__ if original else None)
        )
        logger.error(
            "unexpected error %s at %s: %s\n%s",
            error_id,
            ".".join(str(part) for part in error.path or ()),
            type(original).__name__,
            frames.rstrip(),
        )
        return GraphQLError(
            f"Internal server error (error id {error_id}).",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": INTERNAL_ERROR, "errorId": error_id},
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
