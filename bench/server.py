"""A real `python server.py` process for a bench script, on a free port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Running:
    base: str  # http://127.0.0.1:PORT
    pid: int


@contextmanager
def running_server(database_url: str, **settings: str) -> Iterator[Running]:
    """The server on `database_url` (sweeps off, other `settings` as environment variables)
    until the block ends."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KYC_SWEEP_INTERVAL_SECONDS": "0",
        **settings,
    }
    command = [sys.executable, "server.py", "--port", "0"]
    with subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) as server:
        assert server.stderr is not None
        base = None
        for line in server.stderr:
            if match := re.search(r"Uvicorn running on (http://\S+)", line):
                base = match.group(1)
                break
        assert base, "the server did not start"
        # Keep reading its log, or the server blocks once the pipe is full.
        threading.Thread(target=server.stderr.read, daemon=True).start()
        try:
            yield Running(base, server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
