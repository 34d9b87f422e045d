"""Every way a start can fail prints a line or two naming the setting and what to do, exits
non-zero, and shows no traceback (LOG_LEVEL=debug shows it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import ROOT


def start(**settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings}
    command = [sys.executable, "server.py", "--port", "0"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the probe is closed


def assert_explained(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, done.stderr  # the problem, and what to do
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


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
