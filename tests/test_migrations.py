"""Alembic migrations: they match the models, keep data across upgrades and downgrades."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import bindparam, inspect, text
from sqlmodel import SQLModel

from db import customers, migrate
from db.engine import Database
from db.kyc import DEFAULT_TTL
from db.models import KycStatus, UTCDateTime
from db.pages import Direction

FIRST = "0001"
# Timestamps bound the way the models store them (naive UTC text on SQLite).
AT = bindparam("at", type_=UTCDateTime())


@pytest.fixture
async def blank(database_url: str) -> AsyncIterator[Database]:
    """A database of the test's own with no tables at all."""
    db = Database(database_url)
    await migrate.downgrade(db, "base")
    yield db
    await db.dispose()


async def tables(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


async def test_latest_migration_matches_the_models(database_url: str) -> None:
    db = Database(database_url)
    async with db.engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), SQLModel.metadata
            )
        )
    await db.dispose()
    assert differences == []


async def test_upgrade_and_downgrade_keep_every_row(blank: Database) -> None:
    await migrate.upgrade(blank, FIRST)
    moment = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    async with blank.write() as session:
        for n, (first, last) in enumerate([("Ann", "Lee"), ("Åsa", None), (None, "STRAßE")]):
            await session.execute(
                text(
                    "INSERT INTO customer (id, external_customer_id, email, email_key, first_name,"
                    " last_name, kyc_status, created_at, updated_at) VALUES (:id, :ext, :email,"
                    " :key, :first, :last, :status, :at, :at)"
                ).bindparams(AT),
                {
                    "id": n + 1,
                    "ext": f"Old-{n}",
                    "email": f"Person{n}@example.com",
                    "key": f"person{n}@example.com",
                    "first": first,
                    "last": last,
                    "status": "VERIFIED" if n == 0 else None,
                    "at": moment,
                },
            )
            if n == 0:
                await session.execute(
                    text(
                        "INSERT INTO kyc_verification (customer_id, type, status, created_at,"
                        " updated_at) VALUES (1, 'PROOF_OF_ID', 'VERIFIED', :at, :at)"
                    ).bindparams(AT),
                    {"at": moment},
                )

    await migrate.upgrade(blank)
    assert await migrate.current_revision(blank) == migrate.head_revision()
    async with blank.read() as session:
        found = await customers.list_customers(
            session,
            customers.CustomerFilter(search="strasse"),
            customers.ordering(customers.OrderField.CREATED_AT, Direction.ASC),
            first=10,
            now=moment,
            ttl=DEFAULT_TTL,
            cursor_secret=b"test",
        )
        assert [row.external_customer_id for row in found.rows] == ["Old-2"]
        by_id_prefix = await customers.list_customers(
            session,
            customers.CustomerFilter(search="old-"),
            customers.ordering(customers.OrderField.EXTERNAL_CUSTOMER_ID, Direction.ASC),
            first=10,
            now=moment,
            ttl=DEFAULT_TTL,
            cursor_secret=b"test",
        )
        rows = by_id_prefix.rows
        assert [(r.external_customer_id, r.first_name, r.kyc_status) for r in rows] == [
            ("Old-0", "Ann", KycStatus.VERIFIED),
            ("Old-1", "Åsa", None),
            ("Old-2", None, None),
        ]
        assert all(r.created_at == moment for r in rows)

    await migrate.downgrade(blank, FIRST)
    async with blank.read() as session:
        assert (await session.execute(text("SELECT count(*) FROM customer"))).scalar_one() == 3
        count = text("SELECT count(*) FROM kyc_verification")
        assert (await session.execute(count)).scalar_one() == 1
        names = (await session.execute(text("SELECT first_name FROM customer ORDER BY id"))).all()
        assert [n for (n,) in names] == ["Ann", "Åsa", None]

    await migrate.downgrade(blank, "base")
    assert await tables(blank) == set()


async def test_concurrent_upgrades_of_a_blank_database_both_succeed(
    blank: Database, database_url: str
) -> None:
    other = Database(database_url)
    try:
        await asyncio.gather(migrate.upgrade(blank), migrate.upgrade(other))
    finally:
        await other.dispose()
    assert await tables(blank) == {
        "api_key",
        "customer",
        "kyc_verification",
        "server_secret",
        "event_counter",
        "customer_event",
        "webhook_endpoint",
        "webhook_delivery",
        "webhook_attempt",
    }
    assert await migrate.current_revision(blank) == migrate.head_revision()
