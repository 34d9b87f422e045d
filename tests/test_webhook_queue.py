"""The webhook worker's queue, read as the worker reads it (the worker itself is off here:
the test moves the deliveries along by hand)."""

from __future__ import annotations

import base64
import os

import pytest

from db import webhooks
from db.engine import Database
from db.models import utc_now
from tests.support.graphql_client import GraphQLClient


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
    async with db.read() as session:
        assert not await webhooks.any_due(session, now)
        due = await webhooks.next_due(session)
    assert due is not None
    assert due > now  # the head's retry, not a delivery queued behind it
