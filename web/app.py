"""The ASGI app: its routes, and the lifespan that resolves the secrets, builds the one frozen
application state (schema.context.AppState) with the view over it, and starts and stops the
background jobs."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from db import migrate, server_secrets
from db.engine import Database
from db.feed import FeedSignal
from db.models import utc_now
from schema import build_schema
from schema.analysis import Analyser
from schema.compiled import CompiledPath
from schema.compiled.gate import Gate
from schema.context import AppState, Clock
from schema.limits import Limits
from web import metrics
from web.body import BodyLimit
from web.bootstrap import bootstrap_key
from web.cors import Cors
from web.edge import App
from web.health import healthz, readyz_route
from web.jobs import sweep_forever
from web.persisted import Documents, Policies, read_manifest
from web.rate_limits import rate_limiter
from web.settings import Settings, open_database
from web.tokens import TokenVerifier
from web.tracing import Tracing, tracing_of
from web.view import GRAPHIQL, GraphQLView
from web.webhooks import DeliveryWorker

logger = logging.getLogger("customer_api")

# The stop after the last request is bounded as a whole, well inside the 5 s that process
# managers and test harnesses (asgi-lifespan) commonly give a lifespan's shutdown: background
# work has STOP_SECONDS - CLOSE_SECONDS to end, and the database connections what is left (at
# least CLOSE_SECONDS) to close; those still open then are terminated.
STOP_SECONDS = 3.5
CLOSE_SECONDS = 1.5


async def cursor_secret(db: Database, settings: Settings, clock: Clock) -> bytes:
    """The key that signs cursors: the setting's, else the one stored in the database."""
    if settings.cursor_secret is not None:
        text = settings.cursor_secret.get_secret_value()
    else:
        text = await server_secrets.shared_secret(db, "cursor", clock())
    return hashlib.sha256(text.encode()).digest()


async def app_state(db: Database, settings: Settings, clock: Clock) -> AppState:
    """The application's state, its secrets resolved (the database is migrated by now)."""
    feed = FeedSignal(
        db,
        poll_seconds=settings.event_poll_seconds,
        max_subscriptions=settings.max_subscriptions,
        max_per_holder=settings.max_subscriptions_per_principal,
        outage_seconds=settings.subscription_outage_seconds,
    )
    return AppState(
        db=db,
        clock=clock,
        environment=settings.environment,
        kyc_ttl=settings.kyc_ttl,
        cursor_secret=await cursor_secret(db, settings, clock),
        feed=feed,
        webhooks=settings.webhooks(),
    )


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_directives=settings.max_directives,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_cost,
        max_comparisons=settings.max_field_comparisons,
    )


def persisted_documents(
    analyser: Analyser, settings: Settings, compiled: Gate | None = None
) -> Documents:
    """The store of persisted documents, the manifest's registered (and compiled) now;
    ManifestProblem when it cannot be used (web/startup.py checks before serving)."""
    path = settings.trusted_documents_file
    return Documents(
        analyser,
        manifest=None if path is None else read_manifest(path),
        policies=Policies(settings.api_key_documents, settings.token_documents),
        apq_entries=settings.apq_cache_entries,
        apq_characters=settings.apq_cache_characters,
        compile_plan=None if compiled is None else compiled.path.plan,
    )


def graphql_view(
    state: AppState, settings: Settings, tracing: Tracing | None = None
) -> GraphQLView:
    """GraphQL over HTTP and WebSocket, with the compiled path when the settings want it."""
    schema = build_schema(limits_of(settings), introspection=settings.introspection)
    compiled = None
    if settings.compiled_path:
        compiled = Gate(CompiledPath(schema.analyser, schema._schema, state))
    redis_url = settings.rate_limit_redis_url
    rate_limits = rate_limiter(
        schema.analyser,
        state.clock,
        max_cost=settings.rate_limit_max_cost,
        restore_rate=settings.rate_limit_restore_rate,
        redis_url=None if redis_url is None else redis_url.get_secret_value(),
        redis_prefix=settings.rate_limit_redis_prefix,
        redis_timeout=settings.rate_limit_redis_timeout_seconds,
    )
    return GraphQLView(
        schema,
        state,
        body_timeout=settings.body_timeout_seconds,
        tokens=None if settings.tokens is None else TokenVerifier(settings.tokens),
        key_cache_seconds=settings.key_cache_seconds,
        heartbeat_seconds=settings.ws_heartbeat_seconds,
        credential_check_seconds=settings.ws_credential_check_seconds,
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        compiled=compiled,
        traces=settings.ftv1_traces,
        tracing=tracing,
        documents=persisted_documents(schema.analyser, settings, compiled),
        rate_limits=rate_limits,
    )


class Started:
    """The route of an ASGI app that the lifespan makes (the view: it needs the secrets).
    uvicorn sends nothing before the lifespan has started; anything else gets 503."""

    def __init__(self) -> None:
        self.app: GraphQLView | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is not None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1013})  # try again later
        return await PlainTextResponse("The server is starting.", 503)(scope, receive, send)


async def stop_within(tasks: Sequence[asyncio.Task[Any]], seconds: float) -> None:
    """Wait up to `seconds` for `tasks` to end; log (and leave) those that do not, with where
    each one was."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in pending:
        where = io.StringIO()
        task.print_stack(limit=8, file=where)
        logger.warning(
            "%s did not stop within %g s; exiting without it\n%s",
            task.get_name(),
            seconds,
            where.getvalue().rstrip(),
        )


def create_app(
    settings: Settings | None = None, clock: Clock = utc_now, tracing: Tracing | None = None
) -> Starlette:
    """The ASGI app: /graphql serves the API (and GraphiQL to a browser). Traces as the
    OTEL_* settings say, unless `tracing` is given (tests: an in-memory exporter)."""
    settings = settings or Settings()
    db = open_database(settings)
    tracing = tracing or tracing_of(settings)
    tracing.watch(db)
    graphql = Started()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await migrate.upgrade(db)
        await bootstrap_key(db, clock, settings.bootstrap_key_file)
        state = await app_state(db, settings, clock)
        view = graphql.app = app.state.view = graphql_view(state, settings, tracing)
        metrics.watch_pool(db.pool_status)
        logger.info(
            "serving with the %s event loop and orjson",
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        tasks = []
        if settings.kyc_sweep_interval_seconds > 0:
            sweep = sweep_forever(db, settings, clock)
            tasks.append(asyncio.create_task(sweep, name="the expiry sweep"))
        if settings.webhook_worker:
            worker = DeliveryWorker(
                state,
                timeout_seconds=settings.webhook_timeout_seconds,
                concurrency=settings.webhook_concurrency,
                tracing=tracing,
            )
            tasks.append(asyncio.create_task(worker.run(), name="the webhook worker"))
        # What is built by now (modules, the schema) lives as long as the process: keep it
        # out of the garbage collector's full passes, which otherwise walk all of it (about
        # 70 ms on a busy core) whenever requests allocate a lot, as parsing large documents
        # does. Unfrozen at shutdown, so an app made and dropped (as in tests) leaks nothing.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        # Background work is cancelled and the stop is bounded as a whole: work stuck in a
        # driver call must not hold the exit. What did not stop is named, with where it was,
        # and the connections it holds are terminated with the rest.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_SECONDS
        for task in tasks:
            task.cancel()
        closing = [
            asyncio.create_task(state.feed.close(), name="the event listener"),
            asyncio.create_task(view.keys.close(), name="the key stamps"),
        ]
        if view.rate_limits is not None:
            closing.append(asyncio.create_task(view.rate_limits.close(), name="the rate limits"))
        if view.tokens is not None:
            closing.append(asyncio.create_task(view.tokens.close(), name="the JWKS fetch"))
        await stop_within([*tasks, *closing], STOP_SECONDS - CLOSE_SECONDS)
        metrics.watch_pool(None)
        try:
            await db.close(within=max(CLOSE_SECONDS, deadline - loop.time()))
        except TimeoutError:
            logger.warning("the database connections did not close in time; terminated them")
        await tracing.close()  # the spans still queued, sent within a second

    async def home(_request: Request) -> Response:
        return RedirectResponse("/graphql")  # a relative Location: nothing taken from Host

    app = App(
        # One middleware, web/edge.py's: the request id, metrics and access log, the security
        # headers, CORS (a preflight is answered before anything asks for a key) and JSON errors.
        cors=Cors(settings.cors_origins),
        routes=[
            Route("/graphql", BodyLimit(graphql, settings.max_body_bytes)),  # the busy one first
            Route("/", home),
            Route("/healthz", healthz),
            Route("/readyz", readyz_route(db, settings.ready_timeout_seconds)),
            Route("/metrics", metrics.metrics_route(settings.metrics_token)),
            WebSocketRoute("/graphql", graphql),
            Mount("/graphiql", StaticFiles(directory=GRAPHIQL), name="graphiql"),
        ],
        lifespan=lifespan,
        tracing=tracing,
    )
    # Starlette answers /graphql/ with a redirect to an absolute URL built from the Host
    # header, which a client (or a poisoned cache) chooses: a 404 instead.
    app.router.redirect_slashes = False
    app.state.db = db
    return app
