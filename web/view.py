"""The GraphQL view: Strawberry's ASGI app with authentication first (from the headers, before
any body is read), a body read within a deadline and parsed as strict JSON, and GraphQL over
HTTP's status codes for clients that ask for application/graphql-response+json."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from cross_web import HTTPException, StarletteRequestAdapter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from db.keys import Principal
from db.tasks import Deadlines
from schema import Schema, ftv1
from schema.analysis import Admission, admission
from schema.compiled.gate import Gate, Inbound
from schema.context import AppState, Context
from schema.errors import INTERNAL_ERROR, SERVICE_UNAVAILABLE
from web.auth import ApiKeys, Unauthenticated, authenticate, unauthenticated
from web.body import BadJSON, Body, BodyTimeout, parse_json, read_body
from web.persisted import Documents, resolved_of
from web.rate_limits import RateLimiter, Throttled, cost_of
from web.refusals import (
    GRAPHQL_RESPONSE,
    PERSISTED_QUERY_NOT_SUPPORTED_MESSAGE,
    REQUEST_TIMEOUT,
    refusal,
    refusal_of_reason,
)
from web.requests import request_info
from web.tokens import KeysUnavailable, TokenVerifier
from web.tracing import Tracing
from web.websocket import TextFrames, TransportWSHandler

STATIC = Path(__file__).resolve().parent.parent / "static"
# The page's scripts and styles, served as files. The page itself lies outside it: it is served
# only by the view, with GRAPHIQL_POLICY, so no copy of it is reachable without the policy.
GRAPHIQL = STATIC / "graphiql"
# The explorer page may load and call nothing but this server: the browser enforces it.
GRAPHIQL_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "font-src 'self' data:; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def accepts_graphql_response(headers: Mapping[str, str]) -> bool:
    """Whether the Accept header allows application/graphql-response+json (q above 0)."""
    for item in headers.get("accept", "").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() == "application/graphql-response+json":
            return not any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00") for p in params)
    return False


def refused(result: ExecutionResult) -> bool:
    """True when the request never ran: no data, and no error points at a field."""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(not error.path for error in errors)


UNAVAILABLE = "unavailable"
SUBSCRIPTIONS_STREAM = (
    "Subscriptions are served over WebSocket (graphql-transport-ws) at this path, not as "
    "one HTTP answer."
)


def outcome_of(result: ExecutionResult, processed: GraphQLHTTPResponse) -> str:
    """ok, user_error (userErrors or a readable error), refused (never ran), error (masked),
    or unavailable (the database is sick: SERVICE_UNAVAILABLE)."""
    if refused(result):
        return "refused"
    errors: list[dict[str, Any]] = list(processed.get("errors") or ())  # type: ignore[arg-type]
    return outcome_of_answer(errors, result.data)


def outcome_of_answer(errors: list[dict[str, Any]], data: dict[str, Any] | None) -> str:
    """The outcome of an operation that ran, from its formatted errors and its data."""
    codes = {(e.get("extensions") or {}).get("code") for e in errors}
    if SERVICE_UNAVAILABLE in codes:
        return UNAVAILABLE
    if INTERNAL_ERROR in codes:
        return "error"
    return "user_error" if codes else outcome_of_data(data)


def outcome_of_data(data: dict[str, Any] | None) -> str:
    """user_error when a mutation's payload reports userErrors, else ok."""
    if any(
        isinstance(payload, dict) and payload.get("userErrors") for payload in (data or {}).values()
    ):
        return "user_error"
    return "ok"


def sent(request: Request) -> tuple[object, object, object]:
    """The query, operationName and variables a request sends, as far as they can be read
    (anything else is left to the executors to refuse: it then costs nothing, and the
    compiled path declines it). A persisted document, once resolved into
    `request.state.persisted` (web/persisted.py), is that."""
    persisted = getattr(request.state, "persisted", None)
    if isinstance(persisted, Mapping):
        return persisted.get("query"), persisted.get("operationName"), persisted.get("variables")
    if request.method == "GET":
        params = request.query_params
        variables: object = None
        if text := params.get("variables"):
            try:
                variables = parse_json(text)
            except BadJSON:
                return None, None, None
        return params.get("query"), params.get("operationName"), variables
    try:
        parsed = request.state.body.json()
    except (ValueError, AttributeError):
        return None, None, None
    if not isinstance(parsed, Mapping):
        return None, None, None  # a batch: refused
    return parsed.get("query"), parsed.get("operationName"), parsed.get("variables")


class ReadRequest(StarletteRequestAdapter):
    """A request as Strawberry reads it, with the body the view read (a `Body`, which keeps
    its JSON value once the compiled path's gate parsed it)."""

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self.starlette = request

    async def get_body(self) -> bytes:
        body: bytes | None = getattr(self.starlette.state, "body", None)
        return await super().get_body() if body is None else body


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view, with a fresh context (and loaders) for every request."""

    def __init__(
        self,
        schema: Schema,
        state: AppState,
        *,
        body_timeout: float,
        tokens: TokenVerifier | None = None,
        key_cache_seconds: float = 5.0,
        heartbeat_seconds: float = 15,
        credential_check_seconds: float = 5,
        max_subscriptions_per_connection: int = 10,
        compiled: Gate | None = None,
        traces: ftv1.Policy = "api_keys",
        tracing: Tracing | None = None,
        documents: Documents | None = None,
        rate_limits: RateLimiter | None = None,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            # graphql-transport-ws only (what graphql-ws, Apollo Client and urql speak): one
            # path through authentication. Any origin may connect: the key travels in
            # connection_init, never in a cookie, so a page has no ambient credential to abuse.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            max_subscriptions_per_connection=max_subscriptions_per_connection,
            allowed_origins=("*",),
        )
        self.graphql_transport_ws_handler_class = TransportWSHandler
        self.websocket_adapter_class = TextFrames
        self.state = state  # what every request's Context shares
        self.analyser = schema.analyser  # each document's analysis, cached (schema/analysis.py)
        self.heartbeat_seconds = heartbeat_seconds
        self.credential_check_seconds = credential_check_seconds
        self.keys = ApiKeys(state.db, state.clock, key_cache_seconds)
        self.body_timeout = body_timeout
        self.deadlines = Deadlines()  # the bodies' (db/tasks.py: one timer for all of them)
        self.tokens = tokens  # None: API keys only
        self.graphiql_page = (STATIC / "graphiql.html").read_text()  # read once, not per request
        self.compiled = compiled  # None: graphql-core answers every request
        self.traces = traces  # who may have federated traces (schema/ftv1)
        self.tracing = tracing or Tracing.off()
        self.documents = documents  # persisted documents (web/persisted.py); None: none
        self.rate_limits = rate_limits  # None: no request is metered

    request_adapter_class = ReadRequest

    @property
    def compiled_answers(self) -> int:
        """The requests the compiled path answered (for tests and metrics)."""
        return 0 if self.compiled is None else self.compiled.answers

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL from the pinned copies in static/graphiql: no CDN, no other host."""
        return HTMLResponse(
            self.graphiql_page, headers={"content-security-policy": GRAPHIQL_POLICY}
        )

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET with extensions and no query names a persisted document (Apollo's link sends
        # its hashed reads so): it wants an answer, not the page.
        extensions = request.query_params.get("extensions")
        return extensions is None and super().should_render_graphql_ide(request)

    async def get_context(self, request: Any, response: Any) -> Context:
        context = Context(
            self.state,
            principal=getattr(request.state, "principal", None),
            throttle_status=getattr(request.state, "throttle_status", None),
        )
        request.state.context = context
        return context

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def authenticate_connection(self, headers: Mapping[str, str]) -> Principal:
        """A WebSocket's credential, from its connection_init payload, checked as over HTTP
        (an API key or an identity provider's token)."""
        return await authenticate(self.keys, headers, self.tokens)

    def token_leeway_seconds(self) -> float:
        """How long after its `exp` a token is still accepted (web/websocket.py's expiry)."""
        return 0.0 if self.tokens is None else self.tokens.settings.leeway_seconds

    # GraphQL over HTTP: a client that accepts application/graphql-response+json gets it, and
    # with it status codes that tell a request the server refused (400: the document does not
    # parse or validate, or its variables do not coerce; no `data` entry) from one it ran.
    # Clients that ask only for application/json keep the 200s they were written against.

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        if isinstance(request, Request) and accepts_graphql_response(request.headers):
            sub_response.headers["content-type"] = GRAPHQL_RESPONSE
        request.state.sub_response = sub_response
        return sub_response

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        processed = await super().process_result(request, result)
        sub_response: Response = request.state.sub_response
        outcome = outcome_of(result, processed)
        if sub_response.headers.get("content-type") == GRAPHQL_RESPONSE:
            if outcome == "refused":
                processed.pop("data", None)
                sub_response.status_code = 400
            elif outcome == UNAVAILABLE:
                sub_response.status_code = 503
        if info := request_info():
            operation = request.state.context.operation
            info.operation_type = operation.type
            info.operation_name = operation.name if operation.type else None
            info.outcome = "error" if outcome == UNAVAILABLE else outcome
        return processed

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        if media_type := sub_response.headers.get("content-type"):
            response.headers["content-type"] = media_type  # replaces the default JSON one
        return response

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as error:
            refused = error.__cause__
            if isinstance(refused, InvalidOperationTypeError):
                if refused.operation_type is OperationType.SUBSCRIPTION:
                    raise HTTPException(400, SUBSCRIPTIONS_STREAM) from error
                # A mutation over GET: the method is what is wrong, so 405, as the spec asks.
                raise HTTPException(405, "Mutations are sent with POST, not GET.") from error
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        request = Request(with_lowercase_media_type(scope), receive)
        graphql_response = accepts_graphql_response(request.headers)
        principal: Principal | None = None
        response: Response | JSONAnswer | None
        try:
            # The GraphiQL page holds no data and loads without a key: the key goes into its
            # headers editor. Everything else needs one, checked before a byte of the body is
            # read: a client without a key never gets the server to hold its upload.
            page = request.method == "GET" and self.should_render_graphql_ide(
                self.request_adapter_class(request)
            )
            if not page:
                principal = await authenticate(self.keys, request.headers, self.tokens)
                request.state.principal = principal
                if info := request_info():
                    info.principal = principal.actor
            request.state.body = await read_body(request, self.body_timeout, self.deadlines)
            trace = ftv1.requested(request.headers, principal, self.traces)
            with self.tracing.operation() as operation:  # web/tracing.py: a span, when on
                # A persisted document is put in the request first: its cost is the document's.
                response = self.answer_persisted(request, principal, graphql_response)
                admitted = None
                if response is None and principal is not None:
                    # Analysed and priced once, for the rate limit and the compiled path.
                    admitted = admission(self.analyser, principal.scopes, *sent(request))
                    if self.rate_limits is not None:  # its cost drawn, or Throttled
                        status = await self.rate_limits.draw(principal, cost_of(admitted))
                        request.state.throttle_status = status
                if response is None:
                    response = await self.answer_compiled(
                        request, principal, graphql_response, trace, admitted
                    )
                    operation.compiled = response is not None
                if response is None:
                    with ftv1.recording(trace):
                        response = await self.run(request)
        except Unauthenticated as error:
            response = unauthenticated(str(error))
            if info := request_info():
                info.outcome = "refused"
        except KeysUnavailable as error:
            response = error.response()
        except Throttled as error:
            response = error.response(graphql_response)
            if info := request_info():
                info.outcome = "refused"
        except BodyTimeout as error:
            close = {"connection": "close"}
            response = refusal(408, str(error), REQUEST_TIMEOUT, headers=close)
        except ClientDisconnect:
            return None  # nobody is left to answer
        except HTTPException as error:
            if info := request_info():
                info.outcome = "refused"
            response = refusal_of_reason(
                error.status_code, error.reason, graphql_response=graphql_response
            )
        await response(scope, receive, send)
        return None

    def answer_persisted(
        self, request: Request, principal: Principal | None, graphql_response: bool
    ) -> Response | None:
        """A persisted document's refusal (or PERSISTED_QUERY_NOT_FOUND), or None with the
        document it names put in the request for either path to run (web/persisted.py)."""
        if self.documents is None:
            return None
        return self.documents.answer(request, principal, self.parse_query_params, graphql_response)

    async def answer_compiled(
        self,
        request: Request,
        principal: Principal | None,
        graphql_response: bool,
        trace: ftv1.Recorder | None = None,
        admitted: Admission | None = None,
    ) -> JSONAnswer | None:
        """The compiled path's answer, or None for Strawberry to answer: the gate
        (schema/compiled/gate.py) decides, from the request as plain values."""
        if self.compiled is None:
            return None
        headers = request.headers
        # Which streaming transport a request wants is Strawberry's to say (Apollo Client asks
        # for multipart/mixed with deferSpec, no transport, on every query); the two media
        # types a transport takes are looked for first.
        accept = headers.get("accept", "").lower()
        streams = ("multipart/mixed" in accept or "text/event-stream" in accept) and (
            self._get_stream_transport_from_headers(headers) is not None
        )
        inbound = Inbound(
            method=request.method,
            # As Strawberry reads it (lower case already: with_lowercase_media_type).
            media_type=headers.get("content-type", "").partition(";")[0],
            streams=streams,
            body=request.state.body,
            principal=principal,
            trace=trace,
            admitted=admitted,
        )
        if self.documents is not None and (read := self.documents.read_by_get(request)):
            # A persisted query by GET (Apollo's link sends its reads so): the same POST's.
            inbound = dataclasses.replace(
                inbound, method="POST", media_type="application/json", body=read
            )
        answered = await self.compiled.try_answer(inbound)
        if answered is None:
            return None
        payload = answered.payload
        payload["extensions"]["cost"]["throttleStatus"] = getattr(
            request.state, "throttle_status", None
        )
        outcome = outcome_of_answer(payload.get("errors") or [], payload["data"])
        if info := request_info():
            info.operation_type, info.operation_name = answered[1:]
            info.outcome = "error" if outcome == UNAVAILABLE else outcome
        if not graphql_response:
            return JSONAnswer(self.encode_json(payload), 200, _JSON)
        return JSONAnswer(
            self.encode_json(payload), 503 if outcome == UNAVAILABLE else 200, _GRAPHQL_RESPONSE
        )

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        resolved = resolved_of(request.starlette)
        if resolved is not None and request.method == "GET":  # a POST's is in its body
            transport = self._get_stream_transport_from_headers(request.headers)
            return GraphQLRequestData(
                query=resolved["query"],
                variables=resolved.get("variables"),
                operation_name=resolved.get("operationName"),
                extensions=resolved.get("extensions"),
                protocol=transport.protocol if transport else "http",
            )
        data = await super().parse_http_body(request)
        # An Apollo persisted-queries link sends a document's hash alone first: without a
        # store of documents, this server says so in the code the link backs off on.
        if (
            isinstance(data, GraphQLRequestData)
            and data.query is None
            and isinstance((data.extensions or {}).get("persistedQuery"), dict)
        ):
            raise HTTPException(400, PERSISTED_QUERY_NOT_SUPPORTED_MESSAGE)
        return data

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        """A GET's parameters: `variables` and `extensions` as strict JSON, each an object or
        null (as a POST's may be), else a 400 that names the parameter."""
        parsed = dict(params)
        for name in ("variables", "extensions"):
            if parsed.get(name):
                try:
                    value = parse_json(parsed[name])
                except BadJSON as error:  # its message is about a body: said of the parameter
                    message = str(error).replace("The request body", f"The {name} parameter", 1)
                    raise HTTPException(400, message) from None
                if not isinstance(value, dict | None):
                    raise HTTPException(400, f"The {name} parameter must be a JSON object or null.")
                parsed[name] = value
        return parsed

    def parse_json(self, data: str | bytes) -> Any:
        try:
            # A body the gate parsed is not parsed again (ReadRequest hands Strawberry it).
            parsed = data.json() if isinstance(data, Body) else parse_json(data)
        except BadJSON as error:
            raise HTTPException(400, str(error)) from None
        # Strawberry reads fields off whatever the JSON was; anything but an object (or a
        # batch, which it checks itself) would reach it as a str or int and raise a 500.
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "The request body must be a JSON object.")
        return parsed


_JSON = b"application/json"
_GRAPHQL_RESPONSE = GRAPHQL_RESPONSE.encode()


class JSONAnswer:
    """An answer of JSON bytes, with the status and headers Starlette's Response would send
    (Content-Length, then Content-Type), without building its header object: the compiled
    path answers every request so."""

    __slots__ = ("body", "media_type", "status")

    def __init__(self, body: bytes, status: int, media_type: bytes) -> None:
        self.body = body
        self.status = status
        self.media_type = media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"%d" % len(self.body)), (b"content-type", self.media_type)]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def with_lowercase_media_type(scope: Scope) -> Scope:
    """The scope with its Content-Type's media type in lower case: media types are
    case-insensitive (RFC 9110), and Strawberry compares them as written. Parameters (a
    multipart boundary) keep their case."""
    for name, value in scope["headers"]:
        if name == b"content-type" and not value.partition(b";")[0].islower():
            break  # (digits and punctuation alone are not lower case: copied, harmlessly)
    else:
        return scope  # as it is, nearly always: not copied
    headers = []
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type, separator, parameters = value.partition(b";")
            value = media_type.lower() + separator + parameters
        headers.append((name, value))
    return {**scope, "headers": headers}
