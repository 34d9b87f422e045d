"""TCP keepalive on both ends of every PostgreSQL connection the server opens.

A client whose host died, or whose route dropped, sends no FIN: without keepalive each side
waits for the operating system's defaults (over two hours on Linux) before it gives up on
the other. PostgreSQL's side matters most: a dead client's session may hold locks.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

# PostgreSQL's side of TCP keepalive, for every connection the server opens: a client whose
# host died or whose route dropped is found out within about 11 s (5 s idle, then 3 probes
# 2 s apart) and its session ended, and data it never acknowledges within 10 s ends it too.
KEEPALIVE_SETTINGS: Mapping[str, str] = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


def keep_alive(connection: Any) -> None:
    """The client's side of TCP keepalive on an asyncpg connection's socket (as PostgreSQL's,
    KEEPALIVE_SETTINGS): the operating system then notices a dead server on its own, even
    on a connection that sends nothing (the listener between its checks)."""
    transport = getattr(connection, "_transport", None)  # asyncpg exposes no public handle
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket has no peer to lose
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", 5),
        ("TCP_KEEPINTVL", 2),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", 10_000),
    ):
        if hasattr(socket, option):  # Linux's names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
