"""Schema migrations with Alembic: the only way the tables are made or changed, on every backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from db.engine import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any fixed number: the key of the PostgreSQL advisory lock that makes concurrent upgrades
# (several servers starting at once) wait for each other instead of racing.
_LOCK_KEY = 4_224_242_001


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to `revision` (the latest by default); does nothing when it is there."""
    await _run(db, lambda config: command.upgrade(config, revision))


async def downgrade(db: Database, revision: str) -> None:
    """Take the schema back to `revision` (`base` drops every table)."""
    await _run(db, lambda config: command.downgrade(config, revision))


async def current_revision(db: Database) -> str | None:
    """The revision the database is at (a read: on SQLite it takes no write lock)."""
    async with db.read() as session:
        connection = await session.connection()
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def head_revision() -> str:
    """The latest revision in db/migrations."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def is_behind(revision: str | None) -> bool:
    """Whether a database at `revision` needs this code's migrations: it has none yet, or one
    older than the head. A revision this code does not know is newer (a later deploy's): a
    server of this version may still serve it, as in a rolling deploy."""
    if revision is None:
        return True
    script = ScriptDirectory.from_config(_config())
    known = {r.revision for r in script.walk_revisions()}
    return revision in known and revision != head_revision()


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def _run(db: Database, action: Callable[[Config], object]) -> None:
    # One transaction for the whole run: on SQLite it begins IMMEDIATE (the write lock), on
    # PostgreSQL it takes the advisory lock; either way a second process waits, then finds
    # the schema already at the revision it wants.
    async with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        await connection.run_sync(lambda sync: action(_config(sync)))
