"""A request never waits for its key's last-used stamp (SQLite: a held write lock)."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import pytest
from sqlalchemy import make_url, text

from db import keys
from db.engine import Database
from db.keys import Scope
from tests.support.databases import add_key
from tests.support.graphql_client import operation

pytestmark = pytest.mark.sqlite_only


@pytest.mark.both_executors
async def test_reads_answer_while_the_last_used_stamp_cannot_be_written(
    database_url: str, db: Database, http: httpx.AsyncClient
) -> None:
    key = keys.new_key()
    await add_key(db, "fresh", key, [Scope.CUSTOMERS_READ])
    # Another process holds SQLite's write lock (the busy timeout is 30 s).
    holder = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        headers = {"authorization": f"Bearer {key}"}
        body = {"query": operation("customers")}
        # The key was never used: its stamp is due, and cannot be written now.
        response = await asyncio.wait_for(http.post("/graphql", json=body, headers=headers), 5)
        assert response.status_code == 200, response.text
        assert "errors" not in response.json()
    finally:
        holder.execute("COMMIT")
        holder.close()

    # Once the lock is free, the stamp lands.
    async def stamped() -> object:
        async with db.read() as session:
            query = text("SELECT last_used_at FROM api_key WHERE name = 'fresh'")
            return (await session.execute(query)).scalar_one()

    async with asyncio.timeout(30):
        while await stamped() is None:  # noqa: ASYNC110 (polled: the app's own background task)
            await asyncio.sleep(0.01)
