"""Start-up: what must hold before serving (the database answers, its schema is current, a first
key exists), and every way that can fail told in a line or two naming the setting and what to
do."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError, NoSuchModuleError

from db import migrate
from db.engine import Database
from db.faults import fault_of
from db.models import utc_now
from schema import build_schema
from web.app import limits_of, persisted_documents
from web.bootstrap import bootstrap_key
from web.hints import command
from web.persisted import ManifestProblem
from web.settings import Settings, open_database

logger = logging.getLogger("customer_api")

T = TypeVar("T")


class StartupProblem(Exception):
    """Why the server cannot start, in a line or two naming the setting and what to do."""


# How long the end of a start-up run waits for the threads it started (aiosqlite's, one a
# connection) to end once their connections are closed.
THREAD_SECONDS = 10


def run_to_end(action: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run(action()), except that the threads the run started end before its loop
    closes. aiosqlite closes a connection that failed to open in its own thread, which then
    reports to the loop: on a loaded machine that came after asyncio.run had closed the loop,
    and the thread died printing "RuntimeError: Event loop is closed"."""
    before = set(threading.enumerate())
    with asyncio.Runner() as runner:
        try:
            return runner.run(action())
        finally:
            runner.run(runner.get_loop().shutdown_default_executor())  # its idle workers end
            for thread in set(threading.enumerate()) - before:
                thread.join(THREAD_SECONDS)


def guarded(settings: Settings, debug: bool, action: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `action` to completion; a failure becomes a StartupProblem (with the traceback
    logged too when LOG_LEVEL=debug)."""
    try:
        return run_to_end(action)
    except StartupProblem:
        raise
    except Exception as error:
        if debug:
            logger.exception("start-up failed")
        raise StartupProblem(explain(error, settings)) from None


# PostgreSQL's SQLSTATEs that say what to fix in DATABASE_URL.
MISSING_DATABASE = "3D000"
REFUSED_LOGIN = {"28000", "28P01"}  # no such role, or the wrong password


def explain(error: BaseException, settings: Settings) -> str:
    """What went wrong at start, naming the setting to change; never the URL's password."""
    url = make_url_or_none(settings.database_url)
    text = str(error).lower()
    if url is None:
        return (
            "DATABASE_URL cannot be used: it is not a URL.\n"
            "Use sqlite+aiosqlite:///./customers.db or postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB."
        )
    if isinstance(
        error, ArgumentError | NoSuchModuleError | InvalidRequestError | ModuleNotFoundError
    ):
        shown = url.render_as_string(hide_password=True)
        return (
            f"DATABASE_URL {shown!r} cannot be used (no driver {url.drivername!r} here).\n"
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
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    if fault_of(error) is not None:
        return (
            f"DATABASE_URL: the database at {where} cannot be reached ({type(error).__name__}).\n"
            "Start it or fix DATABASE_URL; DB_CONNECT_TIMEOUT_SECONDS bounds each attempt."
        )
    if isinstance(error, DBAPIError):
        state = getattr(error.orig, "sqlstate", None)
        if state == MISSING_DATABASE:
            return (
                f"DATABASE_URL: the database {url.database!r} does not exist at {where}.\n"
                f"Create it first (createdb -h {url.host or 'localhost'} -p {url.port or 5432} "
                f"-U {url.username or 'postgres'} {url.database}), then start again."
            )
        if state in REFUSED_LOGIN:
            return (
                f"DATABASE_URL: the database at {where} refused the user {url.username!r}.\n"
                "Check the user and password in DATABASE_URL."
            )
        cause = (error.orig and error.orig.__cause__) or error.orig or error
        return (
            f"DATABASE_URL: the database refused to work ({type(cause).__name__}).\n"
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
    """What must hold before serving: the manifest of trusted documents (if any) can be used,
    the database answers, its schema is current (migrated when MIGRATE_ON_START), and a first
    key exists. Done once, before any worker starts."""
    check_documents(settings)
    db = open_database(settings, serving=False)
    try:
        if settings.migrate_on_start:
            found = await migrate.current_revision(db)
            await migrate.upgrade(db)
            if migrate.is_behind(found):
                logger.info("migrated the database from %s to %s", found, migrate.head_revision())
        else:
            await require_current_schema(db)
        await bootstrap_key(db, utc_now, settings.bootstrap_key_file)
    finally:
        await db.dispose()


def check_documents(settings: Settings) -> None:
    """StartupProblem when TRUSTED_DOCUMENTS_FILE names a manifest that cannot be used: not
    readable, of no known format, or a document that does not validate against the schema."""
    if settings.trusted_documents_file is None:
        return
    schema = build_schema(limits_of(settings), introspection=settings.introspection)
    try:
        persisted_documents(schema.analyser, settings)
    except ManifestProblem as problem:
        raise StartupProblem(str(problem)) from None


async def require_current_schema(db: Database) -> None:
    """StartupProblem when the database's schema is older than this code's (none, say)."""
    found = await migrate.current_revision(db)
    if migrate.is_behind(found):
        raise StartupProblem(
            f"DATABASE_URL: the database is at revision {found or 'none (no tables yet)'}, this "
            f"server needs {migrate.head_revision()}, and MIGRATE_ON_START is false.\n"
            f"Run `{command('migrate')}` first, or set MIGRATE_ON_START=true."
        )
