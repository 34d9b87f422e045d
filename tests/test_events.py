"""The event feed: one event per committed change, in one order, without personal data."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from db import customers, events
from db.engine import Database
from db.models import CustomerEvent, utc_now
from server import Settings, expire_kyc, prune_events
from tests.support.clock import Clock
from tests.support.graphql_client import GraphQLClient
from tests.support.log_privacy import personal_data_in

pytestmark = pytest.mark.both_executors

TTL = timedelta(hours=24)


async def feed(gql: GraphQLClient, **variables: Any) -> list[dict[str, Any]]:
    """Every event of the feed that matches, page by page (small pages, to walk cursors)."""
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await gql.run("customer_events", first=3, after=after, **variables))[
            "customerEvents"
        ]
        found += page["nodes"]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            return found


def summary(event: dict[str, Any]) -> tuple[Any, ...]:
    return (
        event["type"],
        event["externalCustomerId"],
        event["changedFields"],
        event["previousStatus"],
        event["status"],
        event["actor"],
    )


async def test_every_change_is_one_event_and_no_change_is_none(
    gql: GraphQLClient, clock: Clock
) -> None:
    await gql.create("c-1", firstName="Ann")
    assert (await gql.create("c-1"))["userErrors"]  # taken: nothing changes
    clock.advance(timedelta(seconds=1))
    await gql.update("c-1", city="Oslo", phone="+12015550123", firstName="Ann")
    await gql.update("c-1", city="Oslo")  # the same value: no change
    started = await gql.start_kyc("c-1")
    await gql.start_kyc("c-1")  # returns the active one: no change
    verification_id = started["verification"]["id"]
    await gql.record_kyc(verification_id, "UNDER_REVIEW")
    assert (await gql.record_kyc(verification_id, "VERIFIED"))["userErrors"]  # refused
    await gql.review_kyc(verification_id, "APPROVE")
    await gql.run("delete_customer", input={"externalCustomerId": "c-1"})

    found = await feed(gql)
    assert [summary(e) for e in found] == [
        ("CUSTOMER_CREATED", "c-1", [], None, None, "key:tests"),
        # In the contract's order, whatever order the patch had; firstName did not change.
        ("CUSTOMER_UPDATED", "c-1", ["phone", "city"], None, None, "key:tests"),
        ("KYC_VERIFICATION_STARTED", "c-1", [], None, "PENDING", "key:tests"),
        ("KYC_VERIFICATION_STATUS_CHANGED", "c-1", [], "PENDING", "UNDER_REVIEW", "key:tests"),
        (
            "KYC_VERIFICATION_STATUS_CHANGED",
            "c-1",
            [],
            "UNDER_REVIEW",
            "VERIFIED_MANUALLY",
            "key:tests",
        ),
        ("CUSTOMER_DELETED", "c-1", [], None, None, "key:tests"),
    ]
    assert found[1]["occurredAt"] == "2025-06-05T04:57:12.151Z"
    # The verification as it is now: gone with its customer.
    assert [e["verification"] for e in found] == [None] * 6
    assert len({e["id"] for e in found}) == len(found)
    # Nothing personal travels in an event: not the e-mail, not the phone, not the name.
    text = json.dumps(found)
    assert personal_data_in([text]) == []
    assert "Ann" not in text


async def test_a_kyc_change_leaves_updated_at_and_tells_the_feed(
    gql: GraphQLClient, clock: Clock
) -> None:
    # updatedAt is "when a value of the customer's data last changed" (the contract); a KYC
    # status is not customer data, so it does not move it: the feed tells KYC changes.
    created = await gql.create("c-1")
    clock.advance(timedelta(minutes=5))
    started = await gql.start_kyc("c-1")
    await gql.record_kyc(started["verification"]["id"], "VERIFIED")
    customer = await gql.customer("c-1")
    assert customer is not None
    assert customer["updatedAt"] == created["customer"]["updatedAt"]
    kinds = [e["type"] for e in await feed(gql, filter={"externalCustomerId": "c-1"})]
    assert kinds[-1] == "KYC_VERIFICATION_STATUS_CHANGED"


async def test_expiry_is_one_event_by_system_at_the_moment_it_expired(
    gql: GraphQLClient, clock: Clock, db: Database, settings: Settings
) -> None:
    await gql.create("c-1")
    await gql.create("c-2")
    started = await gql.start_kyc("c-1")
    await gql.start_kyc("c-2")
    clock.advance(TTL + timedelta(hours=3))
    assert await expire_kyc(db, settings, clock) == 2
    assert await expire_kyc(db, settings, clock) == 0
    # c-2's start after expiry: only the sweep wrote the expiry down, once.
    await gql.start_kyc("c-2")
    expired = await feed(gql, filter={"types": ["KYC_VERIFICATION_STATUS_CHANGED"]})
    sweep = "system:expiry-sweep"
    assert [summary(e) for e in expired] == [
        ("KYC_VERIFICATION_STATUS_CHANGED", f"c-{n}", [], "PENDING", "EXPIRED", sweep)
        for n in (1, 2)
    ]
    assert expired[0]["occurredAt"] == "2025-06-06T04:57:11.151Z"  # createdAt + ttl
    # The verification as it is now (the same object a client's cache holds under its id).
    assert expired[0]["verification"]["id"] == started["verification"]["id"]
    assert expired[0]["verification"]["status"] == "EXPIRED"


async def test_an_expiry_written_by_a_new_start_is_an_event_too(
    gql: GraphQLClient, clock: Clock
) -> None:
    await gql.create("c-1")
    first = (await gql.start_kyc("c-1"))["verification"]
    clock.advance(TTL + timedelta(minutes=7))
    # Finds the old one expired, writes that down, starts anew.
    second = (await gql.start_kyc("c-1"))["verification"]
    events = (await feed(gql))[1:]
    kinds = [(e["type"], e["actor"]) for e in events]
    assert kinds == [
        ("KYC_VERIFICATION_STARTED", "key:tests"),
        ("KYC_VERIFICATION_STATUS_CHANGED", "system:expiry-sweep"),
        ("KYC_VERIFICATION_STARTED", "key:tests"),
    ]
    # Each start names the verification it started; the expiry happened at createdAt + ttl,
    # whoever wrote it down (here the start, minutes later).
    assert [e["verification"]["id"] for e in events] == [first["id"], first["id"], second["id"]]
    assert events[0]["verification"]["status"] == "EXPIRED"  # as it is now
    assert events[2]["verification"]["status"] == "PENDING"
    assert events[1]["occurredAt"] == "2025-06-06T04:57:11.151Z"  # createdAt + ttl


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_concurrent_sweeps_write_each_expiry_once(
    gql: GraphQLClient, clock: Clock, db: Database, settings: Settings
) -> None:
    for n in range(30):
        await gql.create(f"c-{n}")
        await gql.start_kyc(f"c-{n}")
    clock.advance(TTL)
    others = [Database(settings.database_url) for _ in range(3)]
    try:
        counts = await asyncio.gather(*(expire_kyc(d, settings, clock) for d in [db, *others]))
    finally:
        for other in others:
            await other.dispose()
    assert sum(counts) == 30
    expired = await feed(gql, filter={"types": ["KYC_VERIFICATION_STATUS_CHANGED"]})
    assert sorted(e["externalCustomerId"] for e in expired) == sorted(f"c-{n}" for n in range(30))


async def test_the_feed_filters_and_pages(gql: GraphQLClient) -> None:
    for n in range(4):
        await gql.create(f"c-{n}")
        await gql.update(f"c-{n}", city="Oslo")
    only = await feed(gql, filter={"externalCustomerId": "c-2"})
    assert [(e["type"], e["externalCustomerId"]) for e in only] == [
        ("CUSTOMER_CREATED", "c-2"),
        ("CUSTOMER_UPDATED", "c-2"),
    ]
    updates = await feed(gql, filter={"types": ["CUSTOMER_UPDATED"]})
    assert [e["externalCustomerId"] for e in updates] == ["c-0", "c-1", "c-2", "c-3"]
    everything = await feed(gql)
    assert len(everything) == 8
    assert await feed(gql, filter={"types": []}) == everything  # empty: every type
    # The end cursor of an empty page is the cursor given: the client keeps its place.
    last = everything[-1]["cursor"]
    page = (await gql.run("customer_events", after=last))["customerEvents"]
    assert page["nodes"] == []
    assert page["pageInfo"] == {"hasNextPage": False, "endCursor": last}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"after": "nonsense"}, "The cursor is not valid; use a cursor from a page of this list."),
        ({"first": 101}, "first must be between 0 and 100; page through larger lists."),
    ],
)
async def test_bad_feed_arguments_are_bad_user_input(
    gql: GraphQLClient, arguments: dict[str, Any], message: str
) -> None:
    response = await gql.post(
        "query($first: Int, $after: String) { customerEvents(first: $first, after: $after) "
        "{ nodes { id } } }",
        arguments,
    )
    errors = response.json()["errors"]
    assert [(e["message"], e["extensions"]["code"]) for e in errors] == [
        (message, "BAD_USER_INPUT")
    ]


async def test_a_cursor_older_than_retention_must_resync(
    gql: GraphQLClient, clock: Clock, db: Database, settings: Settings
) -> None:
    await gql.create("c-1")
    first_cursor = (await feed(gql))[0]["cursor"]
    await gql.create("c-2")
    clock.advance(timedelta(days=settings.event_retention_days, seconds=1))
    await gql.create("c-3")
    assert await prune_events(db, settings, clock) == 2
    assert [e["externalCustomerId"] for e in await feed(gql)] == ["c-3"]
    response = await gql.post(
        "query($after: String) { customerEvents(after: $after) { nodes { id } } }",
        {"after": first_cursor},
    )
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Resync" in error["message"]


async def test_readers_never_see_an_event_behind_their_cursor(settings: Settings) -> None:
    """Writers in parallel transactions; a reader polling the table must see the numbers as
    one gapless run: a number that shows up later than a greater one was committed behind a
    cursor already handed out."""
    writers = [Database(settings.database_url) for _ in range(6)]
    reader = Database(settings.database_url)
    done = asyncio.Event()
    seen: list[int] = []

    async def write(db: Database, w: int) -> None:
        for n in range(15):
            async with db.transaction() as driver:
                written = await customers.create_customer(
                    driver,
                    f"w{w}-{n}",
                    {"email": f"w{w}-{n}@example.com"},
                    now=utc_now(),
                    who="t",
                )
                assert written.customer is not None
                await asyncio.sleep(0)  # let another writer interleave before this commit

    async def read() -> None:
        position = 0
        while True:
            finished = done.is_set()
            async with reader.read() as session:
                rows = await events.events_after(session, position, events.EventFilter(), 1000)
            for row in rows:
                seen.append(row.id)
                position = row.id
            if finished:
                return
            await asyncio.sleep(0.001)

    try:
        reading = asyncio.create_task(read())
        await asyncio.gather(*(write(db, w) for w, db in enumerate(writers)))
        done.set()
        await reading
    finally:
        for db in [*writers, reader]:
            await db.dispose()
    assert seen == list(range(1, 6 * 15 + 1))


async def test_events_are_in_the_table_with_their_change(settings: Settings) -> None:
    """A change that rolls back takes its event with it: they are one transaction."""
    db = Database(settings.database_url)
    try:

        async def roll_back() -> None:
            async with db.transaction() as driver:
                await customers.create_customer(
                    driver,
                    "gone",
                    {"email": "gone@example.com"},
                    now=utc_now(),
                    who="t",
                )
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError):
            await roll_back()
        async with db.read() as session:
            assert list(await session.scalars(select(CustomerEvent))) == []
            assert await events.head(session) == 0
            rows = await session.scalars(select(col(CustomerEvent.id)))
            assert list(rows) == []
    finally:
        await db.dispose()
