"""A TCP proxy on 127.0.0.1 that a test can cut or black-hole, to make a database sick.

- `cut()`: every open connection is closed and new ones are refused (a database that died).
- `black_hole()`: connections are accepted and bytes are swallowed, nothing comes back (a
  database behind a dropped route, the worst case: only timeouts notice).
- `restore()`: forward again; connections made while sick stay broken, new ones work.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

FORWARD, CUT, BLACK_HOLE = "forward", "cut", "black hole"


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = FORWARD
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
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
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.mode == BLACK_HOLE:
                    continue  # swallowed: neither side hears anything again
                if self.mode == CUT:
                    break
                sink.sendall(data)
        except OSError:
            pass
        if self.mode != BLACK_HOLE:
            self._close(source)
            self._close(sink)

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
