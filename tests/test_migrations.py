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


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL's sequences need no rebuild
async def test_the_id_rebuild_keeps_every_row_and_reference(blank: Database) -> None:
    """0006 rebuilds SQLite's customer and kyc_verification tables (AUTOINCREMENT): every
    row and verification stays, deleting a customer still takes its verifications, and no
    id in use is handed out again."""
    await migrate.upgrade(blank, "0005")
    moment = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    async with blank.write() as session:
        for n in (1, 2, 3):
            await session.execute(
                text(
                    "INSERT INTO customer (id, external_customer_id, external_id_key, email,"
                    " email_key, created_at, updated_at) VALUES (:id, :ext, :ext, :email,"
                    " :email, :at, :at)"
                ).bindparams(AT),
                {"id": n, "ext": f"c-{n}", "email": f"c{n}@example.com", "at": moment},
            )
            await session.execute(
                text(
                    "INSERT INTO kyc_verification (id, customer_id, type, status, created_at,"
                    " updated_at) VALUES (:id, :id, 'PROOF_OF_ID', 'PENDING', :at, :at)"
                ).bindparams(AT),
                {"id": n, "at": moment},
            )

    await migrate.upgrade(blank)
    counts = text("SELECT (SELECT count(*) FROM customer), (SELECT count(*) FROM kyc_verification)")
    async with blank.write() as session:
        assert (await session.execute(counts)).one() == (3, 3)
        await session.execute(text("DELETE FROM customer WHERE id = 3"))
        assert (await session.execute(counts)).one() == (2, 2)  # the cascade still holds
        made = await session.execute(
            text(
                "INSERT INTO customer (external_customer_id, external_id_key, email, email_key,"
                " created_at, updated_at) VALUES ('c-4', 'c-4', 'c4@example.com',"
                " 'c4@example.com', :at, :at) RETURNING id"
            ).bindparams(AT),
            {"at": moment},
        )
        assert made.scalar_one() == 4  # not 3 again
    async with blank.read() as session:
        for pragma in ("integrity_check", "foreign_key_check"):
            found = (await session.execute(text(f"PRAGMA {pragma}"))).all()
            assert [tuple(row) for row in found] in ([("ok",)], []), (pragma, found)
        definitions = await session.execute(
            text(
                "SELECT name, sql FROM sqlite_master"
                " WHERE tbl_name IN ('customer', 'kyc_verification') AND sql IS NOT NULL"
            )
        )
        stored: dict[str, str] = dict(definitions.all())
    assert "AUTOINCREMENT" in stored["customer"]
    assert "AUTOINCREMENT" in stored["kyc_verification"]
    assert 'REFERENCES "customer" (id) ON DELETE CASCADE' in stored["kyc_verification"]
    model_indexes = {
        index.name
        for table in ("customer", "kyc_verification")
        for index in SQLModel.metadata.tables[table].indexes
    }
    assert model_indexes <= set(stored)  # every index made again
