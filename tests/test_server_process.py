"""End to end: real `python server.py` processes on free ports, spoken to over real HTTP."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from db import customers, kyc, migrate
from db.driver import WriteDriver
from db.engine import Database
from db.models import KycStatus, KycType, KycVerification, utc_now
from tests.support.databases import TEST_API_KEY, Databases
from tests.support.graphql_client import operation
from tests.support.paths import ROOT
from tests.support.servers import running_server

AUTH = {"authorization": f"Bearer {TEST_API_KEY}"}


def graphql(client: httpx.Client, name: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": operation(name), "variables": variables})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_real_server_creates_and_reads_a_customer(database_url: str) -> None:
    with (
        running_server(database_url) as server,
        httpx.Client(base_url=server.url, headers=AUTH) as client,
    ):
        created = graphql(
            client,
            "create_customer",
            input={
                "externalCustomerId": "e2e-1",
                "data": {"email": "E2E@Example.com", "phone": "+447400123456"},
            },
        )
        assert created["createCustomer"]["userErrors"] == []
        read = graphql(client, "customer", externalCustomerId="e2e-1")["customer"]
        assert (read["data"]["email"], read["data"]["phone"]) == (
            "E2E@example.com",
            "+447400123456",
        )
        page = client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200
        assert "graphiql" in page.text.lower()


def test_first_start_writes_one_key_to_a_private_file(tmp_path: Path) -> None:
    database, key_file = tmp_path / "new.db", tmp_path / "secrets" / "first-key.txt"
    key_file.parent.mkdir()
    url = f"sqlite+aiosqlite:///{database}"
    with running_server(url, BOOTSTRAP_KEY_FILE=str(key_file)) as server:
        while str(key_file) not in server.lines.get(timeout=60):  # the path, on stderr
            pass
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert re.fullmatch(r"cak_\S+", key)
        with httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {key}"}
        ) as client:
            assert graphql(client, "customer", externalCustomerId="x") == {"customer": None}
            created = graphql(
                client,
                "create_customer",
                input={"externalCustomerId": "c-1", "data": {"email": "ann@example.com"}},
            )
            assert created["createCustomer"]["userErrors"] == []  # every scope
    assert database.exists()
    assert key not in "".join(server.printed)  # never on stdout
    assert key not in "".join(server.log)  # nor in the log stream
    assert '{"Authorization": "Bearer <the key>"}' in "".join(server.log)  # how to use it
    key_file.unlink()
    with running_server(url, BOOTSTRAP_KEY_FILE=str(key_file)) as again:
        pass
    assert not key_file.exists()  # a key exists: nothing is made or written
    assert str(key_file) not in "".join(again.log)


def test_migrate_command(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"}
    done = subprocess.run(
        [sys.executable, "server.py", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"database at revision {migrate.head_revision()}\n"


async def add_stale_verifications(database_url: str, count: int) -> None:
    """Customers whose PENDING verification was started two days ago, past any default ttl."""
    two_days_ago = utc_now() - timedelta(days=2)
    db = Database(database_url)
    async with db.write() as session:
        for n in range(count):
            data = {"email": f"stale{n}@example.com"}
            assert (
                await customers.create_customer(
                    await WriteDriver.of(session), f"s-{n}", data, now=two_days_ago, who="tests"
                )
            ).customer
            await kyc.start_verification(
                session, f"s-{n}", KycType.PROOF_OF_ID, two_days_ago, who="tests"
            )
    await db.dispose()


async def statuses(database_url: str) -> list[KycStatus]:
    db = Database(database_url)
    async with db.read() as session:
        found = list(await session.scalars(select(col(KycVerification.status))))
    await db.dispose()
    return found


def test_expire_kyc_command_runs_one_sweep(database_url: str) -> None:
    asyncio.run(add_stale_verifications(database_url, 1))

    def run() -> str:
        env = {**os.environ, "DATABASE_URL": database_url}
        command = [sys.executable, "server.py", "expire-kyc"]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run() == "expired 1 KYC verifications\n"
    assert run() == "expired 0 KYC verifications\n"


# -- several servers on one PostgreSQL database ------------------------------------------------


@pytest.fixture
def shared_postgres(databases: Databases) -> Iterator[str]:
    url = databases.url_for("postgresql")
    yield url
    databases.drop(url)


def expiries(log: list[str]) -> int:
    """How many verifications a server's sweeps say they expired, in all."""
    return sum(
        int(m.group(1)) for m in re.finditer(r"expired (\d+) KYC verifications", "".join(log))
    )


def test_two_servers_on_one_postgres_database(shared_postgres: str) -> None:
    stale = 60
    log: queue.Queue[str] = queue.Queue()
    sweeping = {"KYC_SWEEP_INTERVAL_SECONDS": "0.05"}
    with (
        running_server(shared_postgres, log, **sweeping) as one,
        running_server(shared_postgres, log, **sweeping) as two,
        httpx.Client(base_url=one.url, headers=AUTH) as first,
        httpx.Client(base_url=two.url, headers=AUTH) as second,
    ):
        # The stale rows appear at once while both sweeps run, so both go for the same rows.
        asyncio.run(add_stale_verifications(shared_postgres, stale))
        expired = 0
        while expired < stale:
            if match := re.search(r"expired (\d+) KYC verifications", log.get(timeout=60)):
                expired += int(match.group(1))
        assert asyncio.run(statuses(shared_postgres)) == [KycStatus.EXPIRED] * stale

        # Written through one, read through the other.
        created = graphql(
            first,
            "create_customer",
            input={"externalCustomerId": "both-1", "data": {"email": "both@example.com"}},
        )
        assert created["createCustomer"]["userErrors"] == []
        read = graphql(second, "customer", externalCustomerId="both-1")["customer"]
        assert read["id"] == created["createCustomer"]["customer"]["id"]

        # Concurrent creates of one id, spread over both servers: one customer, the rest TAKEN.
        async def race() -> list[dict[str, Any]]:
            async with (
                httpx.AsyncClient(base_url=one.url, headers=AUTH) as a,
                httpx.AsyncClient(base_url=two.url, headers=AUTH) as b,
            ):
                requests = [
                    (a if n % 2 else b).post(
                        "/graphql",
                        json={
                            "query": operation("create_customer"),
                            "variables": {
                                "input": {
                                    "externalCustomerId": "race",
                                    "data": {"email": f"race{n}@example.com"},
                                }
                            },
                        },
                    )
                    for n in range(10)
                ]
                responses = await asyncio.gather(*requests)
            return [r.json()["data"]["createCustomer"] for r in responses]

        payloads = asyncio.run(race())
        assert sum(p["customer"] is not None for p in payloads) == 1
        assert [
            [(e["field"], e["code"]) for e in p["userErrors"]]
            for p in payloads
            if p["customer"] is None
        ] == [[(["input", "externalCustomerId"], "TAKEN")]] * 9
    # Every sweep of both servers, read once they have stopped: each row was expired by one of
    # them, so their counts add up to the number of rows, not more.
    assert expiries(one.log) + expiries(two.log) == stale
