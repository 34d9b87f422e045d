"""One access-log line a request: method, path (never the query string), status and time."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("customer_api.access")

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: a decoded path
# (%0a, %1b) would otherwise forge log lines or write terminal escape sequences. The
# backslash is escaped too, so that an escape in the log always means an escaped character.
_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
} | {ord("\\"): "\\\\"}


def printable(text: str) -> str:
    """`text` with control characters written as escapes: safe on one log line."""
    return text.translate(_ESCAPES)


class AccessLog:
    """ASGI middleware writing the line when the response is done (or the app fails)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            elapsed = (time.perf_counter() - began) * 1000
            method, path = printable(scope["method"]), printable(scope["path"])
            access_logger.info("%s %s %d %.1fms", method, path, status, elapsed)
        return None
