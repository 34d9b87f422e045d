"""Deadlines on the wire that uvicorn does not set itself.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`), bounds the bytes of an
unfinished request head (`h11_max_incomplete_event_size`) and answers 503 past a number of
connections (`limit_concurrency`). It has no deadline for a request head that trickles in,
and a client that keeps sending the body of a request already answered (a 401, a 413) stops
its keep-alive timer with every byte. This protocol adds both: the head must be complete
within `header_timeout` seconds of the connection opening (or of the next request's first
byte), and once the answer is out, unread body bytes no longer keep the connection open.
The body's own deadline, while the app reads it, is the view's (web/view.py).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class EdgeProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the request head."""

    header_timeout: float = 10.0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._answered_early():
            # The answer is out and the rest of this body will be thrown away: it must not
            # stop the keep-alive timer, or a client sending a byte now and then holds the
            # connection forever. uvicorn discards the bytes; the timer closes the connection.
            self.conn.receive_data(data)
            self.handle_events()
            return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._await_head()  # the first bytes of a request: its head is due now
        else:
            self._head_arrived()

    def _answered_early(self) -> bool:
        cycle = self.cycle
        return (
            cycle is not None
            and cycle.response_complete
            and self.conn.our_state is h11.DONE
            and self.conn.their_state is h11.SEND_BODY
        )

    def _await_head(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def edge_protocol(header_timeout: float) -> type[EdgeProtocol]:
    """The protocol class for uvicorn's `http=`, with this deadline on request heads."""
    return type("EdgeProtocol", (EdgeProtocol,), {"header_timeout": header_timeout})
