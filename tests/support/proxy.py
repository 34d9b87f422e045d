"""A TCP proxy on 127.0.0.1 that a test can cut or black-hole, to make a database sick.

- `cut()`: every open connection is closed and new ones are refused (a database that died).
- `black_hole()`: connections are accepted and bytes are swallowed, nothing comes back (a
  database behind a dropped route, the worst case: only timeouts notice).
- `restore()`: forward again; connections made while sick stay broken, new ones work.
- `freeze()`: the connections open now go silent both ways and stay open (half-open: a peer
  that vanished without a FIN); new connections work.
- `freeze_after(sent, answer)`: the first connection whose client sends `sent` goes silent,
  both ways, the moment the server's reply holds `answer` (which is swallowed): a client cut
  off right after a given statement ran, say inside a transaction.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

FORWARD, CUT, BLACK_HOLE = "forward", "cut", "black hole"


@dataclass
class Link:
    """One client's connection through the proxy."""

    frozen: bool = False
    suspect: bool = False  # it sent the trap's `sent`: its next matching reply springs it


@dataclass
class Trap:
    """Set by freeze_after: what springs it, and an event set once it has."""

    sent: bytes
    answer: bytes
    sprung: threading.Event = field(default_factory=threading.Event)


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = FORWARD
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        self.links: list[Link] = []
        self.trap: Trap | None = None
        self.accepted = 0  # connections accepted, refused ones included
        threading.Thread(target=self._accept, daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.add(sock)

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._track(client)
            self.accepted += 1
            if self.mode == CUT:
                self._close(client)
            elif self.mode == BLACK_HOLE:
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
            else:
                threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            self._close(client)
            return
        upstream.settimeout(None)
        self._track(upstream)
        link = Link()
        with self.lock:
            self.links.append(link)
        for source, sink, out in ((client, upstream, True), (upstream, client, False)):
            threading.Thread(target=self._pipe, args=(source, sink, link, out), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, link: Link, out: bool) -> None:
        try:
            while data := source.recv(65536):
                self._watch(link, data, out)
                if self.mode == BLACK_HOLE or link.frozen:
                    continue  # swallowed: neither side hears anything again
                if self.mode == CUT:
                    break
                sink.sendall(data)
        except OSError:
            pass
        if self.mode != BLACK_HOLE and not link.frozen:
            self._close(source)
            self._close(sink)

    def _watch(self, link: Link, data: bytes, out: bool) -> None:
        """Spring the trap on `link` when this chunk (`out`: from the client) says so."""
        trap = self.trap
        if trap is None or trap.sprung.is_set():
            return
        with self.lock:
            if out and trap.sent in data and not any(other.suspect for other in self.links):
                link.suspect = True
            elif not out and link.suspect and trap.answer in data:
                link.frozen = True
                trap.sprung.set()

    def _swallow(self, client: socket.socket) -> None:
        with suppress(OSError):
            while client.recv(65536):
                pass

    def _close(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(sock)
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            sock.close()

    def _close_all(self) -> None:
        with self.lock:
            open_sockets = list(self.sockets)
        for sock in open_sockets:
            self._close(sock)

    def cut(self) -> None:
        self.mode = CUT
        self._close_all()

    def black_hole(self) -> None:
        self.mode = BLACK_HOLE

    def restore(self) -> None:
        """Forward again; connections opened while black-holed are closed (they are lost)."""
        if self.mode == BLACK_HOLE:
            self._close_all()
        self.mode = FORWARD

    def freeze(self) -> None:
        """The connections open now fall silent, both ways, and stay open; new ones work."""
        with self.lock:
            for link in self.links:
                link.frozen = True

    def freeze_after(self, sent: bytes, answer: bytes) -> threading.Event:
        """Arm the trap (see the module's docstring); the event is set once it has sprung."""
        self.trap = Trap(sent, answer)
        return self.trap.sprung

    def close(self) -> None:
        self.closed = True
        with suppress(OSError):
            self.listener.close()
        self._close_all()


@contextmanager
def proxy_to(host: str, port: int) -> Iterator[Proxy]:
    proxy = Proxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
