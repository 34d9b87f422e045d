"""SQLite on a full disk: reads keep answering, writes answer SERVICE_UNAVAILABLE saying the
storage is full, and once space is freed writes work again with nothing lost.

The database lives on a small tmpfs the test mounts (it needs root and a machine that lets
it mount; elsewhere it is skipped, saying why) and unmounts afterwards.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
from sqlalchemy import make_url

from tests.support.databases import TEST_API_KEY, Databases
from tests.support.graphql_client import operation
from tests.support.servers import running_server

HEADERS = {"authorization": f"Bearer {TEST_API_KEY}"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def write_until_full(out: BinaryIO, chunk: bytes) -> None:
    while True:
        out.write(chunk)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; returns the file that holds the space."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (b"\0" * 65536, b"\0"):  # then the last partial block
            with pytest.raises(OSError, match="No space left") as full:
                write_until_full(out, chunk)
            assert full.value.errno == errno.ENOSPC
    return filler


def create(client: httpx.Client, external_id: str, **headers: str) -> httpx.Response:
    variables = {
        "input": {
            "externalCustomerId": external_id,
            "data": {"email": f"{external_id}@example.com"},
        }
    }
    body: dict[str, Any] = {"query": operation("create_customer"), "variables": variables}
    return client.post("/graphql", json=body, headers=headers)


def read(client: httpx.Client, external_id: str) -> dict[str, Any] | None:
    body = {"query": operation("customer"), "variables": {"externalCustomerId": external_id}}
    response = client.post("/graphql", json=body)
    assert response.status_code == 200, response.text
    customer: dict[str, Any] | None = response.json()["data"]["customer"]
    return customer


def test_a_full_disk_refuses_writes_clearly_and_keeps_reads(
    databases: Databases, small_disk: Path
) -> None:
    database = small_disk / "customers.db"
    shutil.copyfile(make_url(databases.url_for("sqlite")).database or "", database)
    url = f"sqlite+aiosqlite:///{database}"
    with (
        running_server(url) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client,
    ):
        stored = [f"before-{n}" for n in range(5)]
        for external_id in stored:
            assert create(client, external_id).json()["data"]["createCustomer"]["userErrors"] == []
        filler = fill(small_disk)

        for _ in range(20):  # reads keep answering
            assert read(client, "before-1") is not None

        refused = create(client, "while-full")
        assert refused.status_code == 200  # an application/json client
        [error] = refused.json()["errors"]
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert "storage is full" in error["message"]
        strict = create(client, "while-full", accept="application/graphql-response+json")
        assert strict.status_code == 503
        assert strict.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"

        filler.unlink()
        deadline = time.monotonic() + 10
        while create(client, "after").status_code != 200 or read(client, "after") is None:
            assert time.monotonic() < deadline, "writes did not come back"
        for external_id in [*stored, "after"]:
            assert read(client, external_id) is not None
        assert read(client, "while-full") is None
