"""Median latency of the first page and of a deep page of `Query.customers`, per ordering.

    python -m bench.lists [--database-url URL] [--depth 500000] [--runs 25]

Seed first (`python -m bench.seed`). Each request goes through the whole app (HTTP over
ASGI, GraphQL, SQL) with the committed `customers` operation, 20 customers a page with their
verifications, without `totalCount`; the cost of `totalCount` is measured on its own. A deep
page starts at the cursor of the row `--depth` rows in (found once with OFFSET, outside the
timing); for the review queue (`kycStatus: [UNDER_REVIEW]`) the depth is at most half the
queue. A ratio near 1 means a page costs the same wherever it lies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from db import customers, keys
from db.models import Customer, KycStatus, utc_now
from db.pages import Direction, Ordering, encode_cursor
from server import Settings, create_app, cursor_secret

PAGE = 20
DOCUMENT = (
    Path(__file__).resolve().parent.parent / "graphql" / "operations" / "customers.graphql"
).read_text()
REVIEW_QUEUE = {"kycStatus": ["UNDER_REVIEW"]}


async def median_ms(client: httpx.AsyncClient, runs: int, **variables: Any) -> float:
    document = DOCUMENT
    timings = []
    for _ in range(runs + 2):  # two warm-up requests, not counted
        began = time.perf_counter()
        response = await client.post("/graphql", json={"query": document, "variables": variables})
        timings.append((time.perf_counter() - began) * 1000)
        body = response.json()
        assert "errors" not in body, body["errors"]
        assert len(body["data"]["customers"]["edges"]) == PAGE, "too few rows: seed more"
    return statistics.median(timings[2:])


async def cursor_at(
    client_db: Any, ordering: Ordering, depth: int, review_queue: bool, secret: bytes
) -> str:
    """The cursor of the row `depth` rows into the list (setup only: OFFSET is fine here)."""
    walk_desc = ordering.direction is Direction.DESC
    query = select(Customer)
    if review_queue:
        query = query.where(Customer.kyc_status == KycStatus.UNDER_REVIEW)  # type: ignore[arg-type]
    query = (
        query.order_by(*(c.desc() if walk_desc else c.asc() for c in ordering.columns))
        .offset(depth)
        .limit(1)
    )
    async with client_db.read() as session:
        row = (await session.scalars(query)).one()
    return encode_cursor(ordering, ordering.key_of(row), secret)


async def run(database_url: str, depth: int, runs: int) -> None:
    settings = Settings(database_url=database_url, kyc_sweep_interval_seconds=0)
    app = create_app(settings)
    async with LifespanManager(app):
        db = app.state.db
        secret = await cursor_secret(db, settings, utc_now)
        async with db.read() as session:
            total = (await session.execute(select(func.count()).select_from(Customer))).scalar_one()
            queue = (
                await session.execute(
                    select(func.count())
                    .select_from(Customer)
                    .where(Customer.kyc_status == KycStatus.UNDER_REVIEW)  # type: ignore[arg-type]
                )
            ).scalar_one()
        backend = db.engine.dialect.name
        print(f"{backend}: {total:,} customers, {queue:,} in the review queue; {runs} runs each")
        print(f"{'list':<34} {'depth':>9} {'first ms':>9} {'deep ms':>9} {'ratio':>6}")
        async with db.write() as session:
            key = await keys.create_key(
                session,
                f"bench-lists-{uuid.uuid4().hex[:8]}",
                [keys.Scope.CUSTOMERS_READ],
                utc_now(),
            )
        transport = httpx.ASGITransport(app=app)
        headers = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:
            cases: list[tuple[str, customers.OrderField, Direction, bool]] = [
                (f"{field.value} {direction.value}", field, direction, False)
                for field in customers.OrderField
                for direction in Direction
            ]
            cases.append(
                (
                    "review queue, CREATED_AT DESC",
                    customers.OrderField.CREATED_AT,
                    Direction.DESC,
                    True,
                )
            )
            worst = 0.0
            for label, field, direction, review in cases:
                ordering = customers.ordering(field, direction)
                order_by = {"field": field.value, "direction": direction.value}
                where = REVIEW_QUEUE if review else None
                deep_at = min(depth, (queue if review else total) // 2)
                cursor = await cursor_at(db, ordering, deep_at, review, secret)
                first = await median_ms(client, runs, first=PAGE, orderBy=order_by, filter=where)
                deep = await median_ms(
                    client, runs, first=PAGE, after=cursor, orderBy=order_by, filter=where
                )
                worst = max(worst, deep / first)
                print(f"{label:<34} {deep_at:>9,} {first:>9.2f} {deep:>9.2f} {deep / first:>6.2f}")
            print(f"worst deep/first ratio: {worst:.2f}")
            for label, where in (("all customers", None), ("review queue", REVIEW_QUEUE)):
                plain = await median_ms(client, runs, first=PAGE, filter=where)
                counted = await median_ms(
                    client, runs, first=PAGE, filter=where, withTotalCount=True
                )
                print(
                    f"totalCount of {label}: +{counted - plain:.2f} ms "
                    f"({plain:.2f} -> {counted:.2f})"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./bench.db"),
        help="SQLAlchemy URL (default: DATABASE_URL, else ./bench.db)",
    )
    parser.add_argument("--depth", type=int, default=500_000, help="rows before the deep page")
    parser.add_argument("--runs", type=int, default=25, help="timed requests per figure")
    args = parser.parse_args()
    asyncio.run(run(args.database_url, args.depth, args.runs))


if __name__ == "__main__":
    main()
