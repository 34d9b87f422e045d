"""Reads and writes of customers. Every write runs `db.rules` on the complete record."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from db import events, rules
from db.driver import PerDialect, WriteDriver, among, row_type, settable, setting
from db.events import NewEvent
from db.faults import UNIQUE_VIOLATIONS
from db.models import Customer, EventType, KycStatus
from db.pages import Direction, Ordering, Page, fetch_page
from db.rules import Code, Environment, Problem

CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]


# A customer as a write gives it back: its columns as a row's attributes, as the compiled
# reads' rows have them (what schema/fields.py reads), and the very type of the row an
# update reads (`_FOR_UPDATE`). Making an ORM object of it cost about 75 us of a write's
# CPU, for an object no session holds.
CustomerRow = row_type(tuple(column.key for column in CUSTOMERS.c))


@dataclass
class CustomerOutcome:
    """What a customer write did: the customer it wrote (a `CustomerRow`), or the problems
    that stopped it."""

    customer: Any = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def search_keys(values: Mapping[str, str | None]) -> dict[str, str | None]:
    """The case-folded key columns of a record, from its values by column."""
    external_id = values.get("external_customer_id")
    keys = {
        "email_key": values["email"],
        "first_name_key": values["first_name"],
        "last_name_key": values["last_name"],
        **({"external_id_key": external_id} if external_id is not None else {}),
    }
    return {column: None if value is None else rules.fold(value) for column, value in keys.items()}


async def get_customer(session: AsyncSession, external_customer_id: str) -> Customer | None:
    """The customer with this id (exact, case-sensitive), or None."""
    return await session.scalar(
        select(Customer).where(col(Customer.external_customer_id) == external_customer_id)
    )


async def get_customers(session: AsyncSession, ids: Sequence[int]) -> list[Customer | None]:
    """The customers with these primary keys, in the keys' order, None where there is none."""
    rows = await session.scalars(select(Customer).where(col(Customer.id).in_(ids)))
    by_id = {row.id: row for row in rows}
    return [by_id.get(id_) for id_ in ids]


async def get_customers_by_external_id(
    session: AsyncSession, external_ids: Sequence[str]
) -> list[Customer | None]:
    """The customers with these ids of the client's system, in order, None where there is none."""
    query = select(Customer).where(col(Customer.external_customer_id).in_(external_ids))
    by_id = {row.external_customer_id: row for row in await session.scalars(query)}
    return [by_id.get(external_id) for external_id in external_ids]


async def create_customer(
    driver: WriteDriver,
    external_customer_id: str | None,
    data: Mapping[str, str | None],
    environment: Environment = Environment.PRODUCTION,
    *,
    now: datetime,
    who: str,
) -> CustomerOutcome:
    """Create a customer, or return every problem with the input and write nothing.

    A customer made records CUSTOMER_CREATED by `who` in the same transaction.
    """
    checked = rules.check_customer(external_customer_id, data, environment)
    values = checked.values
    external_id = _accepted(
        values["external_customer_id"], checked.problems, "external_customer_id"
    )
    email = _accepted(values["email"], checked.problems, "email")
    problems = checked.problems + await _taken(driver, external_id, email)
    if problems:
        return CustomerOutcome(problems=rules.in_field_order(problems), warnings=checked.warnings)

    record: dict[str, Any] = {
        "external_customer_id": values["external_customer_id"],
        **{name: values[name] for name in rules.DATA_FIELDS},
        **search_keys(values),
        "kyc_status": None,
        "kyc_started_at": None,
        "created_at": now,
        "updated_at": now,
    }
    inserted = await driver.run(_INSERT, setting(record))
    if not inserted:  # a unique index refused it: a race lost to another writer's commit
        return CustomerOutcome(problems=await _lost_race(driver, external_id, email))
    customer = CustomerRow(id=inserted[0].id, **record)
    created = NewEvent(EventType.CUSTOMER_CREATED, customer.external_customer_id, who, now)
    await events.append(driver, [created], now)
    return CustomerOutcome(customer=customer, warnings=checked.warnings)


async def update_customer(
    driver: WriteDriver,
    external_customer_id: str,
    patch: Mapping[str, str | None],
    environment: Environment = Environment.PRODUCTION,
    *,
    now: datetime,
    who: str,
) -> CustomerOutcome:
    """Apply a patch (absent key: unchanged; None: cleared) to a customer.

    The patch is merged into the stored record and the whole record checked, so a patch can
    never leave a record that create would refuse. `updated_at` moves only when a value changes,
    and only then is CUSTOMER_UPDATED recorded, naming the changed fields (never their values).
    """
    found = await driver.run(_FOR_UPDATE, {"external_customer_id": external_customer_id})
    if not found:
        return CustomerOutcome(problems=[not_found(external_customer_id)])
    row = found[0]
    stored = row._asdict()
    checked = rules.check_record({**stored, **patch}, environment)
    email = _accepted(checked.values["email"], checked.problems, "email")
    # An e-mail left as it is is the customer's own, which no other can hold: most patches
    # read nothing more.
    new_email = None if email == stored["email"] else email
    problems = checked.problems + await _taken(driver, None, new_email, exclude=stored["id"])
    if problems:
        return CustomerOutcome(problems=rules.in_field_order(problems), warnings=checked.warnings)

    changed = {
        name: checked.values[name]
        for name in rules.DATA_FIELDS
        if stored[name] != checked.values[name]
    }
    if not changed:
        return CustomerOutcome(customer=row, warnings=checked.warnings)
    written = {**changed, **search_keys(checked.values), "updated_at": now}
    try:
        # A new e-mail can meet another writer's, committed after the check above: the
        # unique index refuses it, and on PostgreSQL that would abort the whole transaction.
        async with driver.savepoint("new_email") if "email" in changed else nullcontext():
            await driver.run(_UPDATE, {"customer_id": row.id, **setting({**stored, **written})})
    except UNIQUE_VIOLATIONS:
        return CustomerOutcome(problems=await _lost_race(driver, None, email, stored["id"]))
    updated = NewEvent(EventType.CUSTOMER_UPDATED, external_customer_id, who, now, list(changed))
    await events.append(driver, [updated], now)
    return CustomerOutcome(customer=row._replace(**written), warnings=checked.warnings)


async def delete_customer(
    session: AsyncSession, external_customer_id: str, *, now: datetime, who: str
) -> list[Problem]:
    """Delete a customer and its verifications, recording CUSTOMER_DELETED; NOT_FOUND when
    there is no such customer."""
    result = await session.execute(
        delete(Customer).where(col(Customer.external_customer_id) == external_customer_id)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return [not_found(external_customer_id)]
    deleted = NewEvent(EventType.CUSTOMER_DELETED, external_customer_id, who, now)
    await events.record(session, [deleted], now)
    return []


# The writes' statements, run on the session's driver connection (db/driver.py): a round trip
# each, where the ORM's unit of work cost several, and far more Python per statement.
_C = CUSTOMERS.c
_WRITTEN = [column for column in _C if column.key != "id"]


def _insert(dialect: str) -> Any:
    # ON CONFLICT DO NOTHING: a row a unique index refuses comes back as no row, not as an
    # error that would abort a PostgreSQL transaction.
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return insert(CUSTOMERS).values(settable(_WRITTEN)).on_conflict_do_nothing().returning(_C.id)


_INSERT = PerDialect(_insert)
_UPDATE = PerDialect(
    lambda _dialect: (
        sa_update(CUSTOMERS)
        .where(_C.id == bindparam("customer_id", type_=_C.id.type))
        .values(settable(_WRITTEN))
    )
)
_FOR_UPDATE = PerDialect(
    lambda _dialect: (
        sa_select(*_C)
        .where(
            _C.external_customer_id
            == bindparam("external_customer_id", type_=_C.external_customer_id.type)
        )
        .with_for_update()
    )
)


def _taken_statement(external_id: bool, email: bool, exclude: bool) -> PerDialect:
    def build(_dialect: str) -> Any:
        conditions = []
        if external_id:
            column = _C.external_customer_id
            conditions.append(column == bindparam("external_id", type_=column.type))
        if email:
            conditions.append(_C.email_key == bindparam("email_key", type_=_C.email_key.type))
        query = sa_select(_C.external_customer_id, _C.email_key).where(or_(*conditions))
        if exclude:
            query = query.where(_C.id != bindparam("exclude", type_=_C.id.type))
        return query

    return PerDialect(build)


_TAKEN = {
    shape: _taken_statement(*shape)
    for shape in itertools.product((False, True), repeat=3)
    if shape[0] or shape[1]
}


async def _taken(
    driver: WriteDriver,
    external_id: str | None,
    email: str | None,
    exclude: int | None = None,
) -> list[Problem]:
    """TAKEN problems for an id or an e-mail (any case) that another customer already has."""
    if external_id is None and email is None:
        return []
    email_key = None if email is None else rules.fold(email)
    statement = _TAKEN[(external_id is not None, email is not None, exclude is not None)]
    values = {"external_id": external_id, "email_key": email_key, "exclude": exclude}
    rows = await driver.run(statement, {k: v for k, v in values.items() if v is not None})
    problems = []
    if external_id is not None and any(row[0] == external_id for row in rows):
        problems.append(
            Problem(
                "external_customer_id",
                Code.TAKEN,
                f"A customer with the id {external_id!r} already exists.",
            )
        )
    if email_key is not None and any(row[1] == email_key for row in rows):
        problems.append(
            Problem(
                "email",
                Code.TAKEN,
                "Another customer already has this e-mail address (compared ignoring case).",
            )
        )
    return problems


async def _lost_race(
    driver: WriteDriver, external_id: str | None, email: str | None, exclude: int | None = None
) -> list[Problem]:
    """What a write refused by a unique index reports: the value another writer took."""
    taken = await _taken(driver, external_id, email, exclude)
    if not taken:
        raise RuntimeError("a unique index refused the customer, yet no other holds its values")
    return taken


def _accepted(value: str | None, problems: list[Problem], name: str) -> str | None:
    """The value if it passed its own rules: uniqueness is checked only for such values."""
    return None if value is None or any(p.field == name for p in problems) else value


def not_found(external_customer_id: str) -> Problem:
    """NOT_FOUND at external_customer_id: what an unknown customer (or another's, to a
    customers:self token) gets."""
    return Problem(
        "external_customer_id",
        Code.NOT_FOUND,
        f"There is no customer with the id {external_customer_id!r}.",
    )


class OrderField(enum.StrEnum):
    """What a list of customers can be sorted by."""

    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    EXTERNAL_CUSTOMER_ID = "EXTERNAL_CUSTOMER_ID"
    EMAIL = "EMAIL"


# Each order's sort key ends in a unique column, so that rows sharing a value keep one place.
_SORT_KEYS: Mapping[OrderField, tuple[Any, ...]] = {
    OrderField.CREATED_AT: (col(Customer.created_at), col(Customer.id)),
    OrderField.UPDATED_AT: (col(Customer.updated_at), col(Customer.id)),
    OrderField.EXTERNAL_CUSTOMER_ID: (col(Customer.external_customer_id),),
    OrderField.EMAIL: (col(Customer.email_key),),
}


def ordering(field_: OrderField, direction: Direction) -> Ordering:
    return Ordering(field_.value, _SORT_KEYS[field_], direction)


@dataclass(frozen=True)
class CustomerFilter:
    """Conditions on a list of customers, all of which must hold; None means any."""

    external_customer_ids: Sequence[str] | None = None
    email: str | None = None  # exact, ignoring case
    search: str | None = None  # prefix of the e-mail, first or last name or id, ignoring case
    country: str | None = None
    kyc_status: Sequence[KycStatus] | None = None  # the newest verification's, as reads see it
    has_kyc_verification: bool | None = None
    created_after: datetime | None = None  # strictly after
    created_before: datetime | None = None  # strictly before


async def list_customers(
    session: AsyncSession,
    where: CustomerFilter,
    order: Ordering,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    now: datetime,
    ttl: timedelta,
    cursor_secret: bytes,
) -> Page[Customer]:
    """One page of the customers that match, in one statement; PageError for a bad cursor.

    Cursors are signed with, and checked against, `cursor_secret`."""
    query = select(Customer).where(*conditions(where, now, ttl))
    return await fetch_page(
        session, query, order, first=first, after=after, last=last, before=before,
        secret=cursor_secret,
    )  # fmt: skip


async def count_customers(
    session: AsyncSession, where: CustomerFilter, now: datetime, ttl: timedelta
) -> int:
    """How many customers match."""
    query = count_query_of(conditions(where, now, ttl))
    return int((await session.execute(query)).scalar_one())


def count_query_of(conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    """The statement that counts the customers that meet `conditions` (`totalCount`)."""
    return sa_select(func.count().label("count")).select_from(CUSTOMERS).where(*conditions)


def conditions(where: CustomerFilter, now: datetime, ttl: timedelta) -> list[ColumnElement[bool]]:
    """The filter as SQL conditions, its values as literals (whoever runs the statement:
    the session, or the compiled path's statements of one shape, db/driver.py's `ByShape`)."""
    conditions: list[ColumnElement[bool]] = []
    if where.external_customer_ids is not None:
        conditions.append(among(_C.external_customer_id, where.external_customer_ids))
    if where.email is not None:
        conditions.append(col(Customer.email_key) == rules.fold(where.email.strip()))
    if where.search is not None and (term := rules.fold(where.search.strip())):
        keys = (
            Customer.email_key,
            Customer.external_id_key,
            Customer.first_name_key,
            Customer.last_name_key,
        )
        conditions.append(or_(*(_prefix(col(key), term) for key in keys)))
    if where.country is not None:
        conditions.append(col(Customer.country) == where.country.strip().upper())
    if where.kyc_status is not None:
        conditions.append(_kyc_status_in(set(where.kyc_status), now - ttl))
    if where.has_kyc_verification is not None:
        status = col(Customer.kyc_status)
        conditions.append(status.is_not(None) if where.has_kyc_verification else status.is_(None))
    if where.created_after is not None:
        conditions.append(col(Customer.created_at) > where.created_after)
    if where.created_before is not None:
        conditions.append(col(Customer.created_at) < where.created_before)
    return conditions


def _prefix(column: Any, term: str) -> ColumnElement[bool]:
    """`column` starts with `term`, as a range that an index answers: term <= column < next."""
    last = ord(term[-1])
    if last == 0x10FFFF:  # no next code point: fall back to comparing the start
        return func.substr(column, 1, len(term)) == term
    following = 0xE000 if 0xD800 <= last + 1 <= 0xDFFF else last + 1  # skip the surrogates
    return and_(column >= term, column < term[:-1] + chr(following))


def _kyc_status_in(statuses: set[KycStatus], stale_before: datetime) -> ColumnElement[bool]:
    """The newest verification's status is one of these, as reads see it: a PENDING started
    before `stale_before` counts as EXPIRED even before the sweep writes it down."""
    status, started = _C.kyc_status, _C.kyc_started_at
    pending, expired = KycStatus.PENDING in statuses, KycStatus.EXPIRED in statuses
    if pending == expired:  # both or neither: a stale PENDING is in, or out, either way
        return among(status, sorted(statuses))
    stored = among(status, sorted(statuses - {KycStatus.PENDING}))
    if pending:
        return or_(stored, and_(status == KycStatus.PENDING, started > stale_before))
    return or_(stored, and_(status == KycStatus.PENDING, started <= stale_before))
