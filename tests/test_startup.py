"""Every way a start can fail prints a line or two naming the setting and what to do, exits
non-zero, and shows no traceback (LOG_LEVEL=debug shows it)."""

from __future__ import annotations

import base64
import os
import shlex
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import make_url

from db import migrate
from tests.support.databases import POSTGRES_URL, Databases
from tests.support.paths import ROOT
from web.startup import run_to_end


def start(**settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings}
    command = [sys.executable, "server.py", "--port", "0"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the probe is closed


def assert_explained(
    done: subprocess.CompletedProcess[str], *words: str, secrets: Iterable[str] = ()
) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, done.stderr  # the problem, and what to do
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, done.stderr
    for secret in secrets:
        assert secret not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://postgres@127.0.0.1/test", ["DATABASE_URL", "postgresql+asyncpg://"]),
        ("mysql://nobody@127.0.0.1/x", ["DATABASE_URL", "sqlite+aiosqlite://"]),
        ("not a url", ["DATABASE_URL", "cannot be used"]),
    ],
)
def test_an_unusable_database_url(url: str, words: list[str]) -> None:
    assert_explained(start(DATABASE_URL=url), *words)


def test_an_unreachable_database() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"
    assert_explained(start(DATABASE_URL=url), "DATABASE_URL", "cannot be reached", "Start it")


def test_a_wrong_setting() -> None:
    assert_explained(start(WORKERS="0"), "WORKERS", "greater than or equal to 1")


@pytest.fixture
def read_only_directory(tmp_path: Path) -> Iterator[Path]:
    """A read-only file system (root may write to any directory whatever its mode)."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
        directory.chmod(0o555)  # an ordinary user cannot write here either
        yield directory
        return
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)


def test_a_read_only_directory(read_only_directory: Path) -> None:
    url = f"sqlite+aiosqlite:///{read_only_directory / 'customers.db'}"
    assert_explained(start(DATABASE_URL=url), "DATABASE_URL", "cannot be created or written")


def test_debug_shows_the_traceback_as_well() -> None:
    done = start(DATABASE_URL="postgresql://postgres@127.0.0.1/test", LOG_LEVEL="debug")
    assert done.returncode != 0
    assert "Traceback" in done.stderr
    assert "DATABASE_URL" in done.stderr


# Values of secret settings: none may appear in what a failed start prints.
SECRETS = {
    "CURSOR_SECRET": "cursor-secret-never-shown",
    "WEBHOOK_SECRET_KEY": base64.b64encode(b"w" * 32).decode(),
    "METRICS_TOKEN": "metrics-token-never-shown",
}


def test_a_database_that_does_not_exist_says_how_to_create_it(databases: Databases) -> None:
    databases.require("postgresql")
    name = f"customer_missing_{uuid.uuid4().hex[:12]}"
    url = make_url(POSTGRES_URL).set(database=name, password="password-never-shown")
    done = start(DATABASE_URL=url.render_as_string(hide_password=False), **SECRETS)
    assert_explained(
        done,
        f"DATABASE_URL: the database '{name}' does not exist",
        f"createdb -h {url.host} -p {url.port or 5432} -U {url.username} {name}",
        secrets=[*SECRETS.values(), "password-never-shown"],
    )


def test_an_unmigrated_database_with_migrations_off_names_the_revisions_and_the_command(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    done = start(DATABASE_URL=url, MIGRATE_ON_START="false", **SECRETS)
    head = migrate.head_revision()
    assert_explained(
        done,
        f"at revision none (no tables yet), this server needs {head}",
        "MIGRATE_ON_START",
        secrets=SECRETS.values(),
    )
    # The command it names works as printed, from where the server was started.
    printed = done.stderr.split("`")[1]
    migrated = subprocess.run(
        shlex.split(printed), cwd=ROOT, env={**os.environ, "DATABASE_URL": url},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"database at revision {head}\n"


def test_a_bad_webhook_key_is_refused_before_the_database_is_touched(tmp_path: Path) -> None:
    database = tmp_path / "untouched.db"
    done = start(
        DATABASE_URL=f"sqlite+aiosqlite:///{database}", WEBHOOK_SECRET_KEY="notbase64-secret"
    )
    assert_explained(
        done, "WEBHOOK_SECRET_KEY: must be 32 random bytes in base64", secrets=["notbase64-secret"]
    )
    assert not database.exists()


def test_a_partial_token_configuration_names_what_is_missing_and_no_secret() -> None:
    done = start(JWT_ISSUER="https://idp.example.com/", **SECRETS)
    assert_explained(
        done, "JWT_ISSUER is set", "need JWT_AUDIENCE and JWT_JWKS_URL", secrets=SECRETS.values()
    )


def test_a_wrong_secret_setting_is_named_and_never_shown() -> None:
    done = start(METRICS_TOKEN="short-secret")
    assert_explained(
        done, "METRICS_TOKEN: String should have at least 16", secrets=["short-secret"]
    )


def test_a_start_up_run_lets_its_threads_end_before_the_loop_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosqlite closes a connection that failed to open in its own thread, which then reports
    to the loop; on a loaded machine it did so after the loop had closed, and died printing
    "RuntimeError: Event loop is closed". The thread is held here the way a busy machine
    holds it: by a job queued ahead of the close."""
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda hook: died.append(hook.exc_value))
    started: list[threading.Thread] = []

    async def open_and_fail() -> None:
        def failing_connector() -> sqlite3.Connection:
            connection._tx.put_nowait((None, lambda: time.sleep(0.5)))  # ahead of the close
            raise sqlite3.OperationalError("unable to open database file")

        connection = aiosqlite.Connection(failing_connector, iter_chunk_size=64)
        started.append(connection._thread)
        await connection

    with pytest.raises(sqlite3.OperationalError):
        run_to_end(open_and_fail)
    started[0].join(10)
    assert died == []
