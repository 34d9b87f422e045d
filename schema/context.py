"""What every resolver gets in `info.context`: the database, settings and per-request loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from strawberry.types import Info as StrawberryInfo

from db.engine import Database
from db.keys import Principal
from db.rules import Environment
from schema.loaders import Loaders


@dataclass
class Context:
    """Built afresh for each request, so loaders never serve one request's rows to another."""

    db: Database
    environment: Environment
    clock: Callable[[], datetime]
    kyc_ttl: timedelta
    principal: Principal | None = None  # the API key's, when the request had a valid one
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.db)


Info = StrawberryInfo[Context, None]
