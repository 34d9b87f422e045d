"""Does an expensive request stall the ones beside it? Latency of a cheap query, alone and
while clients keep sending the most expensive requests the limits let through, and while
clients loop abusive documents (a chain of doubly-spread fragments, a selection repeated 490
times) that the document analysis must refuse or answer quickly.

    python -m bench.stall [--customers 2000] [--requests 300] [--heavy-clients 4]
                          [--abusive-clients 3]

It seeds a fresh SQLite file, starts a real `python server.py` process on a free port, and
times the cheap query over loopback HTTP from this process. The heavy requests are four
aliased pages of 100 customers with their verifications (cost 4,004, under MAX_COST) and a
long flat document. Abusive documents are sent both as the same text again and again (the
analysis cache answers) and with a new comment each time (every one is analysed afresh).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Callable

import httpx

from bench.seed import seed
from bench.server import running_server
from db import keys, migrate
from db.engine import Database
from db.models import utc_now
from schema import build_schema

CHEAP = '{ customer(externalCustomerId: "cus_00000001") { id data { email } } }'
PAGE = (
    "customers(first: 100) "
    "{ nodes { id externalCustomerId kycStatus kycVerifications { status } } }"
)


def doubly_spread(length: int) -> str:
    """Fragments that each spread the next twice: 2^length paths through the document."""
    fragments = [
        f"fragment F{n} on Customer {{ ...F{n + 1} ... on Customer {{ ...F{n + 1} }} }}"
        for n in range(length)
    ]
    fragments.append(f"fragment F{length} on Customer {{ id data {{ email }} }}")
    return "{ customers { nodes { ...F0 } } } " + " ".join(fragments)


ABUSIVE = {
    "22 doubly-spread fragments": doubly_spread(22),
    "490-fold repeated selection": "{ " + "customers { nodes { data { email } } } " * 490 + "}",
}
HEAVY = [
    "{ " + " ".join(f"p{n}: {PAGE}" for n in range(4)) + " }",  # cost 4,004 of 10,000
    # A long document, every response name as often as MAX_FIELD_REPEATS allows.
    "{ customers(first: 1) { totalCount "
    + "nodes { id } edges { cursor } pageInfo { hasNextPage } " * 50
    + "} "
    + "__typename " * 50
    + "}",
]


async def prepare(url: str, count: int) -> str:
    db = Database(url)
    await migrate.upgrade(db)
    async with db.write() as session:
        key = await keys.create_key(session, "bench", keys.ALL_SCOPES, utc_now())
    await db.dispose()
    await seed(url, count)
    return key


async def measure(
    base: str, key: str, requests: int, clients: int, load: Callable[[int], str] | None = None
) -> list[float]:
    """The cheap query's latencies while `clients` keep sending `load(n)` (n counts their
    requests); by default the heavy requests, which must all be answered without errors."""
    headers = {"authorization": f"Bearer {key}"}
    stop = asyncio.Event()
    sent = 0

    async def loop(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal sent
        while not stop.is_set():
            n = sent + offset
            query = HEAVY[n % len(HEAVY)] if load is None else load(n)
            response = await client.post("/graphql", json={"query": query})
            assert response.status_code == 200, response.text
            assert load is not None or "errors" not in response.json(), response.text
            sent += 1

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        loads = [asyncio.create_task(loop(client, n)) for n in range(clients)]
        timings = []
        for _ in range(requests):
            began = time.perf_counter()
            response = await client.post("/graphql", json={"query": CHEAP})
            timings.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200
        stop.set()
        await asyncio.gather(*loads)
    if clients:
        print(f"  ({sent} {'heavy' if load is None else 'abusive'} requests ran meanwhile)")
    return timings


def variant(query: str, n: int, fresh: bool) -> str:
    """The query, or (fresh) the query with a comment of its own, which the cache never saw."""
    return f"{query}\n# {n}" if fresh else query


async def abusive_latency(base: str, key: str, requests: int, fresh: bool) -> None:
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for label, query in ABUSIVE.items():
            timings, outcome = [], ""
            for n in range(requests):
                began = time.perf_counter()
                response = await client.post("/graphql", json={"query": variant(query, n, fresh)})
                timings.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.text
                errors = response.json().get("errors")
                outcome = "refused" if errors else "answered"
            report(f"  {label}, {outcome}", timings)


def abusive_load(fresh: bool) -> Callable[[int], str]:
    documents = list(ABUSIVE.values())
    return lambda n: variant(documents[n % len(documents)], n, fresh)


def analysis_cpu(runs: int) -> None:
    """CPU time of the analysis of each abusive document in this process, each run a text the
    cache has not seen: what the server spends on it, whatever else loads the machine."""
    analyser = build_schema().analyser
    gc.collect()
    gc.freeze()  # as the server does once it has started
    for label, query in ABUSIVE.items():
        timings = []
        for n in range(runs):
            began = time.process_time()
            analyser.analyse(variant(query, n, True), None)
            timings.append((time.process_time() - began) * 1000)
        report(f"  {label}", timings)
    gc.unfreeze()


def report(label: str, timings: list[float]) -> None:
    ordered = sorted(timings)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(
        f"{label:<52} median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms   "
        f"max {ordered[-1]:7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--heavy-clients", type=int, default=4)
    parser.add_argument("--abusive-clients", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/stall.db"
        key = asyncio.run(prepare(url, args.customers))
        with running_server(url) as server:
            base = server.base
            print(f"cheap query, {args.requests} requests, {args.customers:,} customers:")
            report("alone", asyncio.run(measure(base, key, args.requests, 0)))
            report(
                f"beside {args.heavy_clients} heavy clients",
                asyncio.run(measure(base, key, args.requests, args.heavy_clients)),
            )
            print("analysis of abusive documents, CPU ms in this process, 20 new texts each:")
            analysis_cpu(20)
            print("abusive documents, 20 requests each, one at a time:")
            for fresh in (False, True):
                print(f" {'a new comment each time' if fresh else 'the same text'}:")
                asyncio.run(abusive_latency(base, key, 20, fresh))
            for fresh in (False, True):
                clients = args.abusive_clients
                timings = asyncio.run(
                    measure(base, key, args.requests, clients, abusive_load(fresh))
                )
                kind = "a new comment each" if fresh else "the same texts"
                report(f"beside {clients} abusive clients ({kind})", timings)


if __name__ == "__main__":
    main()
