"""The serving runtime: uvicorn with the edge protocol on uvloop, one process or WORKERS processes
on one socket, and a stop on SIGTERM or SIGINT that is a success."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors.multiprocess import Multiprocess

from web import metrics
from web.app import create_app
from web.logs import configure_logging
from web.settings import Settings, load_settings
from web.stopping import accept_queued
from web.timeouts import EdgeProtocol, edge_protocol

logger = logging.getLogger("customer_api")


class GracefulServer(uvicorn.Server):
    """uvicorn's server, with a stop on SIGTERM or SIGINT being a success.

    uvicorn stops gracefully (no new connections, in-flight requests get up to
    SHUTDOWN_GRACE_SECONDS, the rest are cancelled, the lifespan closes the pools) and then
    raises the signal again, so the process ends as killed (143) or with a KeyboardInterrupt
    traceback; a stop that went as asked exits 0 instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await accept_queued(self)  # their requests arrived before the signal: answered
        await super().shutdown(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        protocol = self.config.http_protocol_class
        logger.info(
            "HTTP protocol %s (%s)", getattr(protocol, "__name__", protocol), parser(protocol)
        )


WORKER_PROTOCOL = "web.timeouts:EdgeProtocol"  # uvicorn's `http=` in each worker process


def parser(protocol: object) -> str:
    """Which HTTP parser a uvicorn protocol class reads requests with."""
    if isinstance(protocol, type) and issubclass(protocol, HttpToolsProtocol):
        return "httptools"
    if isinstance(protocol, type) and issubclass(protocol, H11Protocol):
        return "h11"
    return "unknown"


def worker_app() -> Starlette:
    """The app of one worker process (WORKERS > 1): settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    EdgeProtocol.header_timeout = settings.header_timeout_seconds
    EdgeProtocol.max_head_bytes = settings.max_header_bytes
    return create_app(settings)


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT: one process, or WORKERS processes on one socket."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools, with the limits on the wire: uvicorn's own, plus a bound on and a
        # deadline for request heads (web/timeouts.py).
        "http": edge_protocol(settings.header_timeout_seconds, settings.max_header_bytes),
        "timeout_keep_alive": settings.idle_timeout_seconds,
        "limit_concurrency": settings.max_connections,
        "ws_max_size": settings.max_body_bytes,  # a WebSocket message is bounded like a body
        "lifespan": "on",
        "log_config": None,  # web/logs.py has set up the log
        "log_level": settings.log_level.lower(),
        # uvicorn's access log prints query strings, and a GET query's variables can hold an
        # e-mail; the edge's access log prints the path only.
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }
    if settings.workers == 1:
        GracefulServer(uvicorn.Config(create_app(settings), **options)).run()
        return
    # Each worker imports this module and builds its app from the same environment; the
    # metrics of all of them are added up through files in a directory of their own.
    with tempfile.TemporaryDirectory(prefix="customer-api-metrics-") as directory:
        os.environ[metrics.MULTIPROCESS_DIR] = directory
        # A worker gets its configuration pickled: the protocol goes by its import path, and
        # worker_app() gives it the head's deadline and bound.
        options["http"] = WORKER_PROTOCOL
        config = uvicorn.Config(
            "web.serving:worker_app",
            factory=True,
            workers=settings.workers,
            # A worker imports the whole app (the schema is built at import) before it can
            # answer the supervisor's first health ping; on a busy machine that takes more
            # than uvicorn's default 5 s, and the worker would be killed and restarted forever.
            timeout_worker_healthcheck=60,
            **options,
        )
        sock = config.bind_socket()
        host, port = sock.getsockname()[:2]
        logger.info("serving on http://%s:%s/graphql with %d workers", host, port, settings.workers)
        Multiprocess(config, sockets=[sock]).run()
