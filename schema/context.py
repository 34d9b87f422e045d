"""What every resolver gets in `info.context`: the database, settings and per-request loaders."""

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
        """Who the events of this write name: the key's name (or token's subject)."""
        return self.principal.name if self.principal is not None else "anonymous"

    def own_customer(self, needed: Scope) -> str | None:
        """`access.own_customer` for this write's principal."""
        return own_customer(self.principal, needed)


@dataclass
class Context:
    """Built afresh for each request, so loaders never serve one request's rows to another."""

    db: Database
    environment: Environment
    clock: Callable[[], datetime]
    kyc_ttl: timedelta
    cursor_secret: bytes  # signs the cursors of lists
    principal: Principal | None = None  # the API key's, when the request had a valid one
    operation: Operation = field(default_factory=Operation)
    feed: FeedSignal | None = None  # wakes subscriptions when events commit
    connection_params: dict[str, object] | None = None  # a WebSocket's connection_init payload
    webhooks: WebhookSettings | None = None  # secrets' key and target rules
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.db)

    def own_customer(self, needed: Scope) -> str | None:
        """`access.own_customer` for this request's principal."""
        return own_customer(self.principal, needed)

    def writer(self) -> Writer:
        """What this request's write needs, the clock read once."""
        return Writer(self.db, self.principal, self.environment, self.clock(), self.kyc_ttl)


Info = StrawberryInfo[Context, None]
