"""The first key of a database: written to a new file, never over one that exists (it may hold
another database's key)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import delete, make_url

from db import keys
from db.engine import Database
from db.models import ApiKey, utc_now
from tests.support.databases import Databases
from web.bootstrap import bootstrap_key


async def delete_keys(db: Database) -> None:
    async with db.write() as session:
        await session.execute(delete(ApiKey))


def first_key(url: str, path: Path) -> Path | None:
    """Run the first start's key step on the database at `url`; the file it wrote."""

    async def run() -> Path | None:
        db = Database(url)
        try:
            return await bootstrap_key(db, utc_now, path)
        finally:
            await db.dispose()

    return asyncio.run(run())


def holds(url: str, key: str) -> bool:
    async def run() -> bool:
        db = Database(url)
        try:
            async with db.read() as session:
                return await keys.find_active_key_by_hash(session, keys.hash_key(key)) is not None
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_a_second_database_leaves_the_first_key_file_as_it_was(
    databases: Databases, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make run` on SQLite, then the same checkout on PostgreSQL, then SQLite again."""
    sqlite_url = databases.url_for("sqlite", "keyless", delete_keys)
    postgres_url = databases.url_for("postgresql", "keyless", delete_keys)
    key_file = tmp_path / "bootstrap-key.txt"

    assert first_key(sqlite_url, key_file) == key_file
    first = key_file.read_bytes()
    capsys.readouterr()

    second = first_key(postgres_url, key_file)
    parsed = make_url(postgres_url)
    label = f"postgresql-{parsed.host}-{parsed.port or 5432}-{parsed.database}"
    assert second == tmp_path / f"bootstrap-key.{label}.txt"
    assert key_file.read_bytes() == first  # byte for byte
    assert second.stat().st_mode & 0o777 == 0o600
    banner = capsys.readouterr().err
    assert str(second.resolve()) in banner
    assert f"BOOTSTRAP_KEY_FILE ({key_file}) exists already" in banner

    assert first_key(sqlite_url, key_file) is None  # it has its key: nothing is written
    assert sorted(tmp_path.iterdir()) == sorted([key_file, second])
    assert holds(sqlite_url, first.decode().strip())
    assert holds(postgres_url, second.read_text().strip())
    assert not holds(postgres_url, first.decode().strip())


def test_the_same_database_made_again_gets_a_numbered_file(
    databases: Databases, tmp_path: Path
) -> None:
    key_file = tmp_path / "bootstrap-key.txt"
    key_file.write_text("another database's key\n")
    url = databases.url_for("sqlite", "keyless", delete_keys)
    labelled = tmp_path / f"bootstrap-key.sqlite-{Path(make_url(url).database or '').name}.txt"
    labelled.write_text("this database's key, before it was made again\n")
    written = first_key(url, key_file)
    assert written == labelled.with_name(labelled.stem + ".2.txt")
    assert key_file.read_text() == "another database's key\n"
    assert labelled.read_text() == "this database's key, before it was made again\n"
