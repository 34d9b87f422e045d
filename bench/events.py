"""How soon does an event reach a subscriber on another server, and a webhook receiver?

    python -m bench.events [--database-url URL] [--samples 50]

Two `python server.py` processes on one database (default: a fresh PostgreSQL database
`bench_events` on 127.0.0.1:5432, made and dropped by the script; a sqlite+aiosqlite URL runs
one process instead). A subscriber listens on the second server, a webhook receiver on
127.0.0.1 gets every event, and this process creates customers through the first server,
one at a time. Latency runs from the moment the mutation's answer arrives (its transaction
has committed) to the moment the event arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import httpx
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect

from bench.server import running_server
from db import keys, migrate
from db.engine import Database
from db.models import utc_now

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_events"
CREATE = (
    "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) "
    "{ userErrors { code } } }"
)
SUBSCRIBE = "subscription { customerEvents { externalCustomerId } }"


async def admin(url: str, sql: str) -> None:
    dsn = make_url(url).set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def prepare(url: str) -> str:
    if url.startswith("postgresql"):
        name = make_url(url).database
        await admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin(url, f'CREATE DATABASE "{name}"')
    db = Database(url)
    await migrate.upgrade(db)
    async with db.write() as session:
        key = await keys.create_key(session, "bench", keys.ALL_SCOPES, utc_now())
    await db.dispose()
    return key


@contextmanager
def receiver(arrivals: dict[str, float]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            arrivals[json.loads(body)["data"]["externalCustomerId"]] = time.perf_counter()
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}/hook"
    finally:
        http.shutdown()


async def measure(
    bases: list[str], key: str, samples: int, hook: str, hooked: dict[str, float]
) -> None:
    headers = {"authorization": f"Bearer {key}"}
    received: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=bases[0], headers=headers, timeout=30) as client:
        made = await client.post(
            "/graphql",
            json={
                "query": "mutation($u: String!) { createWebhookEndpoint(input: {url: $u}) "
                "{ userErrors { message } } }",
                "variables": {"u": hook},
            },
        )
        assert made.json()["data"]["createWebhookEndpoint"]["userErrors"] == [], made.text
        ws_url = bases[-1].replace("http://", "ws://") + "/graphql"
        async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": headers}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(
                json.dumps({"type": "subscribe", "id": "1", "payload": {"query": SUBSCRIBE}})
            )

            async def listen() -> None:
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "next":
                        name = message["payload"]["data"]["customerEvents"]["externalCustomerId"]
                        received[name] = time.perf_counter()
                    elif message["type"] == "ping":
                        await ws.send(json.dumps({"type": "pong"}))

            listening = asyncio.create_task(listen())
            await asyncio.sleep(1)  # the subscription has started
            committed: dict[str, float] = {}
            for n in range(samples):
                name = f"bench-{n}"
                variables = {
                    "input": {"externalCustomerId": name, "data": {"email": f"{name}@example.com"}}
                }
                answer = await client.post(
                    "/graphql", json={"query": CREATE, "variables": variables}
                )
                committed[name] = time.perf_counter()
                assert answer.json()["data"]["createCustomer"]["userErrors"] == []
                deadline = time.perf_counter() + 10
                # Both arrive from elsewhere (the receiver is a thread): look every millisecond.
                while (  # noqa: ASYNC110
                    name not in received or name not in hooked
                ) and time.perf_counter() < deadline:
                    await asyncio.sleep(0.001)
            listening.cancel()
    report(
        "subscriber on the other server" if len(bases) > 1 else "subscriber",
        [received[n] - committed[n] for n in committed if n in received],
        samples,
    )
    report(
        "webhook receiver", [hooked[n] - committed[n] for n in committed if n in hooked], samples
    )


def report(label: str, seconds: list[float], samples: int) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[max(0, int(len(ms) * 0.95) - 1)]
    print(
        f"{label:<32} {len(ms)}/{samples} arrived   median {statistics.median(ms):7.1f} ms   "
        f"p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", POSTGRES))
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    url = args.database_url
    key = asyncio.run(prepare(url))
    webhooks = {
        "WEBHOOK_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    }
    processes = 1 if url.startswith("sqlite") else 2
    hooked: dict[str, float] = {}
    try:
        with ExitStack() as stack:
            hook = stack.enter_context(receiver(hooked))
            bases = [
                stack.enter_context(running_server(url, **webhooks)).base for _ in range(processes)
            ]
            backend = make_url(url).get_backend_name()
            print(f"{processes} server process(es) on {backend}, {args.samples} events:")
            asyncio.run(measure(bases, key, args.samples, hook, hooked))
    finally:
        if url.startswith("postgresql"):
            asyncio.run(
                admin(url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
            )


if __name__ == "__main__":
    main()
