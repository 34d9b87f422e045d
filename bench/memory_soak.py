"""Does a server's memory grow with the events it serves, and is it a leak or a cache filling?

    python -m bench.memory_soak [--database-url URL] [--minutes 3 | --hour] [--writers 2]

One `python server.py` process, with tracemalloc on (10 frames), on a fresh database (default:
a PostgreSQL database `bench_soak` on 127.0.0.1:5432, made and dropped by the script; a
sqlite+aiosqlite URL works too). Writers create and update customers through it (each write
is one event), a subscriber follows the feed over a WebSocket, a webhook receiver on
127.0.0.1 gets every event, and a reader pages through customerEvents now and then.

Every `--every` seconds the server dumps a tracemalloc snapshot (on SIGUSR1, see `serve`).
At the end the script prints, per snapshot, the events so far, the process's RSS and the
bytes tracemalloc sees, then the growth per event over the first and the second half of the
run (after a warm-up snapshot), and the sites (file:line of the allocation, with the
innermost frame of ours) that grew the most in each half. A site that grows in both halves
in proportion to the events is a leak; one that grew in the first half only, or that stops
at a bound, is a cache filling up.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect

from bench.events import SUBSCRIBE, admin, prepare, receiver
from bench.server import ROOT

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_soak"
FRAMES = 10
LEAK_BYTES = 256  # traced growth per event in the second half that counts as a leak
ENOUGH_EVENTS = 2000  # in the second half, for a verdict
CREATE = (
    "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) "
    "{ userErrors { code } } }"
)
UPDATE = (
    "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) "
    "{ userErrors { code } } }"
)
FEED = (
    "query($after: String) { customerEvents(first: 100, after: $after) { pageInfo { endCursor } } }"
)
HOOK = (
    "mutation($u: String!) { createWebhookEndpoint(input: {url: $u}) { userErrors { message } } }"
)


def serve(snapshots: Path) -> None:
    """The server process: tracemalloc on, a snapshot into `snapshots` on each SIGUSR1."""
    tracemalloc.start(FRAMES)
    taken = 0

    def dump(_signal: int, _frame: object) -> None:
        nonlocal taken
        path = snapshots / f"{taken:04d}.snapshot"
        tracemalloc.take_snapshot().dump(str(path) + ".part")
        os.replace(str(path) + ".part", path)  # whole, or not there yet
        taken += 1

    signal.signal(signal.SIGUSR1, dump)
    sys.path.insert(0, str(ROOT))
    import server  # after tracemalloc.start: the app's own allocations are traced too

    sys.exit(server.main(["--port", "0", "--host", "127.0.0.1"]))


@contextlib.contextmanager
def soak_server(url: str, snapshots: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "KYC_SWEEP_INTERVAL_SECONDS": "30",
        "WEBHOOK_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    }
    command = [sys.executable, "-m", "bench.memory_soak", "--serve", str(snapshots)]
    with subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None
        base = None
        for line in process.stderr:
            if "Uvicorn running on " in line:
                base = line.split("Uvicorn running on ")[1].split()[0]
                break
        assert base, "the server did not start"
        threading.Thread(target=process.stderr.read, daemon=True).start()
        try:
            yield base, process
        finally:
            process.terminate()
            process.wait(timeout=60)


@dataclass
class Sample:
    events: int
    rss_kb: int
    traced: int
    path: Path


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def events_so_far(url: str) -> int:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    if not url.startswith("postgresql"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(make_url(url).database or "")) as connection:
            return int(connection.execute("SELECT last FROM event_counter").fetchone()[0])
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT last FROM event_counter WHERE id = 1"))
    finally:
        await connection.close()


async def load(base: str, key: str, writers: int, stop: asyncio.Event, failures: list[int]) -> None:
    """Writers, a feed reader and a subscriber until `stop`; failed writes go to failures[0]."""
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:

        async def write(worker: int) -> None:
            n = 0
            while not stop.is_set():
                name = f"soak-{worker}-{n}"
                data = {"email": f"{name}@example.com"}
                create = {"input": {"externalCustomerId": name, "data": data}}
                update = {"input": {"externalCustomerId": name, "data": {"firstName": "Ada"}}}
                for query, variables in ((CREATE, create), (UPDATE, update)):
                    try:
                        answer = await client.post(
                            "/graphql", json={"query": query, "variables": variables}
                        )
                        failures[0] += answer.status_code != 200
                    except httpx.HTTPError:  # a busy machine: the soak goes on, and says so
                        failures[0] += 1
                n += 1

        async def read() -> None:
            after = None
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError, KeyError, TypeError):
                    answer = await client.post(
                        "/graphql", json={"query": FEED, "variables": {"after": after}}
                    )
                    page = answer.json()["data"]["customerEvents"]["pageInfo"]
                    after = page["endCursor"] or after
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await stop.wait()

        async def subscribe() -> None:
            ws_url = base.replace("http://", "ws://") + "/graphql"
            async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
                await ws.send(json.dumps({"type": "connection_init", "payload": headers}))
                await ws.recv()
                subscribe = {"type": "subscribe", "id": "1", "payload": {"query": SUBSCRIBE}}
                await ws.send(json.dumps(subscribe))
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1):
                            message = json.loads(await ws.recv())
                            if message["type"] == "ping":
                                await ws.send(json.dumps({"type": "pong"}))

        await asyncio.gather(*(write(w) for w in range(writers)), read(), subscribe())


def _ours(filename: str) -> bool:
    """A file of this repository's, not a library's."""
    return filename.startswith(str(ROOT)) and "site-packages" not in filename


def growth(older: Path, newer: Path, events: int, top: int) -> tuple[int, list[str]]:
    """Bytes grown between two snapshots, and the sites that grew the most (per event)."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before = tracemalloc.Snapshot.load(str(older)).filter_traces(ignore)
    after = tracemalloc.Snapshot.load(str(newer)).filter_traces(ignore)
    total = sum(s.size for s in after.statistics("filename")) - sum(
        s.size for s in before.statistics("filename")
    )
    lines = []
    for stat in after.compare_to(before, "traceback")[:top]:
        if stat.size_diff <= 0:
            break
        frames = stat.traceback  # oldest first: the allocation is the last frame
        ours = next((f for f in reversed(frames) if _ours(f.filename)), frames[0])
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
        name = Path(ours.filename)
        via = f"{name.relative_to(ROOT) if _ours(ours.filename) else name.name}:{ours.lineno}"
        lines.append(
            f"  {stat.size_diff / max(events, 1):8.1f} B/event {stat.size_diff / 1024:9.1f} KB "
            f"{stat.count_diff:+7d} blocks  {where} (via {via})"
        )
    return total, lines


async def soak(url: str, minutes: float, every: float, writers: int, top: int) -> None:
    key = await prepare(url)
    with tempfile.TemporaryDirectory(prefix="soak-") as folder, receiver({}) as hook:
        snapshots = Path(folder)
        with soak_server(url, snapshots) as (base, process):
            async with httpx.AsyncClient(
                base_url=base, headers={"authorization": f"Bearer {key}"}
            ) as c:
                made = await c.post("/graphql", json={"query": HOOK, "variables": {"u": hook}})
                answer = made.json().get("data") or {}
                assert answer.get("createWebhookEndpoint", {}).get("userErrors") == [], made.text
            stop = asyncio.Event()
            failures = [0]
            running = asyncio.create_task(load(base, key, writers, stop, failures))
            samples: list[Sample] = []
            began = time.monotonic()
            while True:
                process.send_signal(signal.SIGUSR1)
                path = snapshots / f"{len(samples):04d}.snapshot"
                while True:  # the server writes it between two of its own turns
                    if path.exists():
                        break
                    await asyncio.sleep(0.2)
                traced = sum(
                    s.size for s in tracemalloc.Snapshot.load(str(path)).statistics("filename")
                )
                sample = Sample(await events_so_far(url), rss_kb(process.pid), traced, path)
                samples.append(sample)
                print(
                    f"{time.monotonic() - began:7.0f} s {sample.events:8d} events "
                    f"RSS {sample.rss_kb / 1024:7.1f} MB traced {sample.traced / 2**20:7.1f} MB "
                    f"({failures[0]} writes failed)",
                    flush=True,
                )
                if time.monotonic() - began >= minutes * 60:
                    break
                await asyncio.sleep(every)
            stop.set()
            await running
        # The first snapshot is before the caches warmed up; halves from the second on.
        if len(samples) < 3:
            print("too short a run for two halves")
            return
        warm, last = samples[1], samples[-1]
        middle = samples[(1 + len(samples)) // 2]
        per_event = []
        for label, older, newer in (("first half", warm, middle), ("second half", middle, last)):
            events = newer.events - older.events
            total, lines = growth(older.path, newer.path, events, top)
            rss = (newer.rss_kb - older.rss_kb) * 1024
            per_event.append(total / max(events, 1))
            print(
                f"\n{label}: {events} events, traced {per_event[-1]:+.0f} B/event, "
                f"RSS {rss / max(events, 1):+.0f} B/event; the sites that grew most:"
            )
            print("\n".join(lines))
        # A leak keeps its pace; a cache slows down as it fills. Under LEAK_BYTES a second half
        # is noise (a few source files read into linecache for a traceback, say).
        if last.events - middle.events < ENOUGH_EVENTS:
            verdict = (
                f"too short to tell: fewer than {ENOUGH_EVENTS} events in the second half, "
                "whose growth is still in-flight work and caches warming up (--minutes 10)"
            )
        elif per_event[1] > LEAK_BYTES and per_event[1] > per_event[0] / 2:
            verdict = (
                "a leak: the traced heap grows with the events at the same pace in both halves"
            )
        else:
            verdict = "bounded: the traced heap stops growing (caches filled in the first half)"
        print(f"\nverdict: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=POSTGRES)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--hour", action="store_true", help="soak for 60 minutes")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between snapshots")
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    minutes = 60.0 if args.hour else args.minutes
    url = args.database_url
    try:
        asyncio.run(soak(url, minutes, args.every, args.writers, args.top))
    finally:
        if url.startswith("postgresql"):
            name = make_url(url).database
            asyncio.run(admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
