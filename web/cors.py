"""Cross-origin requests from browser apps: Starlette's CORS middleware, on exact origins only.

A browser sends a preflight `OPTIONS` before a request with an `Authorization` header or a JSON
body; it carries no key, so it is answered here, before authentication, and never reaches the
GraphQL view. No origin is allowed unless the operator lists it (`CORS_ALLOW_ORIGINS`), and
credentials (cookies) are never allowed: browser apps send a bearer token, which needs none.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

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


class Cors(CORSMiddleware):
    """Starlette's middleware, with 204 No Content for an accepted preflight (it has no body)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 200:
            return response  # 400 naming what was not allowed: origin, method or headers
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        return Response(status_code=204, headers=headers)


def cors(origins: Sequence[str]) -> Middleware:
    """The middleware for these exact origins (none: every cross-origin call is refused)."""
    return Middleware(
        Cors,
        allow_origins=list(origins),
        allow_methods=METHODS,
        allow_headers=HEADERS,
        allow_credentials=False,
        max_age=MAX_AGE_SECONDS,
    )
