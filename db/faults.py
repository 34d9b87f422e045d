"""Which failures mean the database is sick (not a bug): what a client may retry later."""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterator

from sqlalchemy import exc

try:  # the PostgreSQL driver is optional for a SQLite-only deployment
    from asyncpg import exceptions as pg
except ImportError:  # pragma: no cover
    pg = None


# What a driver raises when a unique index refuses a row, for statements run on the driver's
# own connection (db/driver.py), where SQLAlchemy does not wrap it in its IntegrityError.
UNIQUE_VIOLATIONS: tuple[type[Exception], ...] = (
    sqlite3.IntegrityError,
    *((pg.UniqueViolationError,) if pg is not None else ()),
)


class DatabaseUnreachable(ConnectionError):
    """Raised without trying while a recent attempt found the database unreachable."""


class Fault(enum.Enum):
    """Why the database could not do the work, in words a client can act on."""

    UNAVAILABLE = "The database is unavailable right now; try again shortly."
    LOCK_TIMEOUT = (
        "The write waited too long for a lock that another write holds (the database itself "
        "is fine); try again shortly."
    )
    STORAGE_FULL = "The database's storage is full, so nothing can be written; reads still work."


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]


def fault_of(error: BaseException) -> Fault | None:
    """The fault behind `error` (looking through its causes), or None for anything else."""
    for cause in _chain(error):
        if pg is not None and isinstance(cause, pg.LockNotAvailableError):
            return Fault.LOCK_TIMEOUT  # lock_timeout: a holder slow to commit, or gone
        text = str(cause).lower() if isinstance(cause, sqlite3.Error) else ""
        if "database or disk is full" in text or "disk i/o error" in text:
            return Fault.STORAGE_FULL if "full" in text else Fault.UNAVAILABLE
        if "database is locked" in text:
            return Fault.UNAVAILABLE
        if isinstance(cause, exc.TimeoutError | TimeoutError | ConnectionError):
            return Fault.UNAVAILABLE
        if isinstance(cause, exc.DBAPIError) and cause.connection_invalidated:
            return Fault.UNAVAILABLE
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            return Fault.UNAVAILABLE  # refused, unreachable, reset
        if pg is not None and isinstance(
            cause,
            pg.PostgresConnectionError
            | pg.InterfaceError
            | pg.QueryCanceledError
            | pg.CannotConnectNowError
            | pg.AdminShutdownError
            | pg.TooManyConnectionsError,
        ):
            return Fault.UNAVAILABLE
    return None
