"""The compiled path's own SQLite connections (db/sqlite_readers.py): a point read runs on
the event loop's thread and never waits there; a busy file hands it to a reader's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from db.sqlite_readers import SQLiteReaders


@pytest.fixture
def database_file(tmp_path: Path) -> Path:
    path = tmp_path / "readers.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
    connection.execute("INSERT INTO item VALUES (1, 'one'), (2, 'two')")
    connection.close()
    return path


async def test_a_point_read_runs_on_the_loops_thread(database_file: Path) -> None:
    readers = SQLiteReaders(str(database_file), size=2, busy_timeout_ms=5_000)
    try:
        rows = await readers.fetch_point("SELECT name FROM item WHERE id = ?", [2])
        assert list(rows) == [("two",)]
        assert readers._idle == []  # no reader's connection (and thread) was opened for it
        # A read that is not a point read still takes a reader's thread.
        assert list(await readers.fetch("SELECT count(*) FROM item", [])) == [(2,)]
        assert len(readers._idle) == 1
    finally:
        await readers.close()


async def test_a_busy_file_hands_the_point_read_to_a_reader_that_waits(
    database_file: Path,
) -> None:
    """Another process holding the file (here: an exclusive lock, as a checkpoint or a
    recovery would for a moment) never makes the event loop wait: the loop's connection
    says busy at once, and a reader's thread waits with the busy timeout instead."""
    blocker = sqlite3.connect(database_file, isolation_level=None, check_same_thread=False)
    blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
    blocker.execute("BEGIN EXCLUSIVE")
    blocker.execute("UPDATE item SET name = 'deux' WHERE id = 2")
    readers = SQLiteReaders(str(database_file), size=1, busy_timeout_ms=30_000)
    try:
        began = time.monotonic()
        assert readers.fetch_here("SELECT name FROM item WHERE id = ?", [2]) is None
        assert time.monotonic() - began < 1  # busy at once: the loop's connection never waits
        read = asyncio.create_task(readers.fetch_point("SELECT name FROM item WHERE id = ?", [2]))
        async with asyncio.timeout(10):
            while not readers._turns.locked():  # noqa: ASYNC110 (polled: handed to a reader, it waits in its thread)
                await asyncio.sleep(0.01)
        assert not read.done()
        blocker.execute("COMMIT")
        blocker.close()
        assert list(await read) == [("deux",)]
        # The loop's connection reads again once the file is free.
        assert readers.fetch_here("SELECT name FROM item WHERE id = ?", [1]) == [("one",)]
    finally:
        blocker.close()
        await readers.close()


async def test_a_failed_point_read_drops_the_loops_connection(database_file: Path) -> None:
    readers = SQLiteReaders(str(database_file), size=1, busy_timeout_ms=5_000)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            readers.fetch_here("SELECT * FROM missing", [])
        assert readers._here is None  # a new one for the next read
        assert readers.fetch_here("SELECT name FROM item WHERE id = ?", [1]) == [("one",)]
    finally:
        await readers.close()
