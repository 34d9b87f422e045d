"""Clients that never finish: do they hold the server? How long each connection lives, how much
the server grows, and the latency of a cheap query beside them.

    python -m bench.slow_clients [--dribblers 200] [--stallers 200] [--requests 200]

It starts a real `python server.py` on a fresh SQLite file with the default timeouts (10 s for
request heads, 30 s for bodies, 5 s idle), then opens, without a key, `--dribblers` connections
that send a request head one byte a second and `--stallers` that send a head and half a body,
then nothing. tests/test_timeouts.py runs the same clients (with shorter timeouts) and asserts
the closures and the memory bound; the latency is measured here only.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.server import running_server
from db import keys, migrate
from db.engine import Database
from db.models import utc_now

CHEAP = '{ customer(externalCustomerId: "cus_00000001") { id } }'
HEAD = b"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
BODY = b'{"query": "{ customers(first: 1) { totalCount } }", "variables": {}}'


@dataclass
class Closed:
    """One slow client's connection: how long it was open, and what the server sent."""

    seconds: float
    answer: bytes


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts)."""
    received = b""
    try:
        while chunk := await reader.read(4096):
            received += chunk
    except ConnectionError:
        pass
    return received


async def dribble_head(host: str, port: int, started: asyncio.Event) -> Closed:
    """A request head sent one byte a second, never finished in time."""
    began = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    started.set()
    closing = asyncio.ensure_future(until_closed(reader))
    try:
        for byte in HEAD * 10:
            if closing.done():
                break
            writer.write(bytes([byte]))
            await asyncio.wait([closing], timeout=1)
        answer = await closing
    except ConnectionError:
        answer = await closing
    finally:
        writer.close()
    return Closed(time.monotonic() - began, answer)


async def stall_body(
    host: str,
    port: int,
    started: asyncio.Event,
    authorization: bytes = b"",
    trickle: bool = False,
) -> Closed:
    """A complete head, then half the body it announced, then nothing (or, with `trickle`, a
    byte a second); timed from the head."""
    reader, writer = await asyncio.open_connection(host, port)
    head = HEAD + authorization + b"content-length: %d\r\n\r\n" % len(BODY)
    half = len(BODY) // 2
    writer.write(head + BODY[:half])
    began = time.monotonic()
    started.set()
    closing = asyncio.ensure_future(until_closed(reader))
    try:
        for byte in BODY[half:-1] if trickle else b"":
            await asyncio.wait([closing], timeout=1)
            if closing.done():
                break
            writer.write(bytes([byte]))
        answer = await closing
    finally:
        writer.close()
    return Closed(time.monotonic() - began, answer)


def rss_bytes(pid: int) -> int:
    """The resident memory of a process (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) * 1024


async def hold(
    host: str,
    port: int,
    dribblers: int,
    stallers: int,
    meanwhile: Callable[[], Awaitable[None]],
    authorization: bytes = b"",
) -> tuple[list[Closed], list[Closed]]:
    """Open the slow clients, run `meanwhile` once all have started, and wait for them."""
    started = [asyncio.Event() for _ in range(dribblers + stallers)]
    heads = [asyncio.ensure_future(dribble_head(host, port, e)) for e in started[:dribblers]]
    bodies = [
        asyncio.ensure_future(stall_body(host, port, e, authorization)) for e in started[dribblers:]
    ]
    await asyncio.gather(*(event.wait() for event in started))
    await meanwhile()
    return list(await asyncio.gather(*heads)), list(await asyncio.gather(*bodies))


async def prepare(url: str) -> str:
    db = Database(url)
    await migrate.upgrade(db)
    async with db.write() as session:
        key = await keys.create_key(session, "bench", keys.ALL_SCOPES, utc_now())
    await db.dispose()
    return key


async def measure(base: str, key: str, pid: int, args: argparse.Namespace) -> None:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:

        async def cheap() -> list[float]:
            timings = []
            for _ in range(args.requests):
                began = time.perf_counter()
                response = await client.post("/graphql", json={"query": CHEAP})
                timings.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.text
            return timings

        alone = await cheap()
        before = rss_bytes(pid)
        beside: list[float] = []
        peak = before

        async def meanwhile() -> None:
            nonlocal peak
            beside.extend(await cheap())
            peak = max(peak, rss_bytes(pid))

        heads, bodies = await hold(host, int(port), args.dribblers, args.stallers, meanwhile)
    print(f"cheap query, {args.requests} requests:")
    beside_label = f"beside {args.dribblers} dribbling heads, {args.stallers} stalled bodies"
    for label, timings in (("alone", alone), (beside_label, beside)):
        print(
            f"  {label:<50} median {statistics.median(timings):7.2f} ms  max {max(timings):7.2f} ms"
        )
    if heads:
        print(f"head dribblers closed after {max(c.seconds for c in heads):.1f} s at most")
    if bodies:
        print(f"stalled bodies closed after {max(c.seconds for c in bodies):.1f} s at most")
    print(f"server memory grew by {(peak - before) / 2**20:.1f} MiB while they were held")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dribblers", type=int, default=200)
    parser.add_argument("--stallers", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/slow.db"
        key = asyncio.run(prepare(url))
        with running_server(url) as server:
            asyncio.run(measure(server.base, key, server.pid, args))


if __name__ == "__main__":
    main()
