"""`Query.customers`: keyset traversal in every order, every filter, bad cursors, SQL counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from db import customers, kyc, models, rules
from db.driver import WriteDriver
from db.engine import Database
from db.models import KycStatus, KycType
from schema import ids
from schema.scalars import serialize
from tests.support.clock import Clock
from tests.support.databases import Databases
from tests.support.graphql_client import GraphQLClient
from tests.support.statements import counting_statements

pytestmark = pytest.mark.both_executors

N = 240
PAGE = 37
TTL = timedelta(hours=24)
FIRST_NAMES = ["Ann", "ann", "Åsa", "Bob", "bo", None, "Zoë"]
COUNTRIES = ["US", "GB", "DE", None]


async def seed(db: Database, clock: Clock) -> None:
    """N customers with many ties in every sort key, and verifications in every status.

    A third of them are created in the same millisecond as their neighbour; ids and e-mails mix
    cases, so code-point and case-insensitive orders differ.
    """
    async with db.write() as session:
        for i in range(N):
            if i % 3:
                clock.advance(timedelta(milliseconds=1))
            n = (i * 7919) % N
            written = await customers.create_customer(
                await WriteDriver.of(session),
                f"{'C' if n % 2 else 'c'}-{n:04d}",
                {
                    "email": f"{'User' if i % 2 else 'user'}{(i * 31) % N:04d}@example.com",
                    "first_name": FIRST_NAMES[i % len(FIRST_NAMES)],
                    "last_name": f"Lee{i % 5}",
                    "country": COUNTRIES[i % len(COUNTRIES)],
                },
                now=clock(),
                who="tests",
            )
            assert written.customer is not None, written.problems
        # Old PENDING verifications, which will have expired by the time the lists are read.
        for n in range(0, N, 11):
            await kyc.start_verification(
                session,
                f"{'C' if n % 2 else 'c'}-{n:04d}",
                KycType.PROOF_OF_ID,
                clock(),
                who="tests",
            )
    clock.advance(TTL + timedelta(hours=1))
    async with db.write() as session:
        rows = list(await session.scalars(select(models.Customer).order_by(models.Customer.id)))  # type: ignore[arg-type]
        for i, row in enumerate(rows):
            if i % 4 == 0:  # ties in updatedAt too
                clock.advance(timedelta(milliseconds=i % 8 == 0))
                await customers.update_customer(
                    await WriteDriver.of(session),
                    row.external_customer_id,
                    {"city": f"City {i}"},
                    now=clock(),
                    who="tests",
                )
            outcome = [None, KycStatus.VERIFIED, KycStatus.UNDER_REVIEW, KycStatus.REJECTED, None][
                i % 5
            ]
            if i % 11 and i % 5 in (1, 2, 3, 4):
                moved = await kyc.start_verification(
                    session,
                    row.external_customer_id,
                    KycType.PROOF_OF_ID,
                    clock(),
                    TTL,
                    who="tests",
                )
                if outcome is not None and moved.verification is not None and moved.verification.id:
                    await kyc.move_verification(
                        session,
                        moved.verification.id,
                        outcome,
                        kyc.Actor.PROVIDER,
                        clock(),
                        TTL,
                        who="tests",
                    )


async def truth(db: Database, clock: Clock) -> list[dict[str, Any]]:
    """Every customer as the database has it, with the KYC status that reads should show."""
    async with db.read() as session:
        rows = list(await session.scalars(select(models.Customer)))
    return [
        {
            "pk": row.id,
            "externalCustomerId": row.external_customer_id,
            "email": row.email,
            "firstName": row.first_name,
            "lastName": row.last_name,
            "country": row.country,
            "kycStatus": None
            if row.kyc_status is None
            else kyc.effective_status(row.kyc_status, row.kyc_started_at, clock(), TTL).value,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
        }
        for row in rows
    ]


SEEDED_AT: dict[str, datetime] = {}  # by backend: the seeding clock's time when it ended


@pytest.fixture
def database_url(databases: Databases, backend: str) -> Iterator[str]:
    """A copy of a database seeded once per backend, so no test sees another's writes."""

    async def build(db: Database) -> None:
        clock = Clock()
        await seed(db, clock)
        SEEDED_AT[backend] = clock.now

    url = databases.url_for(backend, "seeded", build)
    yield url
    databases.drop(url)


@pytest.fixture
async def world(db: Database, clock: Clock, backend: str) -> list[dict[str, Any]]:
    clock.now = SEEDED_AT[backend]
    return await truth(db, clock)


SORT_KEYS: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    "CREATED_AT": lambda c: (c["createdAt"], c["pk"]),
    "UPDATED_AT": lambda c: (c["updatedAt"], c["pk"]),
    "EXTERNAL_CUSTOMER_ID": lambda c: (c["externalCustomerId"],),
    "EMAIL": lambda c: (rules.fold(c["email"]),),
}


async def page(gql: GraphQLClient, **variables: Any) -> dict[str, Any]:
    connection: dict[str, Any] = (await gql.run("customers", **variables))["customers"]
    return connection


async def walk(gql: GraphQLClient, forward: bool, **variables: Any) -> list[str]:
    """Every externalCustomerId of the list, page by page, in list order."""
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        if forward:
            result = await page(gql, first=PAGE, after=cursor, **variables)
        else:
            result = await page(gql, last=PAGE, before=cursor, **variables)
        names = [e["node"]["externalCustomerId"] for e in result["edges"]]
        seen = seen + names if forward else names + seen
        info = result["pageInfo"]
        pages += 1
        assert pages <= N // PAGE + 2, "the walk does not end"
        more = info["hasNextPage"] if forward else info["hasPreviousPage"]
        if not more:
            return seen
        assert len(names) == PAGE
        cursor = info["endCursor"] if forward else info["startCursor"]


@pytest.mark.parametrize("forward", [True, False], ids=["forward", "backward"])
@pytest.mark.parametrize("direction", ["ASC", "DESC"])
@pytest.mark.parametrize("field", SORT_KEYS)
async def test_walk_visits_every_customer_once_in_order(
    gql: GraphQLClient, world: list[dict[str, Any]], field: str, direction: str, forward: bool
) -> None:
    expected = sorted(world, key=SORT_KEYS[field], reverse=direction == "DESC")
    seen = await walk(gql, forward, orderBy={"field": field, "direction": direction})
    assert seen == [c["externalCustomerId"] for c in expected]


async def test_default_is_twenty_newest_first(
    gql: GraphQLClient, world: list[dict[str, Any]]
) -> None:
    result = await page(gql)
    newest = sorted(world, key=SORT_KEYS["CREATED_AT"], reverse=True)[:20]
    assert [e["node"]["externalCustomerId"] for e in result["edges"]] == [
        c["externalCustomerId"] for c in newest
    ]
    assert result["pageInfo"]["hasNextPage"] is True
    assert result["pageInfo"]["hasPreviousPage"] is False
    edge = result["edges"][0]
    assert ids.decode(edge["node"]["id"]) == ("Customer", newest[0]["pk"])
    assert edge["node"]["createdAt"] == serialize(newest[0]["createdAt"])


async def test_page_info_at_the_ends(gql: GraphQLClient, world: list[dict[str, Any]]) -> None:
    everything = await page(gql, first=100, filter={"country": "GB"}, withTotalCount=True)
    assert everything["totalCount"] == sum(c["country"] == "GB" for c in world) == 60
    assert everything["pageInfo"]["hasNextPage"] is False
    last = everything["pageInfo"]["endCursor"]
    beyond = await page(gql, first=10, after=last, filter={"country": "GB"})
    assert beyond["edges"] == []
    assert beyond["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": None,
        "endCursor": None,
    }
    empty = await page(gql, first=0)
    assert (empty["edges"], empty["pageInfo"]["hasNextPage"]) == ([], True)


def matching(world: list[dict[str, Any]], predicate: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {c["externalCustomerId"] for c in world if predicate(c)}


def starts(value: str | None, prefix: str) -> bool:
    return value is not None and rules.fold(value).startswith(rules.fold(prefix))


FILTERS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = {
    "ids": (
        {"externalCustomerIds": ["c-0000", "C-0001", "C-0000", "nobody"]},
        lambda c: c["externalCustomerId"] in {"c-0000", "C-0001"},
    ),
    "no ids": ({"externalCustomerIds": []}, lambda c: False),
    "email any case": (
        {"email": " USER0031@EXAMPLE.com "},
        lambda c: c["email"].lower() == "user0031@example.com",
    ),
    "search email": ({"search": "USER001"}, lambda c: starts(c["email"], "user001")),
    "search first name": ({"search": "åS"}, lambda c: starts(c["firstName"], "ås")),
    "search last name": ({"search": "lee3"}, lambda c: starts(c["lastName"], "lee3")),
    "search id": ({"search": "c-00"}, lambda c: starts(c["externalCustomerId"], "c-00")),
    "search one letter": (
        {"search": "b"},
        lambda c: any(
            starts(c[k], "b") for k in ("email", "firstName", "lastName", "externalCustomerId")
        ),
    ),
    "search blank": ({"search": "  "}, lambda c: True),
    "country": ({"country": "de"}, lambda c: c["country"] == "DE"),
    "review queue": ({"kycStatus": ["UNDER_REVIEW"]}, lambda c: c["kycStatus"] == "UNDER_REVIEW"),
    "pending excludes stale": ({"kycStatus": ["PENDING"]}, lambda c: c["kycStatus"] == "PENDING"),
    "expired includes stale": ({"kycStatus": ["EXPIRED"]}, lambda c: c["kycStatus"] == "EXPIRED"),
    "several statuses": (
        {"kycStatus": ["VERIFIED", "REJECTED", "PENDING", "EXPIRED"]},
        lambda c: c["kycStatus"] in {"VERIFIED", "REJECTED", "PENDING", "EXPIRED"},
    ),
    "has verification": ({"hasKycVerification": True}, lambda c: c["kycStatus"] is not None),
    "has none": ({"hasKycVerification": False}, lambda c: c["kycStatus"] is None),
    "combined": (
        {
            "country": "US",
            "search": "user",
            "kycStatus": ["VERIFIED", "UNDER_REVIEW"],
            "hasKycVerification": True,
        },
        lambda c: c["country"] == "US" and c["kycStatus"] in {"VERIFIED", "UNDER_REVIEW"},
    ),
}


@pytest.mark.parametrize("name", FILTERS)
async def test_filter(gql: GraphQLClient, world: list[dict[str, Any]], name: str) -> None:
    where, predicate = FILTERS[name]
    expected = matching(world, predicate)
    if name not in ("no ids", "search blank"):
        assert 0 < len(expected) < N, "the seed should make this filter selective"
    result = await page(gql, first=100, filter=where, withTotalCount=True)
    found = [e["node"]["externalCustomerId"] for e in result["edges"]]
    if result["pageInfo"]["hasNextPage"]:
        found += await walk(gql, True, filter=where)
        found = found[100:]
    assert len(found) == len(set(found))
    assert set(found) == expected
    assert result["totalCount"] == len(expected)


async def test_created_between(gql: GraphQLClient, world: list[dict[str, Any]]) -> None:
    times = sorted({c["createdAt"] for c in world})
    after, before = times[10], times[40]
    where = {"createdAfter": serialize(after), "createdBefore": serialize(before)}
    result = await page(gql, first=100, filter=where, withTotalCount=True)
    expected = matching(world, lambda c: after < c["createdAt"] < before)
    assert {e["node"]["externalCustomerId"] for e in result["edges"]} == expected
    assert result["totalCount"] == len(expected)


async def test_kyc_verifications_of_a_page(gql: GraphQLClient, world: list[dict[str, Any]]) -> None:
    result = await page(gql, first=100, filter={"kycStatus": ["EXPIRED"]})
    expired = matching(world, lambda c: c["kycStatus"] == "EXPIRED")
    assert 0 < len(expired) <= 100
    assert {e["node"]["externalCustomerId"] for e in result["edges"]} == expired
    for edge in result["edges"]:
        node = edge["node"]
        assert node["kycStatus"] == "EXPIRED"
        assert [v["status"] for v in node["kycVerifications"]][-1] == "EXPIRED"


# -- bad requests ------------------------------------------------------------------------------


async def error_of(gql: GraphQLClient, **variables: Any) -> dict[str, Any]:
    from tests.support.graphql_client import operation

    body = (await gql.post(operation("customers"), variables)).json()
    assert body.get("data") is None
    [error] = body["errors"]
    assert "Traceback" not in str(error)
    return dict(error)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"first": 101}, "first must be between 0 and 100"),
        ({"last": 1000}, "last must be between 0 and 100"),
        ({"first": -1}, "first must be between 0 and 100"),
        ({"first": 1, "last": 1}, "either first or last"),
        ({"after": "not a cursor"}, "The cursor is not valid"),
        ({"before": "", "last": 5}, "The cursor is not valid"),
        ({"after": "eyJhIjoxfQ"}, "The cursor is not valid"),
        ({"filter": {"externalCustomerIds": [str(n) for n in range(101)]}}, "at most 100 ids"),
    ],
)
async def test_bad_page_requests_are_clear_errors(
    gql: GraphQLClient, variables: dict[str, Any], message: str
) -> None:
    error = await error_of(gql, **variables)
    assert message in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_tampered_cursor_is_refused(gql: GraphQLClient, world: list[dict[str, Any]]) -> None:
    cursor = (await page(gql, first=2))["pageInfo"]["endCursor"]
    flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    error = await error_of(gql, first=2, after=flipped)
    assert "The cursor is not valid" in error["message"]


@pytest.mark.parametrize(
    "other",
    [{"field": "EMAIL"}, {"direction": "ASC"}, {"field": "UPDATED_AT", "direction": "DESC"}],
)
async def test_cursor_of_another_ordering_is_refused(
    gql: GraphQLClient, world: list[dict[str, Any]], other: dict[str, str]
) -> None:
    cursor = (await page(gql, first=2))["pageInfo"]["endCursor"]
    error = await error_of(gql, first=2, after=cursor, orderBy=other)
    assert "another ordering" in error["message"]


# -- statements --------------------------------------------------------------------------------


async def test_statements_per_page_do_not_grow_with_the_page(
    gql: GraphQLClient, db: Database, world: list[dict[str, Any]]
) -> None:
    await page(gql, first=1)  # the key's last-used stamp is written on its first request
    with counting_statements(db) as one:
        assert len((await page(gql, first=1))["edges"]) == 1
    with counting_statements(db) as hundred:
        result = await page(gql, first=100)
    assert len(result["edges"]) == 100
    assert sum(len(e["node"]["kycVerifications"]) for e in result["edges"]) > 50
    assert len(hundred) == len(one) <= 3, hundred
    with counting_statements(db) as counted:
        await page(gql, first=100, withTotalCount=True)
    assert len(counted) == len(hundred) + 1


async def test_concurrent_pages_share_nothing(
    gql: GraphQLClient, world: list[dict[str, Any]]
) -> None:
    """Loaders are per request: two requests at once each get their own customers' history."""
    a, b = await asyncio.gather(
        page(gql, first=50, filter={"kycStatus": ["VERIFIED"]}),
        page(gql, first=50, filter={"hasKycVerification": False}),
    )
    verified = matching(world, lambda c: c["kycStatus"] == "VERIFIED")
    unverified = matching(world, lambda c: c["kycStatus"] is None)
    assert len(a["edges"]) == min(50, len(verified)) > 0
    assert len(b["edges"]) == min(50, len(unverified)) > 0
    assert all(e["node"]["kycVerifications"][-1]["status"] == "VERIFIED" for e in a["edges"])
    assert all(e["node"]["kycVerifications"] == [] for e in b["edges"])
