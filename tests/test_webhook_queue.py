"""The webhook worker's queue, read as the worker reads it (the worker itself is off here:
the test moves the deliveries along by hand)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, text
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from db import migrate, webhooks
from db.engine import Database
from db.feed import FeedSignal
from db.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, utc_now
from db.tasks import cancel_and_wait
from tests.support.graphql_client import GraphQLClient
from web.app import app_state
from web.settings import Settings
from web.webhooks import ROUND_SECONDS, DeliveryWorker


@pytest.mark.one_executor("delivery reads the event feed, which test_events proves alike on both")
async def test_the_worker_wakes_for_a_retry_not_for_the_deliveries_queued_behind_it(
    gql: GraphQLClient, db: Database
) -> None:
    """An endpoint's deliveries go in order: while its oldest waits out a backoff, the ones
    queued behind it (due since they were queued) must not wake the worker, or it spins."""
    box = webhooks.SecretBox(base64.b64encode(os.urandom(32)).decode())
    target = webhooks.Target("https://hooks.example/x", "https", "hooks.example", 443, ["1.2.3.4"])
    now = utc_now()
    async with db.write() as session:
        await webhooks.create_endpoint(session, target, [], box, now)
    for n in range(3):
        await gql.create(f"c-{n}")
    async with db.write() as session:
        assert await webhooks.enqueue(session, now) == 3
        [head] = await webhooks.claim(session, now, limit=5)
        failed = webhooks.Outcome(500, "answered HTTP 500", 3)
        await webhooks.record_attempt(session, head, failed, now, schedule=[60])
    assert not await webhooks.any_due(db, now)
    due = await webhooks.next_due(db)
    assert due is not None
    assert due > now  # the head's retry, not a delivery queued behind it


async def explain(db: Database, statement: Any) -> str:
    """The plan the database makes for `statement` (its values written in)."""
    sql = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
    async with db.engine.connect() as connection:
        return "\n".join(str(row[-1]) for row in await connection.execute(text(prefix + sql)))


async def test_the_heads_are_read_by_endpoint_not_from_the_backlog(
    gql: GraphQLClient, db: Database
) -> None:
    """What may go next is read from the endpoints, each one's head down its index and then
    by key, so a round costs the same whatever the backlog (issue 22.2: a min(id)
    correlated with every pending row read all of them, 625 ms a round at 20,000)."""
    now = utc_now()
    box = webhooks.SecretBox(base64.b64encode(os.urandom(32)).decode())
    target = webhooks.Target("https://hooks.example/x", "https", "hooks.example", 443, ["1.2.3.4"])
    async with db.write() as session:
        made = [await webhooks.create_endpoint(session, target, [], box, now) for _ in range(3)]
        # Per endpoint, 1,000 deliveries made already, then 1,000 pending.
        rows = [
            {
                "endpoint_id": endpoint.id,
                "event_id": n,
                "status": DeliveryStatus.SUCCEEDED if n < 1000 else DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for n in range(2000)
            for endpoint, _secret in made
        ]
        await session.execute(insert(WebhookDelivery), rows)
        for endpoint, _secret in made:  # as settling them moved it
            newest_settled = sa_select(func.max(col(WebhookDelivery.id))).where(
                col(WebhookDelivery.endpoint_id) == endpoint.id,
                col(WebhookDelivery.status) == DeliveryStatus.SUCCEEDED,
            )
            endpoint.settled_through = (await session.execute(newest_settled)).scalar_one() or 0
            newest = sa_select(func.max(col(WebhookDelivery.id))).where(
                col(WebhookDelivery.endpoint_id) == endpoint.id
            )
            endpoint.queued_through = (await session.execute(newest)).scalar_one() or 0
    if not db.is_sqlite:
        async with db.engine.connect() as connection:
            # As autovacuum would have by now (without statistics on the endpoints,
            # PostgreSQL guesses a page of them, and hash-joins the whole backlog).
            await connection.execute(text("ANALYZE webhook_endpoint, webhook_delivery"))
            await connection.commit()
    statements = [
        webhooks.heads(now).limit(1),
        webhooks.claimable(now, 8),
        webhooks.claimable(now, 1, endpoint_id=made[0][0].id),
    ]
    for statement in statements:
        plan = await explain(db, statement)
        # webhook_delivery is reached by key, and each endpoint's head from where its
        # settled deliveries end (PostgreSQL may walk the key from there, or the index).
        if db.is_sqlite:
            assert "SEARCH webhook_delivery USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
            assert "SCAN webhook_delivery" not in plan, plan
            assert (
                "ix_webhook_delivery_endpoint (endpoint_id=? AND status=? AND id>? AND id<?)"
                in plan
            )
        else:
            assert "Seq Scan on webhook_delivery" not in plan, plan
            assert "Index Scan using pk_webhook_delivery on webhook_delivery " in plan, plan
            bounds = (
                r"Index Cond: .*id > webhook_endpoint_1\.settled_through\) AND "
                r"\(\S*id <= webhook_endpoint_1\.queued_through"
            )
            assert re.search(bounds, plan), plan
    async with db.read() as session:
        heads = list(await session.scalars(webhooks.heads(now)))
    assert sorted((h.endpoint_id, h.event_id) for h in heads) == [
        (endpoint.id, 1000) for endpoint, _secret in made
    ]


async def test_the_migration_starts_each_endpoint_below_its_oldest_pending_delivery(
    database_url: str,
) -> None:
    """Revision 0007 gives each endpoint `settled_through`: just below its oldest pending
    delivery, or its newest one when none is pending, or 0 when it has none; and
    `queued_through`: its newest delivery (0 when it has none)."""
    db = Database(database_url)
    try:
        await migrate.downgrade(db, "0006")
        now = utc_now()
        # Endpoint 1: two settled, two pending; 2: all settled; 3: none.
        made = [(1, "SUCCEEDED"), (1, "FAILED"), (2, "SUCCEEDED"), (1, "PENDING")]
        made += [(2, "SUCCEEDED"), (1, "PENDING")]
        async with db.engine.begin() as connection:
            for endpoint in (1, 2, 3):
                await connection.execute(
                    text(
                        "INSERT INTO webhook_endpoint (id, url, event_types, enabled, secret,"
                        " enqueued_through, created_at)"
                        " VALUES (:id, 'https://hooks.example/', '', true, 's', 0, :now)"
                    ),
                    {"id": endpoint, "now": now},
                )
            for number, (endpoint, status) in enumerate(made, start=1):
                await connection.execute(
                    text(
                        "INSERT INTO webhook_delivery (id, endpoint_id, event_id, status,"
                        " attempts, next_attempt_at, created_at)"
                        " VALUES (:id, :endpoint, :event, :status, 0, NULL, :now)"
                    ),
                    {
                        "id": number,
                        "endpoint": endpoint,
                        "event": number,
                        "status": status,
                        "now": now,
                    },
                )
        await migrate.upgrade(db)
        async with db.read() as session:
            endpoints = await session.scalars(
                select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))
            )
            assert [(e.settled_through, e.queued_through) for e in endpoints] == [
                (3, 6),
                (5, 5),
                (0, 0),
            ]
            heads = list(await session.scalars(webhooks.heads()))
        assert [(h.endpoint_id, h.id) for h in heads] == [(1, 4)]
    finally:
        await db.dispose()


async def test_the_worker_starts_a_round_at_most_every_round_seconds(db: Database) -> None:
    """Under a burst of commits (each one news in the feed) the worker does not start a
    round per commit: each starts at least ROUND_SECONDS after the one before it."""
    feed = FeedSignal(db, poll_seconds=60, fallback_seconds=60)
    settings = Settings(cursor_secret="k" * 32)
    worker = DeliveryWorker(replace(await app_state(db, settings, utc_now), feed=feed))
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    enough = asyncio.Event()
    work = worker.work

    async def news_in_every_round(client: httpx.AsyncClient) -> None:
        starts.append(loop.time())
        feed._advance(feed.latest + 1)  # a commit as the round runs: the next wait ends at once
        if len(starts) == 6:
            enough.set()
        await work(client)

    worker.work = news_in_every_round  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            await enough.wait()
    finally:
        await cancel_and_wait(task)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # asyncio may run a timer up to its clock's resolution early.
    assert min(gaps) >= ROUND_SECONDS - loop._clock_resolution, gaps  # type: ignore[attr-defined]
