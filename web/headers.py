"""Headers every response carries: its type is what it says, and nothing keeps a copy.

Responses hold personal data; `no-store` keeps it out of browser and proxy caches, and
`nosniff` stops a browser from reading a JSON or text answer as something it could run.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = ((b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"))


class SecurityHeaders:
    """ASGI middleware adding HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                added = [(name, value) for name, value in HEADERS if name not in present]
                message = {**message, "headers": [*message.get("headers", ()), *added]}
            await send(message)

        await self.app(scope, receive, sending)
        return None
