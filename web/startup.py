"""Start-up: what must hold before serving (the database answers, its schema is current, a first
key exists), and every way that can fail told in a line or two naming the setting and what to
do."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError, NoSuchModuleError

from db import migrate
from db.faults import fault_of
from db.models import utc_now
from web.bootstrap import bootstrap_key
from web.settings import Settings, open_database

logger = logging.getLogger("customer_api")

T = TypeVar("T")


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
