"""At a stop, the connections the kernel has queued are taken in before the listener closes.

A client's connection is complete once the kernel has queued it on the listening socket; the
loop accepts it on its next turn. uvicorn's stop closes the listening sockets first, and the
kernel resets every connection still queued, with the request it carries: on a busy server,
or one signalled as it starts, some of the requests that reached it before the signal. Taken
in first, each is one of the server's connections, and its request is answered with
`Connection: close` (web/timeouts.py's EdgeProtocol.shutdown); the listener closes after.
"""

from __future__ import annotations

import asyncio
import os
import socket

import uvicorn


async def accept_queued(server: uvicorn.Server) -> None:
    """Accept every connection queued on `server`'s listening sockets, as the server would."""
    config = server.config
    loop = asyncio.get_running_loop()

    def protocol() -> asyncio.Protocol:
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=server.server_state, app_state=server.lifespan.state
        )

    for listening in server.servers:
        for queued in listening.sockets:
            # A duplicate of the descriptor: the loop's own socket object is left alone.
            listener = socket.socket(fileno=os.dup(queued.fileno()))
            try:
                listener.setblocking(False)
                while True:
                    try:
                        connection, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break  # none queued any more
                    connection.setblocking(False)
                    await loop.connect_accepted_socket(protocol, connection)
            finally:
                listener.close()
