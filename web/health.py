"""`GET /healthz` (the process answers) and `GET /readyz` (it can serve: the database answers
in time and its schema is at the latest migration). Neither needs a key; neither says more
than ok or why not: no versions, no data."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db import migrate
from db.engine import Database

logger = logging.getLogger("customer_api.health")

NO_STORE = {"cache-control": "no-store"}


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


def readyz_route(db: Database, timeout: float) -> Callable[[Request], Awaitable[Response]]:
    """The readiness check, bounded by `timeout` seconds."""
    head = migrate.head_revision()

    async def readyz(_request: Request) -> Response:
        try:
            async with asyncio.timeout(timeout):
                revision = await migrate.current_revision(db)
        except Exception as error:
            logger.warning("not ready: the database did not answer (%s)", type(error).__name__)
            return not_ready(
                f"The database did not answer (unreachable, or slower than {timeout:g} s)."
            )
        if revision != head:
            return not_ready("The database schema is not at the latest migration.")
        return JSONResponse({"status": "ready"}, headers=NO_STORE)

    return readyz


def not_ready(reason: str) -> Response:
    body = {"status": "unavailable", "reason": reason}
    return JSONResponse(body, status_code=503, headers={**NO_STORE, "retry-after": "5"})
