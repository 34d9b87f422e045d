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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, cast

from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    CompleteMessage,
    ConnectionInitMessage,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from db.keys import Principal
from db.tasks import cancel_and_wait
from schema.access import FORBIDDEN
from schema.context import Context
from web.auth import Unauthenticated
from web.tokens import KeysUnavailable


class SocketSettings(Protocol):
    """What the handler needs from the view that serves the socket."""

    heartbeat_seconds: float

    async def authenticate_connection(self, headers: Mapping[str, str]) -> Principal:
        """The principal of connection_init's headers; Unauthenticated when there is none."""
        ...


# WebSocket close reasons may hold at most 123 bytes.
_REASON_BYTES = 123


def _reason(text: str) -> str:
    return text.encode()[:_REASON_BYTES].decode(errors="ignore")


class TextFrames(ASGIWebSocketAdapter):
    """Messages as text frames, as graphql-transport-ws requires (graphql-ws refuses binary
    ones), although the view encodes JSON to bytes."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        encoded = self.view.encode_json(message)
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        try:
            await self.ws.send_text(text)
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's graphql-transport-ws handler with authentication, scopes and heartbeats."""

    heartbeat: asyncio.Task[None] | None = None

    @property
    def settings(self) -> SocketSettings:
        return cast(SocketSettings, self.view)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_timed_out or self.connection_init_received:
            return await super().handle_connection_init(message)  # Strawberry's own answers
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            return await super().handle_connection_init(message)
        # Header names are case-insensitive: {"Authorization": ...} and {"authorization": ...}.
        headers = {str(k).lower(): v for k, v in payload.items() if isinstance(v, str)}
        try:
            principal = await self.settings.authenticate_connection(headers)
        except (Unauthenticated, KeysUnavailable) as error:
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            self.connection_init_received = True
            if isinstance(error, KeysUnavailable):
                # The provider's keys cannot be had now: the server's trouble, not the token's
                # (1013: try again later; graphql-ws clients retry it).
                await self.websocket.close(1013, "Try again later: tokens cannot be checked now")
            else:
                await self.websocket.close(4401, _reason(f"Unauthorized: {error}"))
            return None
        self.context.principal = principal
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self.settings.heartbeat_seconds > 0:
            self.heartbeat = asyncio.create_task(self._beat())
        return None

    async def _beat(self) -> None:
        with contextlib.suppress(Exception):  # the socket is gone: the handler is ending too
            while True:
                await asyncio.sleep(self.settings.heartbeat_seconds)
                await self.send_message({"type": "ping"})

    async def shutdown(self) -> None:
        if self.heartbeat is not None:
            await cancel_and_wait(self.heartbeat)
        await super().shutdown()

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # Strawberry's, with a context of the operation's own: loaders cache rows, and a
        # connection lives long; the principal is the connection's.
        try:
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=dataclasses.replace(self.context),
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(result_source):
                await self._send_result_stream(operation, result_source)
            await operation.send_operation_message(
                CompleteMessage(id=operation.id, type="complete")
            )
        except (_Closed, _OperationStreamClosed):
            return
        except Exception as error:
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise

    async def _send_result_stream(self, operation: Operation[Context, None], source: Any) -> None:
        first = True
        async for result in source:
            if first and isinstance(result, PreExecutionError):
                await self._handle_pre_execution_error(operation, result)
                return
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
