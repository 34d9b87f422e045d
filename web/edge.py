"""The HTTP edge as one ASGI middleware: what every HTTP request gets around the routes.

Each of these was a middleware of its own, wrapping `send` in one more coroutine; `Edge` does
them in one, in their order, outermost first:

1. a request id (web/requests.py): the client's sane X-Request-Id or a new one, visible to
   every log line the request writes and returned in the response;
2. its metrics (web/metrics.py): in progress, and counted when the response starts;
3. the access-log line (web/access_log.py), when the response is done or the app failed;
4. the security headers (web/headers.py), on every response;
5. CORS (web/cors.py): a preflight is answered here, before anything asks for a key; any
   other response gets Starlette's CORS headers;
6. JSON errors (web/requests.py): a failure in the app (say, in the key check) is answered
   as JSON with an error id, 503 when the database is sick or the server stops, else 500.

A preflight's answer and an error's get 1 to 4 too. `App` is Starlette with `Edge` as its
whole middleware stack: Starlette's own two (ServerErrorMiddleware, ExceptionMiddleware) would
add two more wrappers of `send` for what `Edge` already does; their one other duty, answering
Starlette's HTTPException (404 and 405 from the router, StaticFiles' 404), is done here as
Starlette's default handler does it. WebSocket and lifespan scopes go straight to the router.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from time import perf_counter

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send

from web import metrics
from web.access_log import log_access
from web.cors import Cors
from web.headers import add_security_headers
from web.requests import RequestInfo, current, failure_of, request_id, send_failure
from web.tracing import Tracing


class Edge:
    """ASGI middleware: request id, metrics, access log, security headers, CORS, JSON errors."""

    def __init__(self, app: ASGIApp, cors: Cors) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = perf_counter()
        given_id: bytes | None = None
        origin: bytes | None = None
        preflight = False
        for name, value in scope["headers"]:  # what the edge reads of a request, in one pass
            if name == b"x-request-id":
                given_id = value if given_id is None else given_id
            elif name == b"origin":
                origin = value if origin is None else origin
            elif name == b"access-control-request-method":
                preflight = True
        preflight = preflight and origin is not None and scope["method"] == "OPTIONS"
        info = RequestInfo(request_id(given_id))
        token = current.set(info)
        id_header = (b"x-request-id", info.id.encode())
        status = 0  # none sent yet

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Counted before the client can have the answer: a scrape that follows a
                # response always includes it.
                metrics.observe_request(scope["path"], status, info, perf_counter() - began)
                headers = list(message.get("headers", ()))
                if not preflight:  # a preflight's answer has its CORS headers already
                    self.cors.add_headers(headers, origin)
                add_security_headers(headers)
                headers.append(id_header)
                message = {**message, "headers": headers}
            await send(message)

        metrics.IN_PROGRESS.inc()
        try:
            if preflight:
                response = self.cors.preflight_response(Headers(scope=scope))
                await response(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        except (Exception, asyncio.CancelledError) as error:
            if isinstance(error, HTTPException) and not status:
                await http_exception_response(error)(scope, receive, sending)
                return None
            failure = failure_of(error, scope)
            info.outcome = "error"
            if status:  # too late for an answer of its own: the connection is dropped
                raise
            await send_failure(failure, sending)
        finally:
            metrics.IN_PROGRESS.dec()
            if not status:  # no response at all
                metrics.observe_request(scope["path"], 500, info, perf_counter() - began)
            log_access(scope, status or 500, perf_counter() - began, info)
            current.reset(token)
        return None


def http_exception_response(error: HTTPException) -> Response:
    """What Starlette's ExceptionMiddleware answers for an HTTPException."""
    if error.status_code in {204, 304}:
        return Response(status_code=error.status_code, headers=error.headers)
    return PlainTextResponse(error.detail, status_code=error.status_code, headers=error.headers)


class App(Starlette):
    """Starlette with `Edge` as its whole middleware stack (no middleware or exception
    handlers of Starlette's: `Edge` does what they would)."""

    def __init__(
        self,
        *,
        routes: Sequence[BaseRoute],
        lifespan: Lifespan[App],
        cors: Cors,
        tracing: Tracing | None = None,
    ) -> None:
        super().__init__(routes=routes, lifespan=lifespan)
        self.cors = cors
        self.tracing = tracing or Tracing.off()

    def build_middleware_stack(self) -> ASGIApp:
        # With tracing on, a server span around the edge (web/tracing.py): the access line and
        # every other line of the request are written inside it, with its trace id.
        return self.tracing.asgi(Edge(ExactRoutes(self.router), self.cors))


class ExactRoutes:
    """The router, with its routes of one exact path and every method (ASGI apps: /graphql)
    found by a look-up in a dict: Starlette's router tries each route's regular expression
    in turn and wraps the call in three more, about 15 us of a 300 us lookup. Anything else
    (another route, a root path, a WebSocket) goes to the router as before. A route found so
    gets what the router would give it: the scope's router, endpoint and path parameters."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.exact = {
            route.path: route
            for route in router.routes
            if isinstance(route, Route) and route.methods is None and not route.param_convertors
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.exact.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope.get("root_path"):
            return await self.router(scope, receive, send)
        scope.setdefault("router", self.router)
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        return await route.app(scope, receive, send)
