"""Deadlines and bounds on the wire that uvicorn does not set itself.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`) and answers 503 past a
number of connections (`limit_concurrency`). Its httptools protocol (the fast C parser) has
no bound on the bytes of an unfinished request head, no deadline for a head that trickles in,
and a client that keeps sending the body of a request already answered (a 401, a 413) stops
its keep-alive timer with every byte. This protocol adds all three:

- an unfinished request line and headers of more than `max_head_bytes` get 400 and the
  connection is closed (what uvicorn's h11 protocol does with `h11_max_incomplete_event_size`);
- the head must be complete within `header_timeout` seconds of the connection opening (or of
  the next request's first byte in a read that does not finish it, or of blank lines between
  requests, which stop the keep-alive timer); else the connection is closed without a word;
- once the answer is out, unread body bytes no longer keep the connection open.

The body's own deadline, while the app reads it, is the view's (web/view.py).

At a stop (SIGTERM), uvicorn closes every connection with no request in progress. One whose
request has arrived but is not parsed yet (its bytes still in the socket's buffer, or its head
half read) would be reset with the request unanswered; this protocol answers it, with
`Connection: close`, and closes the connection after. Only a connection with nothing begun
and nothing waiting is closed at once: a request sent after that is a new one, refused.

httptools says where it is through callbacks only, so the protocol follows them: between
requests, in a head (`on_message_begin` to `on_headers_complete`), or in a body (to
`on_message_complete`). A head that arrives in one read, as nearly all do, sets no timer. The
bound counts the bytes of the reads an unfinished head spans; a head that begins in the middle
of a read, behind a pipelined request, is counted from the next read, so it may hold at most
one read (256 KB with uvloop) more before its 400.
"""

from __future__ import annotations

import array
import asyncio
import enum
import fcntl
import termios

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TOO_LARGE = "The request line and headers are too large."


class Phase(enum.Enum):
    BETWEEN = enum.auto()  # no request begun since the last one ended (or the connection opened)
    HEAD = enum.auto()  # a request's line and headers are arriving
    BODY = enum.auto()  # its head is complete; its body (if any) is arriving


BETWEEN, HEAD, BODY = Phase.BETWEEN, Phase.HEAD, Phase.BODY


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on, and a deadline for, the request head."""

    header_timeout: float = 10.0
    max_head_bytes: int = 16 * 1024
    _phase: Phase = BETWEEN
    _head_bytes: int = 0  # bytes received since the unfinished head began (bounded above)
    _head_deadline: asyncio.TimerHandle | None = None
    _stopping: bool = False  # the server stops: the request that has arrived is the last

    def shutdown(self) -> None:
        """The server stops: answer the request that reached this connection, then close it."""
        if self.cycle is not None and not self.cycle.response_complete:
            super().shutdown()  # answered, with Connection: close (uvicorn's own)
        elif self._phase is BETWEEN and not self._bytes_waiting():
            self.transport.close()  # idle: whatever comes next is a new request
        else:
            self._stopping = True  # its head is arriving, or is in the socket's buffer

    def _bytes_waiting(self) -> bool:
        """Whether bytes wait in the socket's receive buffer, not yet read by the loop."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        count = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
        except OSError:
            return False
        return count[0] > 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()  # the first request's head is due from the connection's opening

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase is BODY and self.cycle is not None and self.cycle.response_complete:
            # The answer is out and the rest of this body will be thrown away: it must not
            # stop the keep-alive timer (uvicorn's data_received stops it on any byte), or a
            # client sending a byte now and then holds the connection forever. The parser
            # discards it; the timer closes the connection. A next request's first byte
            # stops the timer (on_message_begin).
            self._feed(data)
        else:
            if phase is not BODY:
                # Bytes of a head, or of the stretch between requests. A head completed in
                # this read starts the count afresh (on_headers_complete), so what is left
                # counts only a head still unfinished at the end of the read.
                self._head_bytes += len(data)
            super().data_received(data)
        phase = self._phase
        if phase is BODY or self.transport.is_closing():
            return
        if phase is HEAD:
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()
            else:
                self._await_head()  # a head began in this read and is not finished: due now
        elif self._head_bytes:
            # Bytes between requests that began none (httptools skips blank lines there):
            # they stopped the keep-alive timer, so the next head is due from now.
            self._await_head()

    def _feed(self, data: bytes) -> None:
        """The parser's share of uvicorn's data_received, without stopping the keep-alive timer."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    # The parser's callbacks: where in a request the connection is.

    def on_message_begin(self) -> None:
        self._phase = HEAD
        # A new request: the connection is no longer idle (its first byte may follow a body
        # answered early, whose bytes left the keep-alive timer running).
        if self.timeout_keep_alive_task is not None:
            self._unset_keepalive_if_required()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._phase = BODY
        self._head_bytes = 0
        self._head_arrived()
        super().on_headers_complete()
        if self._stopping and self.cycle is not None:
            self.cycle.keep_alive = False  # the last request: Connection: close

    def on_message_complete(self) -> None:
        self._phase = BETWEEN
        super().on_message_complete()

    # The head's bound and deadline.

    def _refuse_head(self) -> None:
        self.logger.warning(TOO_LARGE)
        if self.cycle is None or self.cycle.response_complete:
            self.send_400_response(TOO_LARGE)
        else:  # an answer to an earlier request is being written: a 400 cannot go in between
            self.transport.close()

    def _await_head(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a request still being answered: its time runs from now.
            self._await_head()
            return
        self.transport.close()


def edge_protocol(header_timeout: float, max_head_bytes: int) -> type[EdgeProtocol]:
    """The protocol class for uvicorn's `http=`, with this deadline and bound on request heads."""
    return type(
        "EdgeProtocol",
        (EdgeProtocol,),
        {"header_timeout": header_timeout, "max_head_bytes": max_head_bytes},
    )
