"""The customer API server: settings, the Starlette app, and the command line.

python server.py [--host H] [--port P]     serve the API at http://H:P/graphql
python server.py export-schema             print the SDL (what graphql/schema.graphql holds)
python server.py expire-kyc                expire stale PENDING verifications once
python server.py migrate                   bring the database to the latest schema
python server.py keys create|list|revoke   manage API keys (see --help)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import io
import logging
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import uvicorn
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InvalidRequestError,
    NoSuchModuleError,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors.multiprocess import Multiprocess

from db import events, keys, kyc, migrate, server_secrets, webhooks
from db.customer_rows import CustomerReads
from db.engine import Database, Timeouts
from db.faults import fault_of
from db.feed import FeedSignal
from db.models import utc_now
from db.rules import Environment
from db.webhooks import SecretBox
from schema import build_schema, schema
from schema.compiled import CompiledPath
from schema.errors import report
from schema.limits import Limits
from schema.scalars import serialize
from web import metrics
from web.body import BodyLimit
from web.cors import Cors, parse_origins
from web.edge import App
from web.health import healthz, readyz_route
from web.logs import configure_logging
from web.stopping import accept_queued
from web.timeouts import EdgeProtocol, edge_protocol
from web.tokens import TokenSettings, TokenVerifier
from web.view import GRAPHIQL, GraphQLView
from web.webhooks import DeliveryWorker

logger = logging.getLogger("customer_api")

Clock = Callable[[], datetime]
T = TypeVar("T")


class Settings(BaseSettings):
    """Every setting of the server, read from the environment (names in upper case) once."""

    model_config = SettingsConfigDict(frozen=True)

    database_url: str = Field(
        default="sqlite+aiosqlite:///./customers.db",
        description="SQLAlchemy URL of the database: a SQLite file or postgresql+asyncpg://...",
    )
    environment: Environment = Field(
        default=Environment.PRODUCTION,
        description="production enforces every rule; sandbox accepts disposable and +suffix "
        "e-mails with a warning.",
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, description="Port to listen on.")
    db_pool_size: int = Field(default=5, ge=1, description="Connections kept open in the pool.")
    db_max_overflow: int = Field(
        default=10, ge=0, description="Extra connections opened under load beyond the pool."
    )
    sqlite_busy_timeout_ms: int = Field(
        default=30_000, ge=0, description="How long a SQLite writer waits for the write lock."
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    max_query_depth: int = Field(default=Limits.max_depth, ge=1, description="Deepest nesting.")
    max_aliases: int = Field(default=Limits.max_aliases, ge=0, description="Aliases a document.")
    max_directives: int = Field(
        default=Limits.max_directives, ge=0, description="Directive uses a document."
    )
    max_tokens: int = Field(default=Limits.max_tokens, ge=1, description="Tokens a document.")
    max_cost: int = Field(default=Limits.max_cost, ge=1, description="Estimated cost a request.")
    max_field_comparisons: int = Field(
        default=Limits.max_comparisons,
        ge=1,
        description="Comparisons of fields sharing a response name that validation may make.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Largest request body; larger ones get 413."
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Most bytes of an unfinished request line and headers held; more get 400 "
        "(what a connection buffers before its key can be checked).",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Connections (and requests in flight) a process serves at once; requests "
        "beyond get 503.",
    )
    header_timeout_seconds: float = Field(
        default=10, gt=0, description="A request's line and headers must arrive within this."
    )
    body_timeout_seconds: float = Field(
        default=30, gt=0, description="A request's body must arrive within this; else 408."
    )
    idle_timeout_seconds: float = Field(
        default=5, gt=0, description="An idle keep-alive connection is closed after this."
    )
    introspection: bool = Field(
        default=True,
        description="Allow introspection (GraphiQL and codegen need it); off also hides "
        "'Did you mean' suggestions.",
    )
    cursor_secret: SecretStr | None = Field(
        default=None,
        description="Signs the cursors of lists. Unset: one is made on the first start and "
        "kept in the database, so every replica shares it. Changing it voids cursors handed out.",
    )
    bootstrap_key_file: Path = Field(
        default=Path("bootstrap-key.txt"),
        description="Where the first start writes the key it makes (mode 0600) when the "
        "database has none.",
    )
    migrate_on_start: bool = Field(
        default=True, description="Bring the database to the latest schema when the server starts."
    )
    kyc_pending_ttl_seconds: float = Field(
        default=24 * 3600,
        gt=0,
        description="How long a PENDING verification lives before it expires.",
    )
    kyc_sweep_interval_seconds: float = Field(
        default=60,
        ge=0,
        description="How often the server writes expiries down and prunes old events; 0 turns "
        "it off.",
    )
    event_retention_days: float = Field(
        default=30, gt=0, description="How long events are kept before they are pruned."
    )
    event_poll_seconds: float = Field(
        default=0.05,
        gt=0,
        description="On SQLite, how often subscriptions and webhooks look for new events "
        "(PostgreSQL wakes them with NOTIFY instead).",
    )
    ws_heartbeat_seconds: float = Field(
        default=15, ge=0, description="How often a WebSocket gets a ping; 0 sends none."
    )
    max_subscriptions_per_connection: int = Field(
        default=10, ge=1, description="Operations one WebSocket may run at once."
    )
    max_subscriptions: int = Field(
        default=1000, ge=1, description="Subscriptions one server process serves at once."
    )
    webhook_secret_key: str | None = Field(
        default=None,
        description="32 random bytes in base64: the key that encrypts webhook signing secrets "
        "at rest. Without it, no webhook endpoint can be made.",
        repr=False,
    )
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="Allow webhook URLs on internal addresses, and http:// to loopback (tests).",
    )
    webhook_retry_schedule: str = Field(
        default=",".join(f"{d:g}" for d in webhooks.RETRY_SCHEDULE),
        pattern=r"^\d+(\.\d+)?(,\d+(\.\d+)?)*$",
        description="Seconds before each retry of a failed delivery (comma-separated); after "
        "the last, the delivery fails.",
    )
    webhook_timeout_seconds: float = Field(
        default=10, gt=0, description="How long an endpoint has to answer an attempt."
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, description="Deliveries one process sends at once (one per endpoint)."
    )
    webhook_worker: bool = Field(
        default=True, description="Run the webhook delivery worker in this process."
    )
    workers: int = Field(default=1, ge=1, description="Server processes (one per core).")
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json: one JSON object per line."
    )
    metrics_token: str | None = Field(
        default=None, min_length=16, description="Bearer token of GET /metrics; unset: 404."
    )
    db_connect_timeout_seconds: float = Field(
        default=Timeouts.connect, gt=0, description="Longest wait to open a database connection."
    )
    db_pool_timeout_seconds: float = Field(
        default=Timeouts.pool_checkout, gt=0, description="Longest wait for a pooled connection."
    )
    db_statement_timeout_seconds: float = Field(
        default=3.0, gt=0, description="Longest a statement may run (PostgreSQL)."
    )
    ready_timeout_seconds: float = Field(
        default=2, gt=0, description="How long /readyz waits for the database."
    )
    shutdown_grace_seconds: float = Field(
        default=20, ge=0, description="How long a stopping server lets requests finish."
    )
    key_cache_seconds: float = Field(
        default=5, ge=0, description="How long a key's principal is reused before it is re-read."
    )
    compiled_path: bool = Field(
        default=True,
        description="Answer the customer queries and writes it covers from a plan compiled once "
        "per document (schema/compiled/); off, graphql-core executes every request. The "
        "answers are byte for byte the same (tests/test_compiled.py).",
    )

    cors_allow_origins: str = Field(
        default="",
        description="Comma-separated exact origins (https://app.example.com) whose browser apps "
        "may call the API; empty allows none.",
    )
    jwt_issuer: str = Field(
        default="", description="The identity provider whose tokens are accepted ('iss')."
    )
    jwt_audience: str = Field(default="", description="This API's name in those tokens ('aud').")
    jwt_jwks_url: str = Field(
        default="", description="Where the provider publishes its signing keys (a JWKS)."
    )
    jwt_leeway_seconds: float = Field(
        default=30, ge=0, le=300, description="Clock difference allowed for exp, nbf and iat."
    )
    jwt_jwks_timeout_seconds: float = Field(
        default=5, gt=0, le=60, description="How long a fetch of the JWKS may take."
    )
    jwt_customer_claim: str = Field(
        default="external_customer_id",
        min_length=1,
        description="The claim of a customers:self token that names its externalCustomerId.",
    )

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        parse_origins(value)  # ValueError naming the origin and the rule
        return value

    @field_validator("jwt_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _all_or_no_token_settings(self) -> Settings:
        given = {
            "JWT_ISSUER": self.jwt_issuer,
            "JWT_AUDIENCE": self.jwt_audience,
            "JWT_JWKS_URL": self.jwt_jwks_url,
        }
        missing = [name for name, value in given.items() if not value]
        if missing and len(missing) < len(given):
            raise ValueError(
                f"identity-provider tokens need all of JWT_ISSUER, JWT_AUDIENCE and "
                f"JWT_JWKS_URL; {', '.join(missing)} missing"
            )
        return self

    @property
    def kyc_ttl(self) -> timedelta:
        return timedelta(seconds=self.kyc_pending_ttl_seconds)

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return parse_origins(self.cors_allow_origins)

    @property
    def tokens(self) -> TokenSettings | None:
        """What to accept of an identity provider's tokens; None when none are accepted."""
        if not self.jwt_jwks_url:
            return None
        return TokenSettings(
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
            jwks_url=self.jwt_jwks_url,
            leeway_seconds=self.jwt_leeway_seconds,
            jwks_timeout_seconds=self.jwt_jwks_timeout_seconds,
            customer_claim=self.jwt_customer_claim,
        )

    def webhooks(self) -> webhooks.Settings:
        box = None if self.webhook_secret_key is None else SecretBox(self.webhook_secret_key)
        schedule = tuple(float(d) for d in self.webhook_retry_schedule.split(","))
        return webhooks.Settings(box, self.webhook_allow_private_targets, schedule)


async def bootstrap_key(db: Database, clock: Clock, path: Path) -> None:
    """On a database with no key at all, make one with every scope and write it to `path`.

    The file is made readable by its owner only (0600); the key never reaches stdout or the
    log, which process managers often keep together: only the file's path is printed, on
    stderr. The next start finds a key and says nothing. Servers starting together race for
    the key's name: one wins, and only the winner writes the file.
    """
    async with db.read() as session:  # a read first: a held write lock must not stop a start
        if await keys.count_keys(session):
            return
    async with db.write() as session:
        if await keys.count_keys(session):
            return
        try:
            key = await keys.create_key(session, "bootstrap", keys.ALL_SCOPES, clock())
        except keys.KeyProblem:
            return
        write_private(path, key + "\n")  # before the commit: no key is made that nobody has
    announce_bootstrap_key(path)


def announce_bootstrap_key(path: Path) -> None:
    print(
        "\nNo API key existed, so one with every scope was made and written to\n\n"
        f"    {path.resolve()}\n\n"
        "(readable by this user only). Keep it somewhere safe and delete the file. In GraphiQL "
        "(http://<host>:<port>/graphql) put it in the Headers tab as\n"
        '    {"Authorization": "Bearer <the key>"}\n'
        "Make narrower keys with: python server.py keys create --name NAME --scope SCOPE\n",
        file=sys.stderr,
        flush=True,
    )


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner may read, never through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(descriptor, 0o600)  # an existing file keeps its old mode otherwise
        file.write(text)


def open_database(settings: Settings, serving: bool = True) -> Database:
    """The database as the settings say; outside serving (migrations, commands) a statement
    may take as long as it needs: an index build on a big table takes minutes."""
    return Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        timeouts=Timeouts(
            connect=settings.db_connect_timeout_seconds,
            pool_checkout=settings.db_pool_timeout_seconds,
            statement=settings.db_statement_timeout_seconds if serving else None,
        ),
    )


async def expire_kyc(db: Database, settings: Settings, clock: Clock = utc_now) -> int:
    """One expiry sweep; returns how many verifications it expired."""
    async with db.write() as session:
        return await kyc.expire_stale(session, clock(), settings.kyc_ttl)


async def prune_events(db: Database, settings: Settings, clock: Clock = utc_now) -> int:
    """Delete the events older than the retention; returns how many."""
    async with db.write() as session:
        return await events.prune(session, clock() - timedelta(days=settings.event_retention_days))


async def sweep_forever(db: Database, settings: Settings, clock: Clock) -> None:
    """Write expiries down and prune old events on an interval. Reads apply the expiry rule
    meanwhile, so the interval only bounds how stale the stored rows (and filters) may be."""
    while True:
        try:
            expired = await expire_kyc(db, settings, clock)
            if expired:
                logger.info("expired %d KYC verifications", expired)
            pruned = await prune_events(db, settings, clock)
            if pruned:
                logger.info("pruned %d events past retention", pruned)
            metrics.count_sweep(expired)  # one run, counted once: ok only when both steps were
        except Exception as error:
            # A failed sweep (the database restarting, say) is retried on the next tick.
            metrics.count_sweep(None)
            report(error, "the expiry sweep and event pruning")
        await asyncio.sleep(settings.kyc_sweep_interval_seconds)


async def cursor_secret(db: Database, settings: Settings, clock: Clock) -> bytes:
    """The key that signs cursors: the setting's, else the one stored in the database."""
    if settings.cursor_secret is not None:
        text = settings.cursor_secret.get_secret_value()
    else:
        text = await server_secrets.shared_secret(db, "cursor", clock())
    return hashlib.sha256(text.encode()).digest()


def graphql_view(
    db: Database,
    settings: Settings,
    clock: Clock,
    feed: FeedSignal | None = None,
    hooks: webhooks.Settings | None = None,
) -> GraphQLView:
    limits = Limits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_directives=settings.max_directives,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_cost,
        max_comparisons=settings.max_field_comparisons,
    )
    schema = build_schema(limits, introspection=settings.introspection)
    compiled = None
    if settings.compiled_path:
        compiled = CompiledPath(
            schema.analyser,
            schema._schema,
            CustomerReads(db),
            clock=clock,
            kyc_ttl=settings.kyc_ttl,
            environment=settings.environment,
        )
    return GraphQLView(
        schema,
        db,
        clock=clock,
        environment=settings.environment,
        kyc_ttl=settings.kyc_ttl,
        body_timeout=settings.body_timeout_seconds,
        tokens=None if settings.tokens is None else TokenVerifier(settings.tokens),
        key_cache_seconds=settings.key_cache_seconds,
        feed=feed,
        webhooks=hooks,
        heartbeat_seconds=settings.ws_heartbeat_seconds,
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        compiled=compiled,
    )


# The stop after the last request is bounded as a whole, well inside the 5 s that process
# managers and test harnesses (asgi-lifespan) commonly give a lifespan's shutdown: background
# work has STOP_SECONDS - CLOSE_SECONDS to end, and the database connections what is left (at
# least CLOSE_SECONDS) to close; those still open then are terminated.
STOP_SECONDS = 3.5
CLOSE_SECONDS = 1.5


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


def create_app(settings: Settings | None = None, clock: Clock = utc_now) -> Starlette:
    """The ASGI app: /graphql serves the API (and GraphiQL to a browser)."""
    settings = settings or Settings()
    db = open_database(settings)
    feed = FeedSignal(
        db, poll_seconds=settings.event_poll_seconds, max_subscriptions=settings.max_subscriptions
    )
    hooks = settings.webhooks()
    view = graphql_view(db, settings, clock, feed, hooks)  # GraphQL over HTTP and WebSocket

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await migrate.upgrade(db)
        await bootstrap_key(db, clock, settings.bootstrap_key_file)
        view.cursor_secret = await cursor_secret(db, settings, clock)
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
                db,
                feed,
                hooks,
                clock=clock,
                timeout_seconds=settings.webhook_timeout_seconds,
                concurrency=settings.webhook_concurrency,
                cursor_secret=view.cursor_secret,
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
            asyncio.create_task(feed.close(), name="the event listener"),
            asyncio.create_task(view.keys.close(), name="the key stamps"),
        ]
        await stop_within([*tasks, *closing], STOP_SECONDS - CLOSE_SECONDS)
        metrics.watch_pool(None)
        try:
            await db.close(within=max(CLOSE_SECONDS, deadline - loop.time()))
        except TimeoutError:
            logger.warning("the database connections did not close in time; terminated them")

    async def home(_request: Request) -> Response:
        return RedirectResponse("/graphql")  # a relative Location: nothing taken from Host

    app = App(
        # One middleware, web/edge.py's: the request id, metrics and access log, the security
        # headers, CORS (a preflight is answered before anything asks for a key) and JSON errors.
        cors=Cors(settings.cors_origins),
        routes=[
            Route("/graphql", BodyLimit(view, settings.max_body_bytes)),  # the busy one first
            Route("/", home),
            Route("/healthz", healthz),
            Route("/readyz", readyz_route(db, settings.ready_timeout_seconds)),
            Route("/metrics", metrics.metrics_route(settings.metrics_token)),
            WebSocketRoute("/graphql", view),
            Mount("/graphiql", StaticFiles(directory=GRAPHIQL), name="graphiql"),
        ],
        lifespan=lifespan,
    )
    # Starlette answers /graphql/ with a redirect to an absolute URL built from the Host
    # header, which a client (or a poisoned cache) chooses: a 404 instead.
    app.router.redirect_slashes = False
    app.state.db = db
    app.state.view = view
    return app


async def run_command(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    """Run one command against the database, brought to the latest schema first."""
    db = open_database(settings, serving=False)
    try:
        await migrate.upgrade(db)
        return await action(db)
    finally:
        await db.dispose()


async def create_key_command(db: Database, name: str, scopes: Sequence[keys.Scope]) -> int:
    async with db.write() as session:
        try:
            key = await keys.create_key(session, name, scopes, utc_now())
        except keys.KeyProblem as problem:
            print(problem, file=sys.stderr)
            return 1
    print(f"Created the key {name!r} with {', '.join(sorted(scopes))}. It is shown this once:")
    print(key)
    return 0


async def list_keys_command(db: Database) -> int:
    async with db.read() as session:
        rows = await keys.list_keys(session)
    print(f"{'name':<24} {'prefix':<14} {'created':<25} {'last used':<25} {'revoked':<25} scopes")
    for row in rows:
        dates = [row.created_at, row.last_used_at, row.revoked_at]
        shown = [serialize(d) if d else "-" for d in dates]
        print(f"{row.name:<24} {row.prefix + '…':<14} {shown[0]:<25} {shown[1]:<25} "
              f"{shown[2]:<25} {row.scopes}")  # fmt: skip
    return 0


async def revoke_key_command(db: Database, name: str) -> int:
    async with db.write() as session:
        try:
            await keys.revoke_key(session, name, utc_now())
        except keys.KeyProblem as problem:
            print(problem, file=sys.stderr)
            return 1
    print(f"Revoked the key {name!r}: requests with it now get 401.")
    return 0


async def keys_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.keys_command == "create":
        scopes = sorted(keys.ALL_SCOPES) if args.all_scopes else [keys.Scope(s) for s in args.scope]
        return await run_command(settings, lambda db: create_key_command(db, args.name, scopes))
    if args.keys_command == "revoke":
        return await run_command(settings, lambda db: revoke_key_command(db, args.name))
    return await run_command(settings, list_keys_command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The customer GraphQL API server.")
    parser.add_argument("--host", help="address to listen on (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT or 8000)")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser("serve", help="serve the API (the default)")
    commands.add_parser("export-schema", help="print the schema's SDL")
    commands.add_parser("expire-kyc", help="expire stale PENDING verifications once, then exit")
    commands.add_parser("migrate", help="bring the database to the latest schema, then exit")
    key_commands = commands.add_parser("keys", help="create, list and revoke API keys")
    key_actions = key_commands.add_subparsers(dest="keys_command", required=True)
    create = key_actions.add_parser("create", help="make a key; it is printed once, last")
    create.add_argument("--name", required=True, help="a name people will recognise")
    chosen = create.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--scope", action="append", choices=sorted(keys.ALL_SCOPES), help="repeatable"
    )
    chosen.add_argument("--all-scopes", action="store_true", help="every scope")
    key_actions.add_parser("list", help="name, prefix, scopes, created and last used")
    revoke = key_actions.add_parser("revoke", help="refuse the key from now on")
    revoke.add_argument("name")
    args = parser.parse_args(argv)

    if args.command == "export-schema":
        sys.stdout.write(schema.as_str() + "\n")
        return 0
    try:
        settings = load_settings(args)
        return run(args, settings)
    except StartupProblem as problem:
        print(f"customer-api: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before serving began: stop quietly
        return 0


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as error:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']} (got {e['input']!r})"
            for e in error.errors()
        ]
        raise StartupProblem("cannot start, a setting is wrong:\n  " + "\n  ".join(lines)) from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    debug = settings.log_level.lower() == "debug"
    if args.command == "migrate":
        revision = guarded(settings, debug, lambda: run_command(settings, migrate.current_revision))
        print(f"database at revision {revision}")
        return 0
    if args.command == "expire-kyc":
        expired = guarded(
            settings, debug, lambda: run_command(settings, lambda db: expire_kyc(db, settings))
        )
        print(f"expired {expired} KYC verifications")
        return 0
    if args.command == "keys":
        return guarded(settings, debug, lambda: keys_command(args, settings))
    guarded(settings, debug, lambda: prepare(settings))
    serve(settings)
    return 0


class StartupProblem(Exception):
    """Why the server cannot start, in a line or two naming the setting and what to do."""


def guarded(settings: Settings, debug: bool, action: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `action` to completion; a failure becomes a StartupProblem (with the traceback
    logged too when LOG_LEVEL=debug)."""
    try:
        return asyncio.run(action())
    except Exception as error:
        if debug:
            logger.exception("start-up failed")
        raise StartupProblem(explain(error, settings)) from None


def explain(error: BaseException, settings: Settings) -> str:
    """What went wrong at start, naming the setting to change."""
    url = make_url_or_none(settings.database_url)
    shown = url.render_as_string(hide_password=True) if url else settings.database_url
    text = str(error).lower()
    if url is None or isinstance(
        error, ArgumentError | NoSuchModuleError | InvalidRequestError | ModuleNotFoundError
    ):
        return (
            f"DATABASE_URL {shown!r} cannot be used ({type(error).__name__}: {error}).\n"
            "Use sqlite+aiosqlite:///./customers.db or postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB."
        )
    if url.get_backend_name() == "sqlite" and (
        isinstance(error, PermissionError)
        or "unable to open database file" in text
        or "readonly database" in text
        or "read-only" in text
    ):
        return (
            f"DATABASE_URL: the SQLite file {url.database!r} cannot be created or written.\n"
            "Make its directory writable by this user, or point DATABASE_URL at one that is."
        )
    if fault_of(error) is not None:
        where = f"{url.host or 'localhost'}:{url.port or 5432}"
        return (
            f"DATABASE_URL: the database at {where} cannot be reached ({type(error).__name__}).\n"
            "Start it or fix DATABASE_URL; DB_CONNECT_TIMEOUT_SECONDS bounds each attempt."
        )
    if isinstance(error, DBAPIError):
        return (
            f"DATABASE_URL: the database refused to work ({type(error.orig).__name__}).\n"
            "Check the user, password and database name in DATABASE_URL."
        )
    return (
        f"cannot start: {type(error).__name__}. Run with LOG_LEVEL=debug to see where.\n"
        "Settings involved: DATABASE_URL, MIGRATE_ON_START."
    )


def make_url_or_none(url: str) -> URL | None:
    try:
        return make_url(url)
    except ArgumentError:
        return None


async def prepare(settings: Settings) -> None:
    """What must hold before serving: the database answers, its schema is current (when
    MIGRATE_ON_START), and a first key exists. Done once, before any worker starts."""
    db = open_database(settings, serving=False)
    try:
        if settings.migrate_on_start:
            await migrate.upgrade(db)
        else:
            await migrate.current_revision(db)
        await bootstrap_key(db, utc_now, settings.bootstrap_key_file)
    finally:
        await db.dispose()


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
    settings = Settings()
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
            "server:worker_app",
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


if __name__ == "__main__":
    sys.exit(main())
