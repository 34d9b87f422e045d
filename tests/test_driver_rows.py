"""The driver's row readers read every value as SQLAlchemy's own result processors do.

db/driver.py converts the schema's enum and datetime columns with expressions of its own
(`conversion`) instead of calling the types' processors. Here every column of the tables the
compiled reads return is stored with NULLs where it may hold them, every enum member, and
datetimes at the edges (whole seconds, 999 ms, the first and last years), then read both
ways: through `Database.fetch` and through a SQLAlchemy session. Each value must be equal,
of the same type and in the same time zone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Column, Enum, Integer, String, Table, insert, select, text

from db.driver import DriverStatement
from db.engine import Database
from db.models import Customer, CustomerEvent, KycVerification, UTCDateTime

CUSTOMERS: Table = Customer.__table__  # type: ignore[attr-defined]
TABLES: list[Table] = [
    CUSTOMERS,
    KycVerification.__table__,  # type: ignore[attr-defined]
    CustomerEvent.__table__,  # type: ignore[attr-defined]
]
MOMENTS = [
    datetime(2024, 5, 6, 12, 34, 56, tzinfo=UTC),  # microsecond 0
    datetime(2024, 5, 6, 12, 34, 56, 999000, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, 1000, tzinfo=timezone(timedelta(hours=5))),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
]
ROWS = 16  # more than any column's choices (KycStatus's seven members and None)


def stored(column: Column[Any], n: int) -> Any:
    """Row `n`'s value of `column`: its choices taken in turn, None among them where it is
    nullable, so that the rows hold each choice and NULL."""
    kind = column.type
    choices: list[Any]
    if isinstance(kind, Enum):  # before String, which it is
        assert kind.enum_class is not None
        choices = list(kind.enum_class)
    elif isinstance(kind, UTCDateTime):
        choices = MOMENTS
    elif column.foreign_keys:
        choices = [1]  # the first row of the table it refers to
    elif isinstance(kind, Integer):  # BigInteger too
        choices = [n + 1]
    elif isinstance(kind, String):
        choices = [f"{column.name[0]}{n}"[: kind.length]]
    else:
        raise TypeError(f"{column}: a type this test does not know how to store")
    if column.nullable:
        choices = [*choices, None]
    return choices[n % len(choices)]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The database with ROWS rows in each table."""
    database = Database(database_url)
    async with database.write() as session:
        for table in TABLES:
            rows = [{c.name: stored(c, n) for c in table.c} for n in range(ROWS)]
            await session.execute(insert(table), rows)
    yield database
    await database.dispose()


def seen(value: Any) -> tuple[Any, type, Any, str]:
    """The value, its type, its time zone, and its repr (which tells time zones apart)."""
    return value, type(value), getattr(value, "tzinfo", None), repr(value)


async def both_ways(db: Database, table: Table) -> tuple[list[Any], list[Any]]:
    """The table's rows read by `Database.fetch` (the driver's row reader) and by a session
    (SQLAlchemy's processors), each value as `seen`, by column."""
    query = select(*table.c).order_by(*table.primary_key.columns)
    statement = DriverStatement.compile(query, db.engine.dialect)
    # The columns the reader converts by expressions of its own, not their processors: all
    # of the enums and datetimes, else this test would hold the processors to themselves.
    inline = [
        column.name
        for column, read in zip(table.c, statement.results, strict=True)
        if read is not None and read.expression != "{c}({v})"
    ]
    assert inline == [c.name for c in table.c if isinstance(c.type, Enum | UTCDateTime)]
    fast = await db.fetch(statement, {})
    async with db.read() as session:
        reference = (await session.execute(query)).all()
    names = [column.name for column in table.c]
    return (
        [{name: seen(value) for name, value in zip(names, row, strict=True)} for row in fast],
        [{name: seen(value) for name, value in zip(names, row, strict=True)} for row in reference],
    )


def expected(column: Column[Any]) -> set[Any]:
    """What the column's rows hold, as SQLAlchemy reads them back."""
    return {stored(column, n) for n in range(ROWS)}


@pytest.mark.parametrize("table", TABLES, ids=lambda table: table.name)
async def test_every_column_reads_as_sqlalchemy_reads_it(db: Database, table: Table) -> None:
    fast, reference = await both_ways(db, table)
    assert fast == reference
    # The reference holds what was stored (every enum member, NULL, each moment in UTC), so
    # that agreeing with it proves something.
    for column in table.c:
        read = {row[column.name] for row in reference}
        if isinstance(column.type, Enum):
            assert read == {seen(value) for value in expected(column)}
        if isinstance(column.type, UTCDateTime):
            moments = {None if m is None else m.astimezone(UTC) for m in expected(column)}
            assert read == {seen(moment) for moment in moments}


async def test_a_value_outside_an_enum_fails_as_sqlalchemy_fails(db: Database) -> None:
    """Both raise the Enum's LookupError, with the same message (the reader hands a value it
    does not know to the Enum's own processor)."""
    async with db.write() as session:
        await session.execute(text("UPDATE customer SET kyc_status = 'BOGUS' WHERE id = 3"))
    query = select(CUSTOMERS.c.kyc_status)
    with pytest.raises(LookupError) as fast:
        await db.fetch(DriverStatement.compile(query, db.engine.dialect), {})
    with pytest.raises(LookupError) as reference:
        async with db.read() as session:
            (await session.execute(query)).all()
    assert (type(fast.value), str(fast.value)) == (type(reference.value), str(reference.value))
    assert "'BOGUS' is not among the defined enum values" in str(fast.value)


@pytest.mark.sqlite_only  # PostgreSQL keeps a timestamptz, never text
@pytest.mark.parametrize(
    "written",
    ["2024-05-06 12:34:56+02:00", "2024-05-06T01:02:03.5Z", "2024-05-06", "2024-05-06 12:34"],
)
async def test_sqlite_datetime_text_in_other_forms_reads_as_sqlalchemy_reads_it(
    db: Database, written: str
) -> None:
    """Text this server never writes (it writes naive UTC with six decimals), written by
    hand: with an offset of its own, a date alone, no seconds."""
    async with db.write() as session:
        update = "UPDATE customer SET created_at = :written, kyc_started_at = :written"
        await session.execute(text(update + " WHERE id = 3"), {"written": written})
    fast, reference = await both_ways(db, CUSTOMERS)
    assert fast == reference
    assert reference[2]["created_at"][2] is UTC
