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
from schema.loaders import Loaders


@dataclass
class Operation:
    """What ran, for the request's log line and metrics: filled in by `ReportOperation`."""

    name: str | None = None
    type: str | None = None  # query, mutation, subscription; None when it did not parse


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
        """The one externalCustomerId this request may touch where it lacks `needed` and acts
        through customers:self; None when it may touch any customer.

        Any other customer is then NOT_FOUND (or null), as if it did not exist, so such a token
        cannot probe which ids exist. A request with neither scope touches none ("")."""
        principal = self.principal
        if principal is not None and needed in principal.scopes:
            return None
        return (principal.customer if principal is not None else None) or ""

    @property
    def actor(self) -> str:
        """Who the events of this request's changes name (`key:<name>`, `token:<iss>#<sub>`).

        Only a request with a principal gets past the scope checks to change anything."""
        if self.principal is None:
            raise RuntimeError("a change was asked for without a principal")
        return self.principal.actor


Info = StrawberryInfo[Context, None]
