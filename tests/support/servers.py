"""Running `python server.py` for end-to-end tests: on a free port, its log read as it comes."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.log_privacy import append
from tests.support.paths import ROOT

READY = re.compile(r"Uvicorn running on (http://\S+)")


@dataclass
class Server:
    """A running server: where it listens, and its log lines as they come."""

    url: str
    pid: int = 0
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    log: list[str] = field(default_factory=list)  # stderr: the log stream
    console: queue.Queue[str] = field(default_factory=queue.Queue)  # stdout, line by line
    printed: list[str] = field(default_factory=list)  # all of stdout, complete once it stops
    process: subprocess.Popen[str] | None = None
    stopped: bool = False  # the test stopped it itself (and checked how)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` and wait for the exit; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        self.stopped = True
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # A server that does not stop fails its test, never hangs the run.
            self.process.kill()
            self.process.wait()
            raise


@contextmanager
def running_server(
    database_url: str, lines: queue.Queue[str] | None = None, **settings: str
) -> Iterator[Server]:
    """`python server.py` on port 0 (the OS picks a free one) until the block ends.

    Its log lines go to `lines` (a queue several servers may share) as they come. Its rate
    limit bucket holds enough for any test, as the in-process apps' do (tests/conftest.py):
    tests drive servers faster than any client should, and tests/test_rate_limits.py proves
    the limits; a test may set RATE_LIMIT_MAX_COST itself."""
    env = {
        **os.environ,
        "RATE_LIMIT_MAX_COST": "1000000000",
        "DATABASE_URL": database_url,
        **settings,
    }
    port = settings.pop("PORT", "0")  # 0: the OS picks a free one
    command = [sys.executable, "server.py", "--host", "127.0.0.1", "--port", port]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with process:
        assert process.stderr is not None
        url = None
        early: list[str] = []  # what it logs while it starts (migrations, a first key's file)
        for line in process.stderr:  # blocks until uvicorn says where it listens, or it dies
            early.append(line)
            if match := READY.search(line):
                url = match.group(1)
                break
        assert url, "the server exited before it was ready"
        server = Server(url, process.pid) if lines is None else Server(url, process.pid, lines)
        for line in early:
            server.log.append(line)
            server.lines.put(line)
        server.process = process

        def drain() -> None:  # keep reading, or the server blocks once the pipe is full
            for line in process.stderr or ():
                server.log.append(line)
                server.lines.put(line)

        def drain_console() -> None:
            for line in process.stdout or ():
                server.printed.append(line)
                server.console.put(line)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        console_reader = threading.Thread(target=drain_console, daemon=True)
        console_reader.start()
        try:
            yield server
        finally:
            if not server.stopped:
                assert server.stop() == 0  # a graceful stop is a success
            reader.join()
            console_reader.join()
            append(server.log)  # scanned for personal data when the run ends
            if process.returncode == 0:
                assert "Application shutdown complete." in "".join(server.log)


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python server.py ARGS` on this database: a process of its own, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "server.py", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
