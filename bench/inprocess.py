"""CPU per request of this server's app, in process: no sockets, no wrk, one request at a time.

`bench.http` measures what a client sees (throughput under 32 connections against a raw
ceiling); on a 2-core machine its ratios move by a tenth between runs. This script measures
one thing steadily enough to compare two commits or a change against its parent: the process
CPU each workload's request costs through the whole ASGI app (the edge, authentication, the
rate limit, the persisted-documents check, the gate, the compiled path or graphql-core, the
database driver), with the database in the same process on SQLite (or on the PostgreSQL
server that `--database-url` names). It uses bench.http's database (seeded there, or here
when missing) and its workloads.

    .venv/bin/python -m bench.inprocess [--requests 2000] [--rounds 5] [--only customer]
    .venv/bin/python -m bench.inprocess --profile customer   # cProfile's top functions

Each workload's figure is the median over rounds of CPU microseconds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import random
import statistics
import sys
import time
from typing import Any

import orjson

from bench.http import prepare, workloads
from web.app import create_app
from web.logs import configure_logging
from web.settings import Settings


class Client:
    """Calls the ASGI app the way uvicorn would, keeping the lifespan open."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.headers = [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {key}".encode()),
        ]

    async def post(self, body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "root_path": "",
            "headers": [*self.headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": self.state,
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # never: the app does not read past the body
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)

    async def __aenter__(self) -> Client:
        self.state: dict[str, Any] = {}
        self.started = asyncio.Event()
        self.stopping = asyncio.Event()
        self.stopped = asyncio.Event()
        messages = iter([{"type": "lifespan.startup"}])

        async def receive() -> dict[str, Any]:
            try:
                return next(messages)
            except StopIteration:
                await self.stopping.wait()
                return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.started.set()
            elif message["type"].startswith("lifespan.startup"):
                raise RuntimeError(f"the app did not start: {message}")

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        self.lifespan = asyncio.create_task(self.app(scope, receive, send))
        await self.started.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stopping.set()
        await self.lifespan


def bodies(workload: Any, customers: int, count: int) -> list[bytes]:
    """`count` request bodies of a workload, with the variables bench.http's Lua would send."""
    out = []
    for i in range(count):
        variables = dict(workload.variables)
        if workload.name.startswith("customer("):
            variables = {"externalCustomerId": f"cus_{random.randint(1, customers):08d}"}
        elif workload.name == "updateCustomer":
            n = random.randint(1, customers)
            variables = {
                "input": {"externalCustomerId": f"cus_{n:08d}", "data": {"firstName": f"N{i}"}}
            }
        elif workload.name == "createCustomer":
            tag = f"ip{random.randrange(1 << 40)}-{i}"
            variables = {
                "input": {
                    "externalCustomerId": tag,
                    "data": {"email": f"{tag}@example.com", "firstName": "Ann"},
                }
            }
        out.append(orjson.dumps({"query": workload.document, "variables": variables}))
    return out


async def run(args: argparse.Namespace) -> None:
    key = await prepare(args.database_url, args.customers)
    settings = Settings(
        database_url=args.database_url,
        kyc_sweep_interval_seconds=0,
        migrate_on_start=False,
        log_level="INFO" if args.access_log else "WARNING",
    )
    loads = [
        w
        for w in workloads(args.customers)
        if (args.only or args.profile or "") in w.name and (args.writes or not w.writes)
    ]
    async with Client(create_app(settings), key) as client:
        for w in loads:  # warm every cache, and check each answers
            status, answer = await client.post(bodies(w, args.customers, 1)[0])
            if status != 200 or b'"errors"' in answer:
                raise SystemExit(f"{w.name}: {status} {answer[:300]!r}")
        if args.profile:
            w = loads[0]
            requests = bodies(w, args.customers, args.requests)
            profiler = cProfile.Profile()
            profiler.enable()
            for body in requests:
                await client.post(body)
            profiler.disable()
            stats = pstats.Stats(profiler).sort_stats(args.sort)
            stats.print_stats(40)
            return
        figures: dict[str, list[float]] = {w.name: [] for w in loads}
        for _ in range(args.rounds):
            for w in loads:
                requests = bodies(w, args.customers, args.requests)
                gc.collect()
                before = time.process_time()
                for body in requests:
                    await client.post(body)
                figures[w.name].append((time.process_time() - before) / len(requests) * 1e6)
    backend = "SQLite" if args.database_url.startswith("sqlite") else "PostgreSQL"
    print(f"in process, {backend}, {args.rounds} rounds of {args.requests} requests each")
    print(f"{'workload':<34}{'CPU us/req (median)':>20}{'min':>8}{'max':>8}")
    for name, values in figures.items():
        print(f"{name:<34}{statistics.median(values):>20.0f}{min(values):>8.0f}{max(values):>8.0f}")
    if args.json:
        print(json.dumps({k: statistics.median(v) for k, v in figures.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="sqlite+aiosqlite:///./bench_http.db")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="workloads whose name holds this")
    parser.add_argument("--writes", action="store_true", help="the writes too")
    parser.add_argument("--profile", metavar="WORKLOAD", help="cProfile one workload instead")
    parser.add_argument("--sort", default="tottime", help="--profile's order (tottime, cumtime)")
    parser.add_argument("--json", action="store_true", help="also the medians as one JSON line")
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="write the access log (plain, to /dev/null) as the server does over HTTP",
    )
    args = parser.parse_args()
    if args.access_log:  # as server.py sets it up, to a sink
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (for the whole run)
        configure_logging("INFO", "plain")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
