"""A page's statements cost what the page holds, not what the tables hold: its customers'
verifications are read by the index on their customer, for that page's customers only (on
PostgreSQL a plain join let the planner hash every verification in the table). Checked on
each backend with its own EXPLAIN, over a table of a few thousand seeded customers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect

from bench.seed import seed
from db import customers
from db.customer_rows import page_query
from db.driver import ByShape
from db.engine import Database
from db.models import KycStatus
from db.pages import Direction, keyset, page_values
from tests.support.databases import Databases

pytestmark = pytest.mark.one_executor("the plans of the compiled path's statements: no request")

SECRET = b"p" * 32
CUSTOMERS = 3_000
NOW = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(hours=24)
NEWEST = customers.ordering(customers.OrderField.CREATED_AT, Direction.DESC)
BY_ID = customers.ordering(customers.OrderField.EXTERNAL_CUSTOMER_ID, Direction.ASC)
PAGES = {
    "the heavy list": (customers.CustomerFilter(), NEWEST, 50, None),
    "the review queue": (
        customers.CustomerFilter(kyc_status=[KycStatus.UNDER_REVIEW]),
        NEWEST,
        50,
        None,
    ),
    "by externalCustomerId": (customers.CustomerFilter(), BY_ID, 50, None),
    "backward": (customers.CustomerFilter(), NEWEST, None, 20),
}


async def _seeded(db: Database) -> None:
    await seed(db.engine.url.render_as_string(hide_password=False), CUSTOMERS)


@pytest.fixture
def seeded_url(databases: Databases, backend: str) -> Iterator[str]:
    """A copy of a database of CUSTOMERS seeded customers and their verifications (the
    template is seeded once per backend)."""
    url = databases.url_for(backend, "plans", _seeded)
    yield url
    databases.drop(url)


@pytest.fixture
async def seeded(seeded_url: str) -> AsyncIterator[Database]:
    db = Database(seeded_url)
    yield db
    await db.dispose()


async def explain(db: Database, name: str) -> list[str]:
    """The plan of the page `name` with verifications: SQLite's EXPLAIN QUERY PLAN rows, or
    each node of PostgreSQL's plan as `<node type> <relation> <index>`."""
    where, ordering, first, last = PAGES[name]
    page = keyset(ordering, first=first, after=None, last=last, before=None, secret=SECRET)
    dialect = db.engine.dialect
    conditions = customers.conditions(where, NOW, TTL)
    statement, values = ByShape().on(
        dialect,
        "a page",
        conditions,
        page_values(page),
        lambda: page_query(conditions, ordering, page, True, dialect.name),
    )
    parameters = statement.parameters(values)
    async with db.engine.connect() as connection:
        driver: Any = (await connection.get_raw_connection()).driver_connection
        if dialect.name == "sqlite":
            rows = await driver.execute_fetchall(f"EXPLAIN QUERY PLAN {statement.sql}", parameters)
            return [str(row[-1]) for row in rows]
        (row,) = await driver.fetch(f"EXPLAIN (FORMAT JSON) {statement.sql}", *parameters)
    explained = row[0] if isinstance(row[0], list) else json.loads(row[0])  # decoded, or text
    nodes, stack = [], [explained[0]["Plan"]]
    while stack:
        node = stack.pop()
        nodes.append(
            " ".join(str(node.get(key, "")) for key in ("Node Type", "Relation Name", "Index Name"))
        )
        stack.extend(node.get("Plans", ()))
    return nodes


async def test_the_index_of_verifications_by_customer_exists(seeded: Database) -> None:
    async with seeded.engine.connect() as connection:
        indexes = await connection.run_sync(
            lambda sync: inspect(sync).get_indexes("kyc_verification")
        )
    assert {"name": "ix_kyc_verification_customer", "columns": ["customer_id", "id"]} in [
        {"name": index["name"], "columns": index["column_names"]} for index in indexes
    ]


@pytest.mark.parametrize("name", sorted(PAGES))
async def test_a_page_reads_its_verifications_by_index(seeded: Database, name: str) -> None:
    plan = await explain(seeded, name)
    verifications = [step for step in plan if "kyc_verification" in step]
    assert verifications, plan
    for step in verifications:
        if seeded.is_sqlite:
            assert step.startswith("SEARCH"), plan  # never SCAN: the whole table
            assert "INDEX ix_kyc_verification_customer (customer_id=?)" in step, plan
        else:
            assert step.startswith(("Index Scan", "Index Only Scan", "Bitmap")), plan
    if not seeded.is_sqlite:
        assert any("ix_kyc_verification_customer" in step for step in plan), plan
