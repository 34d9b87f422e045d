"""Requests /graphql refuses before any GraphQL runs, answered the way GraphQL clients read.

Apollo Client, urql and graphql-request parse the body of every answer as JSON and look for
`errors`; a text/plain 400 reaches their users as a parse failure ("ServerParseError") that
hides why the request was refused. So every 4xx of /graphql carries
`{"errors": [{"message": ..., "extensions": {"code": ...}}]}`, with one of the stable codes
below for clients to branch on, and no `data` entry (the request never ran).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.responses import Response

GRAPHQL_RESPONSE = "application/graphql-response+json; charset=utf-8"

BAD_REQUEST = "BAD_REQUEST"
BATCHING_DISABLED = "BATCHING_DISABLED"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
# Apollo's persisted-queries link turns itself off on this code (or this message) and sends
# whole documents from then on.
PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
PERSISTED_QUERY_NOT_SUPPORTED_MESSAGE = "PersistedQueryNotSupported"

# The reasons of refusals raised as HTTP errors (Strawberry's, or the view's own) that have a
# code of their own, with the status and message each is answered with; any other reason is a
# BAD_REQUEST with its status and its own words.
_KNOWN_REASONS = {
    PERSISTED_QUERY_NOT_SUPPORTED_MESSAGE: (
        400,
        PERSISTED_QUERY_NOT_SUPPORTED,
        PERSISTED_QUERY_NOT_SUPPORTED_MESSAGE,
    ),
    "Unsupported content type": (
        415,
        UNSUPPORTED_MEDIA_TYPE,
        "The request body must be application/json (or a GET with a query parameter).",
    ),
    "Batching is not enabled": (
        400,
        BATCHING_DISABLED,
        "This server takes one operation a request: send the operations of a batch one by one.",
    ),
}


def refusal(
    status: int,
    message: str,
    code: str,
    *,
    graphql_response: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The answer to a request refused before it ran: a GraphQL-shaped error with `code`, as
    application/graphql-response+json for clients that accept it, else application/json."""
    body = orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})
    media_type = GRAPHQL_RESPONSE if graphql_response else "application/json"
    return Response(body, status_code=status, media_type=media_type, headers=dict(headers or {}))


def refusal_of_reason(status: int, reason: str, *, graphql_response: bool = False) -> Response:
    """The refusal for an HTTP error raised with `status` and `reason` (Strawberry's or ours)."""
    if status == 405:
        answer = refusal(405, reason, METHOD_NOT_ALLOWED, graphql_response=graphql_response)
        answer.headers["allow"] = "GET, POST"
        return answer
    status, code, message = _KNOWN_REASONS.get(reason, (status, BAD_REQUEST, reason))
    return refusal(status, message, code, graphql_response=graphql_response)
