"""End to end: a real `python server.py` process on a free port, spoken to over real HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from db import customers, kyc
from db.engine import Database
from db.models import KycType, utc_now
from tests.conftest import ROOT, operation

READY = re.compile(r"Uvicorn running on (http://\S+)")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The base URL of a server started on port 0 (the OS picks a free one) and its database."""
    database = tmp_path / "served.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    process = subprocess.Popen(
        [sys.executable, "server.py", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    with process:
        assert process.stderr is not None
        url = None
        for line in process.stderr:  # blocks until uvicorn says where it listens, or it dies
            if match := READY.search(line):
                url = match.group(1)
                break
        assert url, "the server exited before it was ready"
        # Keep reading the log, or the server blocks once the pipe's buffer is full.
        rest: list[str] = []
        drain = threading.Thread(target=lambda: rest.extend(process.stderr or ()), daemon=True)
        drain.start()
        try:
            yield url, database
        finally:
            process.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the signal it caught.
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
            drain.join()
            assert "Application shutdown complete." in "".join(rest)


def test_real_server_creates_and_reads_a_customer(server: tuple[str, Path]) -> None:
    url, database = server
    with httpx.Client(base_url=url, timeout=30) as client:
        created = client.post(
            "/graphql",
            json={
                "query": operation("create_customer"),
                "variables": {
                    "input": {
                        "externalCustomerId": "e2e-1",
                        "data": {"email": "E2E@Example.com", "phone": "+447400123456"},
                    }
                },
            },
        ).json()
        assert created["data"]["createCustomer"]["userErrors"] == []
        read = client.post(
            "/graphql",
            json={"query": operation("customer"), "variables": {"externalCustomerId": "e2e-1"}},
        ).json()
        assert read["data"]["customer"]["data"]["email"] == "E2E@example.com"
        assert read["data"]["customer"]["data"]["phone"] == "+447400123456"

        page = client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200
        assert "graphiql" in page.text.lower()
    assert database.exists()


async def test_expire_kyc_command_runs_one_sweep(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sweep.db'}"
    db = Database(database_url)
    await db.create_tables()
    async with db.write() as session:
        two_days_ago = utc_now() - timedelta(days=2)
        data = {"email": "a@example.com"}
        assert (await customers.create_customer(session, "c-1", data, now=two_days_ago)).customer
        await kyc.start_verification(session, "c-1", KycType.PROOF_OF_ID, two_days_ago)
    await db.dispose()

    def run() -> str:
        env = {**os.environ, "DATABASE_URL": database_url}
        command = [sys.executable, "server.py", "expire-kyc"]
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout

    assert run() == "expired 1 KYC verifications\n"
    assert run() == "expired 0 KYC verifications\n"
