"""Webhook receivers for tests, on 127.0.0.1 in threads of their own, so they answer while
the test's event loop (or a blocking helper) is busy: `receiving`, an HTTP server that
answers as a policy says, and `dripping`, a hostile one that never finishes its answer."""

from __future__ import annotations

import socket
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
    connections: int = 0  # TCP connections the sender opened
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
def receiving(policy: Policy = lambda _n: 204, answer: bytes = b"") -> Iterator[Receiver]:
    """A receiver at http://127.0.0.1:<free port>/hook until the block ends, answering with
    the body `answer`. It keeps connections alive (HTTP/1.1), as real receivers do."""
    count = 0
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with receiver.lock:
                receiver.connections += 1

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
            body = b"" if status in (204, 304) else answer  # those never have a body
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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


@dataclass
class Dripping:
    """A receiver that answers every request a byte at a time (see `dripping`)."""

    url: str
    opened: list[float] = field(default_factory=list)  # time.monotonic() of each request
    closed: list[float] = field(default_factory=list)  # ... and of the sender hanging up
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for_request(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while not self.opened:
            assert time.monotonic() < deadline, "no request reached the dripping receiver"
            time.sleep(0.02)


@contextmanager
def dripping(every: float) -> Iterator[Dripping]:
    """A hostile receiver at http://127.0.0.1:<free port>/hook: it reads each request, then
    sends its response headers one byte every `every` seconds, never finishing them, until
    the sender hangs up (or the block ends). A timeout per read longer than `every` never
    fires."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    receiver = Dripping(f"http://127.0.0.1:{listener.getsockname()[1]}/hook")

    def drip(connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                request += chunk
            with receiver.lock:
                receiver.opened.append(time.monotonic())
            for byte in b"HTTP/1.1 200 OK\r\nx-drip: " + b"a" * 10_000:
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    break  # the sender hung up
                if stop.wait(every):
                    return
                if _hung_up(connection):
                    break
            with receiver.lock:
                receiver.closed.append(time.monotonic())

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drip, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        stop.set()
        thread.join()
        listener.close()


def _hung_up(connection: socket.socket) -> bool:
    """Whether the peer closed the connection (without blocking)."""
    connection.setblocking(False)
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        connection.setblocking(True)
