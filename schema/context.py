"""What every resolver gets in `info.context`: the application's state, built once at start, and
per-request loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from strawberry.types import Info as StrawberryInfo

from db.engine import Database
from db.feed import FeedSignal
from db.keys import Principal, Scope
from db.rules import Environment
from db.webhooks import Settings as WebhookSettings
from schema.access import own_customer
from schema.loaders import Loaders


@dataclass
class Operation:
    """What ran, for the request's log line and metrics: filled in by `ReportOperation`."""

    name: str | None = None
    type: str | None = None  # query, mutation, subscription; None when it did not parse


Clock = Callable[[], datetime]


def actor_of(principal: Principal | None) -> str:
    """Who the events of a principal's changes name: one rule for every writer.

    Only a request with a principal gets past the scope checks to change anything."""
    if principal is None:
        raise RuntimeError("a change was asked for without a principal")
    return principal.actor


@dataclass(frozen=True)
class AppState:
    """What the server resolves once, at start (its secrets included), and every request and
    worker shares: the view, the compiled path, each request's Context and the webhook worker
    receive it whole. Frozen: nothing fills a value in later."""

    db: Database
    clock: Clock
    environment: Environment
    kyc_ttl: timedelta  # how long a PENDING verification lives
    cursor_secret: bytes  # signs the cursors of lists (and of webhook bodies)
    feed: FeedSignal  # wakes subscriptions and the webhook worker when events commit
    webhooks: WebhookSettings  # secrets' key and target rules


@dataclass(frozen=True)
class Writer:
    """What a write needs of its request, whichever executor runs it: the database, who acts
    (whose events name it, and which customer a customers:self token may change), the rules'
    environment, and one reading of the clock."""

    db: Database
    principal: Principal | None
    environment: Environment
    now: datetime
    ttl: timedelta

    @property
    def actor(self) -> str:
        """Who the events of this write name (`key:<name>`, `token:<iss>#<sub>`)."""
        return actor_of(self.principal)

    def own_customer(self, needed: Scope) -> str | None:
        """`access.own_customer` for this write's principal."""
        return own_customer(self.principal, needed)


@dataclass
class Context:
    """Built afresh for each request, so loaders never serve one request's rows to another."""

    app: AppState
    principal: Principal | None = None  # the API key's, when the request had a valid one
    operation: Operation = field(default_factory=Operation)
    connection_params: dict[str, object] | None = None  # a WebSocket's connection_init payload
    # The principal's rate-limit bucket after this request's draw: extensions.cost's
    # throttleStatus (web/rate_limits.py); None when unmetered.
    throttle_status: dict[str, object] | None = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.app.db)

    # The application's state, by the names resolvers use.

    @property
    def db(self) -> Database:
        return self.app.db

    @property
    def clock(self) -> Clock:
        return self.app.clock

    @property
    def environment(self) -> Environment:
        return self.app.environment

    @property
    def kyc_ttl(self) -> timedelta:
        return self.app.kyc_ttl

    @property
    def cursor_secret(self) -> bytes:
        return self.app.cursor_secret

    @property
    def feed(self) -> FeedSignal:
        return self.app.feed

    @property
    def webhooks(self) -> WebhookSettings:
        return self.app.webhooks

    def own_customer(self, needed: Scope) -> str | None:
        """`access.own_customer` for this request's principal."""
        return own_customer(self.principal, needed)

    @property
    def actor(self) -> str:
        """Who the events of this request's changes name (`key:<name>`, `token:<iss>#<sub>`)."""
        return actor_of(self.principal)

    def writer(self) -> Writer:
        """What this request's write needs, the clock read once."""
        return Writer(self.db, self.principal, self.environment, self.clock(), self.kyc_ttl)


Info = StrawberryInfo[Context, None]
