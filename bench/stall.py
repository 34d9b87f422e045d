"""Does an expensive request stall the ones beside it? Latency of a cheap query, alone and
while clients keep sending the most expensive requests the limits let through.

    python -m bench.stall [--customers 2000] [--requests 300] [--heavy-clients 4]

It seeds a fresh SQLite file, starts a real `python server.py` process on a free port, and
times the cheap query over loopback HTTP from this process. The heavy requests are four
aliased pages of 100 customers with their verifications (cost ~8,400, under MAX_COST) and a
long flat document.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import httpx

from bench.seed import seed
from bench.server import running_server
from db import keys, migrate
from db.engine import Database
from db.models import utc_now

CHEAP = '{ customer(externalCustomerId: "cus_00000001") { id data { email } } }'
PAGE = (
    "customers(first: 100) "
    "{ nodes { id externalCustomerId kycStatus kycVerifications { status } } }"
)
HEAVY = [
    "{ " + " ".join(f"p{n}: {PAGE}" for n in range(4)) + " }",  # cost ~8,400 of 10,000
    "{ customers(first: 1) { totalCount } " + "__typename " * 400 + "}",  # a long document
]


async def prepare(url: str, count: int) -> str:
    db = Database(url)
    await migrate.upgrade(db)
    async with db.write() as session:
        key = await keys.create_key(session, "bench", keys.ALL_SCOPES, utc_now())
    await db.dispose()
    await seed(url, count)
    return key


async def measure(base: str, key: str, requests: int, heavy_clients: int) -> list[float]:
    headers = {"authorization": f"Bearer {key}"}
    stop = asyncio.Event()

    async def heavy(client: httpx.AsyncClient, n: int) -> int:
        sent = 0
        while not stop.is_set():
            response = await client.post("/graphql", json={"query": HEAVY[n % len(HEAVY)]})
            assert response.status_code == 200, response.text
            assert "errors" not in response.json(), response.text
            sent += 1
        return sent

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        loads = [asyncio.create_task(heavy(client, n)) for n in range(heavy_clients)]
        timings = []
        for _ in range(requests):
            began = time.perf_counter()
            response = await client.post("/graphql", json={"query": CHEAP})
            timings.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200
        stop.set()
        sent = sum(await asyncio.gather(*loads))
    if heavy_clients:
        print(f"  ({sent} heavy requests ran meanwhile)")
    return timings


def report(label: str, timings: list[float]) -> None:
    ordered = sorted(timings)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(
        f"{label:<34} median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms   "
        f"max {ordered[-1]:7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--heavy-clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/stall.db"
        key = asyncio.run(prepare(url, args.customers))
        with running_server(url) as server:
            print(f"cheap query, {args.requests} requests, {args.customers:,} customers:")
            report("alone", asyncio.run(measure(server.base, key, args.requests, 0)))
            report(
                f"beside {args.heavy_clients} heavy clients",
                asyncio.run(measure(server.base, key, args.requests, args.heavy_clients)),
            )


if __name__ == "__main__":
    main()
