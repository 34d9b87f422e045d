"""How many deliveries per second does one webhook endpoint get, with a backlog pending?

    python -m bench.webhooks [--backends sqlite,postgresql] [--backlogs 500,5000,20000]
                             [--seconds 5] [--settled 0] [--plans]

For each backend and backlog: a fresh database (a temporary SQLite file, or a PostgreSQL
database `bench_webhooks` on 127.0.0.1:5432, made and dropped by the script) holds that many
events, each with a pending delivery to one endpoint; a receiver on 127.0.0.1 (a thread of
this process) answers 204 at once; the server's own delivery worker runs in this process for
`--seconds` and the receiver counts what arrived. The cost of a round must not grow with the
backlog: the figures should be about the same in every row. `--plans` prints the statement
plans of the worker's head query on each backend too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import insert, text, update
from sqlalchemy.engine import make_url

from bench.events import admin
from db import migrate, webhooks
from db.engine import Database
from db.models import (
    CustomerEvent,
    DeliveryStatus,
    EventCounter,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
    utc_now,
)
from web.app import app_state
from web.settings import Settings
from web.webhooks import DeliveryWorker

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_webhooks"
CHUNK = 2000  # rows per INSERT while filling the backlog


@contextmanager
def receiver() -> Iterator[tuple[str, list[float]]]:
    """A receiver that answers 204 at once; its URL and the times deliveries arrived."""
    arrivals: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            arrivals.append(time.perf_counter())
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}/hook", arrivals
    finally:
        http.shutdown()
        http.server_close()


@asynccontextmanager
async def fresh_database(backend: str) -> AsyncIterator[Database]:
    """A migrated, empty database on `backend`, dropped afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{folder}/bench.db"
        else:
            url = POSTGRES
            name = make_url(url).database
            await admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin(url, f'CREATE DATABASE "{name}"')
        db = Database(url)
        try:
            await migrate.upgrade(db)
            yield db
        finally:
            await db.dispose()
            if backend != "sqlite":
                await admin(url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


async def fill(
    db: Database, url: str, box: webhooks.SecretBox, backlog: int, settled: int = 0
) -> None:
    """`settled + backlog` events, each with a delivery to one endpoint at `url`: the first
    `settled` delivered already, the `backlog` after them pending (due now)."""
    now = utc_now()
    async with db.write() as session:
        endpoint = WebhookEndpoint(
            url=url,
            event_types="",
            enabled=True,
            secret=box.seal(webhooks.new_secret()),
            enqueued_through=settled + backlog,
            settled_through=settled,  # the deliveries are numbered from 1
            queued_through=settled + backlog,
            created_at=now,
        )
        session.add(endpoint)
        await session.flush()
        for start in range(1, settled + backlog + 1, CHUNK):
            numbers = range(start, min(start + CHUNK, settled + backlog + 1))
            events = [
                {
                    "id": n,
                    "type": EventType.CUSTOMER_CREATED,
                    "external_customer_id": f"c-{n}",
                    "changed_fields": "",
                    "actor": "bench",
                    "occurred_at": now,
                    "recorded_at": now,
                }
                for n in numbers
            ]
            await session.execute(insert(CustomerEvent), events)
            deliveries = [
                {
                    "endpoint_id": endpoint.id,
                    "event_id": n,
                    "status": DeliveryStatus.SUCCEEDED if n <= settled else DeliveryStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now - timedelta(seconds=1),
                    "created_at": now,
                }
                for n in numbers
            ]
            await session.execute(insert(WebhookDelivery), deliveries)
        await session.execute(update(EventCounter).values(last=settled + backlog))
    if not db.is_sqlite:
        async with db.engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
            await connection.commit()


async def show_plans(db: Database) -> None:
    """The plans of the worker's statements that read the endpoints' heads."""
    now = utc_now()
    statements = {
        "any_due": webhooks.heads(now).limit(1),
        "claim": webhooks.claimable(now, 8),
        "claim of one endpoint": webhooks.claimable(now, 1, endpoint_id=1),
    }
    dialect = db.engine.dialect
    explain = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
    for name, statement in statements.items():
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        async with db.engine.connect() as connection:
            rows = (await connection.execute(text(explain + sql))).all()
        print(f"  plan of {name}:")
        for row in rows:
            print("    " + str(row[-1]))


async def measure(backend: str, backlog: int, settled: int, seconds: float, plans: bool) -> float:
    """Deliveries per second to one endpoint with `backlog` pending."""
    settings = Settings(
        cursor_secret=os.urandom(32).hex(),
        webhook_secret_key=base64.b64encode(os.urandom(32)).decode(),
        webhook_allow_private_targets=True,
    )
    box = settings.webhooks().box
    assert box is not None
    async with fresh_database(backend) as db:
        with receiver() as (url, arrivals):
            await fill(db, url, box, backlog, settled)
            if plans:
                await show_plans(db)
            state = await app_state(db, settings, utc_now)
            feed = state.feed
            worker = DeliveryWorker(state)
            began = time.perf_counter()
            running = asyncio.create_task(worker.run())
            await asyncio.sleep(seconds)
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await feed.close()
            return len([a for a in arrivals if a >= began]) / seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--backlogs", default="500,5000,20000")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each row runs")
    parser.add_argument(
        "--settled", type=int, default=0, help="deliveries made already, before the backlog"
    )
    parser.add_argument("--plans", action="store_true", help="print the head query's plans")
    options = parser.parse_args()
    print(f"deliveries per second to one endpoint, {options.seconds:g} s a row")
    print(f"{'backend':<12}{'pending':>10}{'per second':>12}")
    for backend in options.backends.split(","):
        for backlog in (int(b) for b in options.backlogs.split(",")):
            rate = await measure(backend, backlog, options.settled, options.seconds, options.plans)
            print(f"{backend:<12}{backlog:>10}{rate:>12.1f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
