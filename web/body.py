"""The request body: bounded in size on its route (`BodyLimit`), read within a deadline, and
parsed as strict JSON within sane limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.tasks import Deadlines
from web.refusals import PAYLOAD_TOO_LARGE, refusal

MAX_JSON_DEPTH = 64  # arrays and objects inside one another; real requests use under ten
MAX_NUMBER_DIGITS = 100  # GraphQL's Int is 32-bit; anything longer is an attack or a mistake


class BodyLimit:
    """ASGI wrapper of a route: bodies over `max_bytes` get 413 Content Too Large, as with
    Starlette's `Route(max_body_size=...)`, without its two wrappers on every request.

    A body that declares a larger length is refused before the route runs (Starlette ran it
    and answered 413 in place of whatever it answered, a 401 say); a declared length is all
    the server reads of a body, so a smaller one needs nothing more. Only a body of no
    declared length (chunked) is counted as the route reads it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    break  # no length, then: counted
                if declared > self.max_bytes:
                    return await too_large()(scope, receive, send)
                return await self.app(scope, receive, send)
        return await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, sending)
        except BodyTooLarge:
            if started:  # too late for a 413: the connection is dropped
                raise
            await too_large()(scope, receive, send)


class BodyTooLarge(Exception):
    """The body went past its route's bound while the route read it."""


def too_large() -> Response:
    message = "The request body is larger than this server takes (MAX_BODY_BYTES)."
    return refusal(413, message, PAYLOAD_TOO_LARGE)


class BodyTimeout(Exception):
    """The body did not arrive within the deadline."""


class BadJSON(ValueError):
    """A body (or a `variables` parameter) that is not UTF-8 JSON within the limits."""


class Body(bytes):
    """A request body that parses itself as JSON (`parse_json`) at most once, for whichever
    path reads it: the compiled path's gate, to see whether the request is its to answer,
    then Strawberry, when graphql-core answers."""

    _parsed: Any  # the JSON value, or the BadJSON that parsing raised

    def json(self) -> Any:
        """The body's JSON value; BadJSON, saying what is wrong, for anything else."""
        try:
            parsed = self._parsed
        except AttributeError:
            try:
                parsed = parse_json(self)
            except BadJSON as error:
                parsed = error
            self._parsed = parsed
        if isinstance(parsed, BadJSON):
            raise BadJSON(str(parsed))
        return parsed

    def with_json(self, value: Any) -> Body:
        """The same bytes, read as `value`: a persisted document's request, its text put in
        (web/persisted.py)."""
        body = Body(self)
        body._parsed = value
        return body


async def read_body(request: Request, seconds: float, deadlines: Deadlines) -> Body:
    """The whole body; BodyTimeout when it is not complete within `seconds` (kept by
    `deadlines`: nearly every body arrives with its head, and needs no timer of its own)."""
    try:
        with deadlines.within(seconds):
            return Body(await request.body())
    except TimeoutError:
        raise BodyTimeout(f"The request body did not arrive within {seconds:g} seconds.") from None


def parse_json(data: str | bytes) -> Any:
    """The JSON value in `data`; BadJSON, saying what is wrong, for anything else.

    orjson reads nearly every request (a fraction of the json module's cost) and its value
    is taken when it is what the json module reads: orjson refuses NaN and Infinity, invalid
    UTF-8, a byte-order mark and lone surrogates (the json module reads their escapes), and
    a value that holds a float (its own float parser; an integer beyond 64 bits becomes one)
    or nests too deep is read again. Whatever it refuses takes the json module's path, which
    alone says what is wrong. tests/test_edge.py holds the two to the same values and errors.
    """
    if isinstance(data, bytes):
        try:
            value = orjson.loads(memoryview(data))  # a Body too (orjson wants exact types)
        except orjson.JSONDecodeError:
            pass  # said below, in the json module's words
        else:
            if _within(value, MAX_JSON_DEPTH, floats=False):
                return value
    return _parse_json_strictly(data)


def _within(value: Any, limit: int, *, floats: bool = True) -> bool:
    """Whether arrays and objects nest no deeper than `limit` in `value` (and, unless
    `floats`, it holds no float); iterative, so never a recursion."""
    if not floats and isinstance(value, float):
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        for child in children:
            if not floats and isinstance(child, float):
                return False
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return True


def _parse_json_strictly(data: str | bytes) -> Any:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadJSON(f"The request body is not UTF-8 (byte {error.start}).") from None
    try:
        value = json.loads(data, parse_int=_int, parse_constant=_constant)
    except RecursionError:
        raise BadJSON(_too_deep()) from None
    except json.JSONDecodeError as error:
        raise BadJSON(f"The request body is not JSON: {error}.") from None
    if not _within(value, MAX_JSON_DEPTH):
        raise BadJSON(_too_deep())
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise BadJSON(f"A number in the request body has more than {MAX_NUMBER_DIGITS} digits.")
    return int(text)


def _constant(text: str) -> Any:
    raise BadJSON(f"The request body is not JSON: {text} is not a JSON number.")


def _too_deep() -> str:
    return f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} deep."
