"""GraphQL over WebSocket (graphql-transport-ws): Strawberry's handler, with the key checked in
`connection_init`, a fresh context for every operation, refusals answered as the protocol
says, and heartbeats.

- `connection_init` carries `{"Authorization": "Bearer <key or token>"}`; the same
  `authenticate` as HTTP checks it (API keys and identity-provider tokens). Without a valid
  one the socket is closed with 4401 and nothing runs (a `subscribe` before the
  acknowledgement is closed with 4401 by Strawberry). When the provider's keys cannot be
  fetched, it is closed with 1013 (try again later).
- An operation the key's scopes do not allow gets an `error` message with the FORBIDDEN
  errors, as over HTTP, and the socket is closed with 4403.
- Every other refusal (limits, cost, a bad cursor) is an `error` message for that operation.
- The server sends a `ping` every `heartbeat_seconds`; graphql-ws clients answer `pong`.
- The credential stays checked while the socket lives: it is checked again every
  `credential_check_seconds` (an API key through the key cache, so a revocation made by any
  process reaches every socket within that plus KEY_CACHE_SECONDS), and a token also when it
  expires (its `exp` plus the leeway). A key that no longer passes closes the socket with
  4403, a token with 4401.
- Every message is parsed as request bodies are (web/body.py: 64 levels of nesting at most);
  one that is not such JSON, or not a message of the protocol, closes the socket with 4400.
- A database that cannot be reached closes the socket with 1013 (try again later, which
  graphql-ws clients retry; 1011 they do not): at `connection_init`, and when a subscription
  has waited out an outage as long as it may. Nothing of it raises to the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol, cast

import jwt
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import NonTextMessageReceived, WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    CompleteMessage,
    ConnectionInitMessage,
    Message,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from db.faults import fault_of
from db.keys import Principal
from db.tasks import cancel_and_wait
from schema.access import FORBIDDEN
from schema.context import Context
from schema.errors import SERVICE_UNAVAILABLE, raised_at
from web.auth import Unauthenticated, bearer_token
from web.body import BadJSON, parse_json
from web.rate_limits import RateLimiter, Throttled
from web.tokens import KeysUnavailable, looks_like_jwt

logger = logging.getLogger("customer_api.websocket")

# Close codes. graphql-ws clients retry 1013 and 4403 (access may come back), never 4400 or
# 4401; 1011 they treat as fatal, so a sick database is 1013.
BAD_MESSAGE = 4400
UNAUTHORIZED = 4401
FORBIDDEN_CLOSE = 4403
TRY_AGAIN_LATER = 1013


class SocketSettings(Protocol):
    """What the handler needs from the view that serves the socket."""

    heartbeat_seconds: float
    credential_check_seconds: float
    rate_limits: RateLimiter | None

    async def authenticate_connection(self, headers: Mapping[str, str]) -> Principal:
        """The principal of connection_init's headers; Unauthenticated when there is none."""
        ...

    def token_leeway_seconds(self) -> float:
        """How long after its `exp` a token is still accepted."""
        ...


# WebSocket close reasons may hold at most 123 bytes.
_REASON_BYTES = 123


def _reason(text: str) -> str:
    return text.encode()[:_REASON_BYTES].decode(errors="ignore")


class TextFrames(ASGIWebSocketAdapter):
    """Messages as text frames, as graphql-transport-ws requires (graphql-ws refuses binary
    ones), although the view encodes JSON to bytes; read as strict JSON within the bounds of
    a request body; a socket that is gone is WebSocketDisconnected, whoever closed it."""

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        try:
            while self.ws.application_state == WebSocketState.CONNECTED:
                text = await self.ws.receive_text()
                try:
                    message = parse_json(text)
                except BadJSON as error:
                    # web/body.py speaks of a request body; here it is a message.
                    said = str(error).replace("he request body", "he message")
                    await self.close(BAD_MESSAGE, _reason(said))
                    return
                yield message
        except KeyError as error:  # a binary frame: Starlette's message has no "text"
            raise NonTextMessageReceived from error
        except WebSocketDisconnect:
            return

    async def send_json(self, message: Mapping[str, object]) -> None:
        encoded = self.view.encode_json(message)
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        if self.ws.application_state != WebSocketState.CONNECTED:
            raise WebSocketDisconnected  # closed here (a close code sent, or shutting down)
        try:
            await self.ws.send_text(text)
        except (WebSocketDisconnect, OSError, RuntimeError) as error:
            # The client went away as this was sent (RuntimeError: the server's close raced it).
            raise WebSocketDisconnected from error

    async def close(self, code: int, reason: str) -> None:
        """Close with `code`, once: whichever part closes first (an operation, the credential
        check, the server's shutdown) says why."""
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                await self.ws.close(code=code, reason=reason)


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's graphql-transport-ws handler with authentication, scopes and heartbeats."""

    heartbeat: asyncio.Task[None] | None = None
    credential_watch: asyncio.Task[None] | None = None

    @property
    def settings(self) -> SocketSettings:
        return cast(SocketSettings, self.view)

    async def handle_message(self, message: Message) -> None:
        problem = malformed(message)
        if problem is not None:
            return await self.handle_invalid_message(problem)
        return await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_timed_out or self.connection_init_received:
            return await super().handle_connection_init(message)  # Strawberry's own answers
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            return await super().handle_connection_init(message)
        # Header names are case-insensitive: {"Authorization": ...} and {"authorization": ...}.
        headers = {str(k).lower(): v for k, v in payload.items() if isinstance(v, str)}
        refusal = None
        try:
            principal = await self.settings.authenticate_connection(headers)
        except Exception as error:
            refusal = refusal_of(error)
        if refusal is not None:
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            self.connection_init_received = True
            await self.websocket.close(*refusal)
            return None
        self.context.principal = principal
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            if self.settings.heartbeat_seconds > 0:
                self.heartbeat = asyncio.create_task(self._beat())
            watch = self._watch_credential(headers, principal)
            self.credential_watch = asyncio.create_task(watch)
        return None

    async def _watch_credential(self, headers: dict[str, str], principal: Principal) -> None:
        """Check the connection's credential again every `credential_check_seconds`, and a
        token at its expiry; close the socket once it no longer passes, or grants less."""
        token = bearer_token(headers)
        is_token = looks_like_jwt(token)
        expires = token_expiry(token, self.settings.token_leeway_seconds()) if is_token else None
        while True:
            await asyncio.sleep(self._next_check(expires))
            try:
                now = await self.settings.authenticate_connection(headers)
            except Unauthenticated as error:
                if is_token:
                    return await self._close(UNAUTHORIZED, f"Unauthorized: {error}")
                return await self._close(FORBIDDEN_CLOSE, f"Forbidden: {error}")
            except Exception:  # a sick database or provider: checked again next time
                if expires is not None and time.time() >= expires:  # but an expiry is known
                    return await self._close(UNAUTHORIZED, "Unauthorized: The token has expired.")
                continue
            if now != principal:
                return await self._close(
                    FORBIDDEN_CLOSE, "Forbidden: the credential's access has changed."
                )

    def _next_check(self, expires: float | None) -> float:
        wait = self.settings.credential_check_seconds
        if expires is not None and expires > time.time():
            # Just past the moment the verifier refuses it (exp + leeway <= now).
            wait = min(wait, expires - time.time() + 0.05)
        return wait

    async def _close(self, code: int, reason: str) -> None:
        await self.websocket.close(code, _reason(reason))

    async def _beat(self) -> None:
        with contextlib.suppress(Exception):  # the socket is gone: the handler is ending too
            while True:
                await asyncio.sleep(self.settings.heartbeat_seconds)
                await self.send_message({"type": "ping"})

    async def shutdown(self) -> None:
        for task in (self.heartbeat, self.credential_watch):
            if task is not None:
                await cancel_and_wait(task)
        await super().shutdown()

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # A document the principal may not send (web/persisted.py's policy): refused as over
        # HTTP, so a socket is no way around TOKEN_DOCUMENTS=known.
        documents = getattr(self.view, "documents", None)
        if documents is not None and (
            refused := documents.refusal(operation.query, self.context.principal)
        ):
            error = GraphQLError(str(refused), extensions={"code": refused.code})
            await operation.send_initial_errors([error])
            return
        # Strawberry's, with a context of the operation's own: loaders cache rows, and a
        # connection lives long; the principal is the connection's. Each operation's cost is
        # drawn when it starts (a subscription's once), as over HTTP: web/rate_limits.py.
        try:
            throttle_status = await self.admit(operation)
        except Throttled as refusal:
            extensions = {"code": refusal.code, "retryAfter": refusal.retry_after}
            await operation.send_initial_errors([GraphQLError(str(refusal), extensions=extensions)])
            return
        try:
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=dataclasses.replace(self.context, throttle_status=throttle_status),
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(result_source):
                await self._send_result_stream(operation, result_source)
            await operation.send_operation_message(
                CompleteMessage(id=operation.id, type="complete")
            )
        except (_Closed, _OperationStreamClosed, WebSocketDisconnected):
            return  # the socket is closed: nobody is left to tell
        except Exception as error:
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise

    async def admit(self, operation: Operation[Context, None]) -> dict[str, object] | None:
        """The operation's throttleStatus once its cost is drawn; Throttled if it does not fit."""
        limiter, principal = self.settings.rate_limits, self.context.principal
        if limiter is None or principal is None:
            return None
        query, name, variables = operation.query, operation.operation_name, operation.variables
        return await limiter.admit(principal, query, name, variables)

    async def _send_result_stream(self, operation: Operation[Context, None], source: Any) -> None:
        first = True
        async for result in source:
            if first and isinstance(result, PreExecutionError):
                await self._handle_pre_execution_error(operation, result)
                return
            if (
                isinstance(result, ExecutionResult)
                and unavailable(result)
                and is_subscription(operation)
            ):
                # The subscription waited out the outage as long as it may (schema/events.py),
                # at its start or later: closed with a code clients reconnect on, to resume
                # from their last cursor, rather than an error that they would not retry.
                await self._close(TRY_AGAIN_LATER, "Try again later: the database is unavailable")
                raise _Closed
            if first and isinstance(result, ExecutionResult) and refused(result):
                # Refused before it ran: an `error` message, as the protocol has it.
                assert result.errors is not None
                await operation.send_initial_errors(result.errors)
                forbidden = [
                    e for e in result.errors if (e.extensions or {}).get("code") == FORBIDDEN
                ]
                if forbidden:
                    await self.websocket.close(4403, _reason(f"Forbidden: {forbidden[0].message}"))
                    raise _Closed
                return
            if not isinstance(result, ExecutionResult):
                await self._reject_incremental_delivery(operation)
                return
            await operation.send_next(result)
            first = False


class _Closed(Exception):
    """The socket was closed while an operation was refused."""


def refused(result: ExecutionResult) -> bool:
    """True when the operation never ran: no data, and errors."""
    return result.data is None and bool(result.errors)


def unavailable(result: ExecutionResult) -> bool:
    """True when an error of the result is the database's being unavailable."""
    return any((e.extensions or {}).get("code") == SERVICE_UNAVAILABLE for e in result.errors or ())


def is_subscription(operation: Operation[Context, None]) -> bool:
    """Whether the operation is a subscription (its document ran, so it parses)."""
    try:
        document = parse(operation.query, no_location=True)
    except GraphQLError:
        return False
    found = get_operation_ast(document, operation.operation_name)
    return found is not None and found.operation == OperationType.SUBSCRIPTION


def refusal_of(error: Exception) -> tuple[int, str]:
    """The close code and reason for a connection_init whose credential could not be checked:
    4401 for a bad credential (whatever the checks raised), 1013 when the server cannot check
    it now (its database, or the provider's keys, unavailable)."""
    if isinstance(error, Unauthenticated):
        return UNAUTHORIZED, _reason(f"Unauthorized: {error}")
    if isinstance(error, KeysUnavailable):
        return TRY_AGAIN_LATER, "Try again later: tokens cannot be checked now"
    if fault_of(error) is not None:
        return TRY_AGAIN_LATER, "Try again later: the database is unavailable"
    # Not a check's refusal: a credential the checks did not expect. Refused all the same;
    # the log says where (never the message, which may quote the credential).
    logger.warning(
        "a WebSocket credential could not be checked (%s at %s:%d); closed with 4401",
        type(error).__name__,
        *raised_at(error),
    )
    return UNAUTHORIZED, "Unauthorized: the credential could not be read."


def token_expiry(token: str, leeway: float) -> float | None:
    """When (Unix time) a verified token stops being accepted: its `exp` plus the leeway."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp) + leeway
    return None


_OPTIONAL_OBJECT = (dict, type(None))
_OPTIONAL_TEXT = (str, type(None))


def malformed(message: object) -> str | None:
    """What is wrong with a message's shape (Strawberry reads its fields as given), or None."""
    if not isinstance(message, dict):
        return "A message must be a JSON object."
    kind = message.get("type")
    if not isinstance(kind, str):
        return "A message's type must be a string."
    if kind in ("subscribe", "complete") and not isinstance(message.get("id"), str):
        return f"A {kind} message's id must be a string."
    if kind != "subscribe":
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "A subscribe message's payload must be an object with the query as a string."
    if not isinstance(payload.get("variables"), _OPTIONAL_OBJECT):
        return "A subscribe message's variables must be an object or null."
    if not isinstance(payload.get("extensions"), _OPTIONAL_OBJECT):
        return "A subscribe message's extensions must be an object or null."
    if not isinstance(payload.get("operationName"), _OPTIONAL_TEXT):
        return "A subscribe message's operationName must be a string or null."
    return None
