"""The server's settings: every one read from the environment (names in upper case) in this one
place; everything below gets values passed in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from db import webhooks
from db.engine import Database, Timeouts
from db.rules import Environment
from db.webhooks import SecretBox
from schema.ftv1 import Policy as TracePolicy
from schema.limits import Limits
from web.cors import parse_origins
from web.persisted import Policy
from web.tokens import TokenSettings

# The file of settings the command line reads (KEY=value lines), in the directory it starts in;
# the environment wins over it. Settings() alone reads the environment only: tests build
# settings directly, and a developer's .env must not change them.
ENV_FILE = Path(".env")


class Settings(BaseSettings):
    """Every setting of the server, read from the environment (names in upper case) once, and
    by the command line from ENV_FILE too."""

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
    host: str = Field(default="127.0.0.1", description="Address to listen on (--host overrides).")
    port: int = Field(
        default=8000, description="Port to listen on (--port overrides; 0 picks a free one)."
    )
    db_pool_size: int = Field(default=5, ge=1, description="Connections kept open in the pool.")
    db_max_overflow: int = Field(
        default=10, ge=0, description="Extra connections opened under load beyond the pool."
    )
    sqlite_busy_timeout_ms: int = Field(
        default=30_000, ge=0, description="How long a SQLite writer waits for the write lock."
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    max_query_depth: int = Field(
        default=Limits.max_depth, ge=1, description="Deepest field nesting a document may have."
    )
    max_aliases: int = Field(
        default=Limits.max_aliases, ge=0, description="Aliases a document may use."
    )
    max_directives: int = Field(
        default=Limits.max_directives, ge=0, description="Directive uses a document may have."
    )
    max_tokens: int = Field(
        default=Limits.max_tokens,
        ge=1,
        description="Tokens a document may have (bounds the parser's work).",
    )
    max_cost: int = Field(
        default=Limits.max_cost,
        ge=1,
        description="Estimated cost a request may have (docs/security.md).",
    )
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
        "'Did you mean' suggestions and refuses Federation's _service.",
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
        default=30,
        gt=0,
        description="How long events are kept; older ones are pruned by the sweep.",
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
    # Subscriptions over WebSocket: how long a credential stays trusted, one principal's share
    # of a process, and how long a subscription waits out a database outage.
    ws_credential_check_seconds: float = Field(
        default=5,
        gt=0,
        description="How often an open WebSocket checks its key or token again: a revoked "
        "key's sockets close (4403) within this plus KEY_CACHE_SECONDS; a token's close (4401) "
        "when it expires (its exp plus JWT_LEEWAY_SECONDS).",
    )
    max_subscriptions_per_principal: int = Field(
        default=100,
        ge=1,
        description="Subscriptions one API key (or one token subject) may hold at once in one "
        "server process, so that no client takes every MAX_SUBSCRIPTIONS slot.",
    )
    subscription_outage_seconds: float = Field(
        default=15,
        ge=0,
        description="How long a subscription retries its reads while the database is "
        "unavailable, then resumes where it was; past it, its socket is closed with 1013 "
        "(try again later), on which graphql-ws clients reconnect.",
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
        description="Seconds before each retry of a failed delivery (comma-separated, each with "
        "±20% jitter); after the last, the delivery fails.",
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
    workers: int = Field(
        default=1, ge=1, description="Server processes on the one port (one per core)."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json: one JSON object per line."
    )
    metrics_token: str | None = Field(
        default=None, min_length=16, description="Bearer token of GET /metrics; unset: 404."
    )
    db_connect_timeout_seconds: float = Field(
        default=Timeouts.connect,
        gt=0,
        description="Longest wait to open a PostgreSQL connection; also bounds the pre-ping, a "
        "write's BEGIN (which is its connection's ping) and each compiled read.",
    )
    db_pool_timeout_seconds: float = Field(
        default=Timeouts.pool_checkout,
        gt=0,
        description="Longest wait for a free pooled PostgreSQL connection (SQLite writers queue "
        "for the file's lock instead, up to SQLITE_BUSY_TIMEOUT_MS).",
    )
    db_statement_timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        description="Longest a statement may run on PostgreSQL (server and driver side).",
    )
    ready_timeout_seconds: float = Field(
        default=2, gt=0, description="How long /readyz waits for the database."
    )
    shutdown_grace_seconds: float = Field(
        default=20, ge=0, description="How long a stopping server lets requests finish."
    )
    key_cache_seconds: float = Field(
        default=5,
        ge=0,
        description="How long a key's principal is reused before it is re-read: the bound on "
        "honouring a revocation.",
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
        default="",
        # An event names a token's writer `token:<iss>#<sub>` in 255 characters: a longer
        # issuer would leave too little room for any subject, and every token be refused.
        max_length=128,
        description="The identity provider whose tokens are accepted ('iss'). Set JWT_ISSUER, "
        "JWT_AUDIENCE and JWT_JWKS_URL together, or none.",
    )
    jwt_audience: str = Field(default="", description="This API's name in those tokens ('aud').")
    jwt_jwks_url: str = Field(
        default="",
        description="Where the provider publishes its signing keys (a JWKS); empty: API keys only.",
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
    jwt_jwks_max_age_seconds: float = Field(
        default=600,
        gt=0,
        le=86_400,
        description="How old the provider's keys (JWKS) may grow before they are fetched again, "
        "in the background: tokens whose key is in hand never wait for that fetch, and a key "
        "the provider withdrew stops working once it lands.",
    )

    # Federated tracing (FTV1, schema/ftv1): who gets a trace when a gateway asks for one.
    ftv1_traces: TracePolicy = Field(
        default="api_keys",
        description="Who gets a federated trace (extensions.ftv1) on asking with "
        "apollo-federation-include-trace: ftv1: api_keys (a gateway's key; never an "
        "identity-provider token), all (tokens too: a gateway that forwards its users' tokens), "
        "or off.",
    )

    # Persisted documents (web/persisted.py; docs/clients.md): a trusted documents manifest,
    # Apollo's automatic persisted queries, and which documents each kind of principal may run.
    trusted_documents_file: Path | None = Field(
        default=None,
        description="A manifest of the documents your apps were built with, read at start: GraphQL "
        "Code Generator's persisted-documents.json or Apollo's operation manifest. Each is "
        "validated and compiled then; clients may send its hash instead of the document.",
    )
    api_key_documents: Policy = Field(
        default=Policy.ANY,
        description="Which documents API keys may run: any; apq (stored ones by hash, or sent "
        "with their hash: automatic persisted queries); known (the manifest's only).",
    )
    token_documents: Policy = Field(
        default=Policy.ANY,
        description="Which documents identity-provider tokens (browser apps) may run: any, apq "
        "or known, as API_KEY_DOCUMENTS. known holds a browser app to the documents it was "
        "built with.",
    )
    apq_cache_entries: int = Field(
        default=500,
        ge=0,
        description="Documents registered by automatic persisted queries that each process "
        "keeps (least recently used go first); 0 turns APQ off (PERSISTED_QUERY_NOT_SUPPORTED).",
    )
    apq_cache_characters: int = Field(
        default=200_000,
        ge=0,
        description="The most document text those registered documents may hold in all (their "
        "syntax trees take about 100 bytes a character).",
    )

    # Rate limits per principal (web/rate_limits.py, docs/operations.md): each request's
    # estimated cost is drawn from a leaky bucket of its key or token subject. The bucket holds
    # MAX_COST by default, so any request the per-request limit admits fits a full bucket.
    rate_limit_max_cost: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000_000,
        description="Points a principal's bucket holds (a key made with --max-cost has its own).",
    )
    rate_limit_restore_rate: float = Field(
        default=500,
        gt=0,
        le=1_000_000_000,
        description="Points a second a bucket regains (a key made with --restore-rate has "
        "its own).",
    )
    rate_limit_redis_url: SecretStr | None = Field(
        default=None,
        description="redis://host:port/db: the buckets shared by every process through Redis; "
        "unset: each process keeps its own.",
    )
    rate_limit_redis_timeout_seconds: float = Field(
        default=0.05,
        gt=0,
        le=5,
        description="How long a bucket's draw may wait for Redis before the request runs "
        "unmetered (fails open).",
    )
    rate_limit_redis_prefix: str = Field(
        default="customer-api:bucket:",
        min_length=1,
        max_length=100,
        description="What the buckets' Redis keys start with.",
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
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("webhook_secret_key")
    @classmethod
    def _webhook_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                SecretBox(value)
            except ValueError:
                raise ValueError(
                    "must be 32 random bytes in base64; make one with: python3 -c "
                    '"import os, base64; print(base64.b64encode(os.urandom(32)).decode())"'
                ) from None
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
            named = [name for name in given if name not in missing]
            raise ValueError(
                f"{' and '.join(named)} {'is' if len(named) == 1 else 'are'} set, but "
                f"identity-provider tokens need {' and '.join(missing)} as well: set "
                f"{'it' if len(missing) == 1 else 'them'}, or unset {' and '.join(named)}"
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
            jwks_max_age_seconds=self.jwt_jwks_max_age_seconds,
        )

    def webhooks(self) -> webhooks.Settings:
        box = None if self.webhook_secret_key is None else SecretBox(self.webhook_secret_key)
        schedule = tuple(float(d) for d in self.webhook_retry_schedule.split(","))
        return webhooks.Settings(box, self.webhook_allow_private_targets, schedule)

    # Tracing (web/tracing.py): OpenTelemetry's own environment variables, as its SDKs read
    # them, but off unless an exporter or an endpoint is named (the SDKs' default exporter is
    # OTLP to localhost: this server sends nothing it was not told to).
    otel_sdk_disabled: bool = Field(
        default=False, description="true turns tracing off, whatever else is set."
    )
    otel_service_name: str = Field(
        default="customer-api", min_length=1, description="The service.name of every span."
    )
    otel_traces_exporter: str = Field(
        default="",
        description="Where spans go: otlp (OTLP over HTTP, protobuf), console (stdout), or "
        "none; empty: otlp when an OTLP endpoint is set, else none (tracing off).",
    )
    otel_exporter_otlp_endpoint: str = Field(
        default="",
        description="The OTLP/HTTP collector's base URL (http://127.0.0.1:4318): spans are "
        "POSTed to its /v1/traces. Setting it turns tracing on.",
    )
    otel_exporter_otlp_traces_endpoint: str = Field(
        default="",
        description="The full URL spans are POSTed to (overrides OTEL_EXPORTER_OTLP_ENDPOINT). "
        "Setting it turns tracing on.",
    )
    otel_exporter_otlp_headers: SecretStr | None = Field(
        default=None,
        description="Headers sent to the collector, as key=value pairs separated by commas "
        "(values URL-encoded): an API key, say.",
    )
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = Field(
        default="parentbased_always_on",
        description="Which traces are recorded: parentbased_* follow an incoming traceparent's "
        "sampled flag, and decide as the rest of the name says for a request without one.",
    )
    otel_traces_sampler_arg: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The ratio of traces recorded by the *traceidratio samplers (1.0 unset).",
    )

    @field_validator("otel_traces_exporter")
    @classmethod
    def _traces_exporter(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in ("otlp", "console", "none")]
        if unknown:
            raise ValueError(f"takes otlp, console or none, not {', '.join(unknown)}")
        return ",".join(names)

    @field_validator("otel_exporter_otlp_endpoint", "otel_exporter_otlp_traces_endpoint")
    @classmethod
    def _otlp_endpoint(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @property
    def traces_exporters(self) -> tuple[str, ...]:
        """The exporters tracing sends to; none: tracing is off."""
        if self.otel_sdk_disabled:
            return ()
        names = tuple(n for n in self.otel_traces_exporter.split(",") if n)
        if not names:
            endpoint = self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint
            return ("otlp",) if endpoint else ()
        return () if "none" in names else names

    @property
    def otlp_traces_url(self) -> str:
        """Where OTLP spans are POSTed (the specification's default when no endpoint is set)."""
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        base = self.otel_exporter_otlp_endpoint or "http://localhost:4318"
        return base.rstrip("/") + "/v1/traces"


def load_settings(**overrides: Any) -> Settings:
    """The settings of a server the command line starts: `overrides`, then the environment,
    then ENV_FILE when it exists."""
    return Settings(_env_file=ENV_FILE, **overrides)


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
