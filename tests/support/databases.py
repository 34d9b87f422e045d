"""A fresh, migrated database for each test, on SQLite and on PostgreSQL.

Each backend builds a template once per session (migrated, and seeded where a module asks
for it); every test then gets its own copy: a copied file on SQLite, `CREATE DATABASE ...
TEMPLATE` on PostgreSQL. Tests never share a database, and none pays for migrations.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from db import keys, migrate
from db.engine import Database
from db.models import ApiKey, utc_now

BACKENDS = ["sqlite", "postgresql"]
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI") == "true"

Build = Callable[[Database], Awaitable[object]]
# Every test database holds this key with every scope (so no server prints a bootstrap key);
# the HTTP fixtures send it.
TEST_API_KEY = keys.new_key()


async def add_key(db: Database, name: str, key: str, scopes: Iterable[keys.Scope]) -> None:
    """Store a key whose value the test knows (create_key makes its own)."""
    async with db.write() as session:
        session.add(
            ApiKey(
                name=name,
                prefix=key[: keys.SHOWN_CHARACTERS],
                key_hash=keys.hash_key(key),
                scopes=" ".join(sorted(scopes)),
                created_at=utc_now(),
            )
        )


def _dsn(url: str) -> str:
    """The URL as asyncpg takes it (no +driver)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


class Databases:
    """Templates per backend and name, and the per-test copies made from them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.templates: dict[tuple[str, str], str] = {}
        self.created: list[str] = []
        self.postgres_problem: str | None = None
        self.postgres_checked = False

    def require(self, backend: str) -> None:
        """Skip (or, in CI, fail) a PostgreSQL test when the server cannot be reached."""
        if backend != "postgresql":
            return
        if not self.postgres_checked:
            self.postgres_checked = True
            try:
                asyncio.run(_admin("SELECT 1"))
            except (OSError, asyncpg.PostgresError) as error:
                self.postgres_problem = f"PostgreSQL at {POSTGRES_URL} unreachable: {error}"
        if self.postgres_problem:
            if IN_CI:
                pytest.fail(f"CI=true requires PostgreSQL: {self.postgres_problem}")
            pytest.skip(f"{self.postgres_problem} (set TEST_POSTGRES_URL)")

    def url_for(self, backend: str, name: str = "migrated", build: Build | None = None) -> str:
        """The URL of a new database, a copy of the template `name` (made with `build`)."""
        self.require(backend)
        template = self.templates.get((backend, name))
        if template is None:
            template = self.templates[(backend, name)] = self._build(backend, name, build)
        if backend == "sqlite":
            copy = self.root / f"{uuid.uuid4().hex}.db"
            shutil.copyfile(make_url(template).database or "", copy)
            return f"sqlite+aiosqlite:///{copy}"
        database = f"customer_test_{uuid.uuid4().hex[:12]}"
        template_name = make_url(template).database
        asyncio.run(_admin(f'CREATE DATABASE "{database}" TEMPLATE "{template_name}"'))
        self.created.append(database)
        return _with_database(POSTGRES_URL, database)

    def _build(self, backend: str, name: str, build: Build | None) -> str:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{self.root / f'template_{name}.db'}"
        else:
            database = f"customer_template_{name}_{uuid.uuid4().hex[:8]}"
            asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
            self.created.append(database)
            url = _with_database(POSTGRES_URL, database)

        async def run() -> None:
            db = Database(url)
            try:
                await migrate.upgrade(db)
                await add_key(db, "tests", TEST_API_KEY, keys.ALL_SCOPES)
                if build is not None:
                    await build(db)
            finally:
                # Closing every connection checkpoints SQLite's WAL into the file, and leaves
                # PostgreSQL's template free to be copied.
                await db.dispose()

        asyncio.run(run())
        return url

    def drop(self, url: str) -> None:
        """Drop a PostgreSQL copy now (a test's database, once it is done)."""
        database = make_url(url).database
        if url.startswith("postgresql") and database in self.created:
            self.created.remove(database)
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))

    def drop_all(self) -> None:
        for database in self.created:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        self.created.clear()
