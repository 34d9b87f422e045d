"""kill -9 under concurrent writes, on both backends: no acknowledged write is ever lost.

Each round starts a real server, lets several writers create customers at once, kills the
server with SIGKILL mid-stream, and then checks that every create that was answered with a
customer is in the database (and, on SQLite, that the file's integrity check is ok). CI runs
a few rounds; `CRASH_ROUNDS=20` runs more.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import httpx
from sqlalchemy import text

from db.engine import Database
from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import operation
from tests.support.servers import running_server

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "3"))
WRITERS = 8
PER_ROUND = 40  # acknowledged creates before the kill


def write_until_dead(url: str, prefix: str, acknowledged: list[str], stop: threading.Event) -> None:
    headers = {"authorization": f"Bearer {TEST_API_KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        n = 0
        while not stop.is_set():
            external_id = f"{prefix}-{n}"
            n += 1
            data = {"email": f"{external_id}@example.com"}
            variables = {"input": {"externalCustomerId": external_id, "data": data}}
            try:
                response = client.post(
                    "/graphql", json={"query": operation("create_customer"), "variables": variables}
                )
            except httpx.HTTPError:
                return  # the server died under us: this write was never acknowledged
            if response.status_code != 200:
                continue  # not acknowledged (a 503 while the server restarts, say)
            payload = response.json()["data"]["createCustomer"]
            assert payload["userErrors"] == [], payload
            acknowledged.append(external_id)


async def stored_ids(database_url: str) -> set[str]:
    db = Database(database_url)
    try:
        async with db.read() as session:
            rows = await session.execute(text("SELECT external_customer_id FROM customer"))
            found = {row[0] for row in rows}
            if db.is_sqlite:
                check = await session.execute(text("PRAGMA integrity_check"))
                assert check.scalar_one() == "ok"
        return found
    finally:
        await db.dispose()


def test_no_acknowledged_write_is_lost_to_kill_9(database_url: str) -> None:
    acknowledged: list[str] = []
    for round_ in range(ROUNDS):
        with running_server(database_url) as server:
            stop = threading.Event()
            writers = [
                threading.Thread(
                    target=write_until_dead,
                    args=(server.url, f"r{round_}w{w}", acknowledged, stop),
                )
                for w in range(WRITERS)
            ]
            goal = len(acknowledged) + PER_ROUND
            for writer in writers:
                writer.start()
            deadline = time.monotonic() + 60
            while len(acknowledged) < goal:
                assert time.monotonic() < deadline, "the writers made no progress"
                time.sleep(0.01)  # polling the writers' progress, with a deadline
            assert server.process is not None
            server.process.kill()  # SIGKILL: no shutdown, no flush, mid-write
            server.stopped = True
            server.process.wait(timeout=30)
            stop.set()
            for writer in writers:
                writer.join(timeout=60)
        missing = set(acknowledged) - asyncio.run(stored_ids(database_url))
        assert not missing, f"round {round_}: {len(missing)} acknowledged writes lost"
    assert len(acknowledged) >= ROUNDS * PER_ROUND
