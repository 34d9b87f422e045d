"""Cross-origin requests from browser apps: Starlette's CORS rules, on exact origins only.

A browser sends a preflight `OPTIONS` before a request with an `Authorization` header or a JSON
body; it carries no key, so it is answered at the edge (web/edge.py), before authentication,
and never reaches the GraphQL view. No origin is allowed unless the operator lists it
(`CORS_ALLOW_ORIGINS`), and credentials (cookies) are never allowed: browser apps send a bearer
token, which needs none.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

METHODS = ("GET", "POST")
# What GraphQL clients send: the bearer token, a JSON body, graphql-http's and Apollo Client's
# Accept, and the client name and version that Apollo Client adds when it is given them.
HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "apollographql-client-name",
    "apollographql-client-version",
)
MAX_AGE_SECONDS = 600  # how long a browser may reuse a preflight's answer


def parse_origins(value: str) -> tuple[str, ...]:
    """The comma-separated origins of the setting; ValueError naming the first bad one."""
    origins = tuple(item.strip() for item in value.split(",") if item.strip())
    for origin in origins:
        if origin == "*" or "*" in origin:
            raise ValueError(
                f"{origin!r}: list exact origins; a wildcard would let any site call the API "
                "with its users' tokens"
            )
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        if parts.path or parts.query or parts.fragment or parts.username is not None:
            raise ValueError(
                f"{origin!r}: an origin is scheme, host and port only, with no path or '/'"
            )
    return origins


VARY_ORIGIN = (b"vary", b"Origin")


class Cors(CORSMiddleware):
    """Starlette's CORS rules for these exact origins, without credentials, applied by
    web/edge.py rather than as a middleware of their own: `preflight_response` answers a
    preflight, `add_headers` adds to any other response what Starlette's middleware would."""

    def __init__(self, origins: Sequence[str]) -> None:
        super().__init__(
            _rules_only,
            allow_origins=list(origins),
            allow_methods=METHODS,
            allow_headers=HEADERS,
            allow_credentials=False,
            max_age=MAX_AGE_SECONDS,
        )
        if self.allow_all_origins or self.simple_headers:  # parse_origins refuses "*"
            raise ValueError("CORS allows exact origins only, with no wildcard")
        self.origins = frozenset(origins)

    def preflight_response(self, request_headers: Headers) -> Response:
        """Starlette's answer, with 204 No Content for an accepted preflight (it has no body)."""
        response = super().preflight_response(request_headers)
        if response.status_code != 200:
            return response  # 400 naming what was not allowed: origin, method or headers
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        return Response(status_code=204, headers=headers)

    def add_headers(self, headers: list[tuple[bytes, bytes]], origin: bytes | None) -> None:
        """To the headers of a response that is not a preflight's: the request's `origin` in
        Access-Control-Allow-Origin when it is listed, and Origin in Vary whatever it is (the
        answer depends on it). What Starlette's middleware adds, with no header object."""
        if origin is not None and origin.decode("latin-1") in self.origins:
            _set(headers, b"access-control-allow-origin", origin)
        vary = [value for name, value in headers if name == b"vary"]
        if vary:
            _set(headers, b"vary", b", ".join([*vary, b"Origin"]))
        else:
            headers.append(VARY_ORIGIN)


def _set(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> None:
    """Set a header as Starlette's MutableHeaders does: in the place of its first occurrence
    (any others dropped), else at the end."""
    found = [index for index, (key, _) in enumerate(headers) if key == name]
    for index in reversed(found[1:]):
        del headers[index]
    if found:
        headers[found[0]] = (name, value)
    else:
        headers.append((name, value))


async def _rules_only(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("Cors holds the rules; web/edge.py applies them")
