"""A small graphql-transport-ws client for tests, and the app served by uvicorn in-process.

Subscriptions need a real WebSocket: httpx's ASGI transport speaks HTTP only, so these tests
serve the app on 127.0.0.1 (port 0) inside the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """The app on a free port of 127.0.0.1 until the block ends; yields its ws:// URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task


class Socket:
    """One graphql-transport-ws connection."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, within: float = 10) -> dict[str, Any]:
        """The next message other than a ping (pings are answered, as clients do)."""
        while True:
            async with asyncio.timeout(within):
                raw = await self.connection.recv()
            message: dict[str, Any] = json.loads(raw)
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            return message

    async def init(self, key: str | None) -> dict[str, Any]:
        payload = {} if key is None else {"Authorization": f"Bearer {key}"}
        await self.send({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        payload = {"query": query, "variables": variables or {}}
        await self.send({"type": "subscribe", "id": id, "payload": payload})

    async def closed(self, within: float = 10) -> tuple[int | None, str | None]:
        """Wait for the server to close the socket; its code and reason."""
        try:
            async with asyncio.timeout(within):
                while True:
                    await self.connection.recv()
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                return None, None
            return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError("unreachable")


@asynccontextmanager
async def socket(url: str) -> AsyncIterator[Socket]:
    async with connect(url, subprotocols=[PROTOCOL]) as connection:  # type: ignore[list-item]
        yield Socket(connection)
