"""A webhook receiver for tests: an HTTP server on 127.0.0.1 in a thread of its own, so it
answers while the test's event loop (or a blocking helper) is busy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    status: int
    at: float  # time.monotonic()


# How to answer the n-th request (0 first): a status, or None to hold it until released.
Policy = Callable[[int], int | None]


@dataclass
class Receiver:
    url: str
    policy: Policy
    received: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)  # a request is held
    lock: threading.Lock = field(default_factory=threading.Lock)

    def succeeded(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def wait_for(self, count: int, within: float = 30) -> list[Received]:
        """The first `count` 2xx requests, waiting for them up to `within` seconds."""
        deadline = time.monotonic() + within
        while len(done := self.succeeded()) < count:
            assert time.monotonic() < deadline, f"{len(done)} of {count} webhooks arrived"
            time.sleep(0.02)
        return done


@contextmanager
def receiving(policy: Policy = lambda _n: 204) -> Iterator[Receiver]:
    """A receiver at http://127.0.0.1:<free port>/hook until the block ends."""
    count = 0
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            nonlocal count
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with receiver.lock:
                n, count = count, count + 1
            status = receiver.policy(n)
            if status is None:  # hold the request: the sender times out or dies meanwhile
                receiver.holding.set()
                receiver.released.wait(60)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.received.append(Received(headers, body, status, time.monotonic()))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the test says what matters

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", policy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()
