"""Reads and writes of customers. Every write runs `db.rules` on the complete record."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from db import events, rules
from db.events import NewEvent
from db.models import Customer, EventType, KycStatus
from db.pages import Direction, Ordering, Page, fetch_page
from db.rules import Code, Environment, Problem


@dataclass
class CustomerOutcome:
    """What a customer write did: the customer it wrote, or the problems that stopped it."""

    customer: Customer | None = None
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


def data_of(customer: Customer) -> dict[str, str | None]:
    """The customer's data fields (`rules.DATA_FIELDS`) and their values."""
    return {name: getattr(customer, name) for name in rules.DATA_FIELDS}


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
    session: AsyncSession,
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
    problems = checked.problems + await _taken(session, external_id, email)
    if problems:
        return CustomerOutcome(problems=rules.in_field_order(problems), warnings=checked.warnings)

    customer = Customer.model_validate(
        {
            "external_customer_id": values["external_customer_id"],
            "created_at": now,
            "updated_at": now,
            **{name: values[name] for name in rules.DATA_FIELDS},
            **search_keys(values),
        }
    )
    written = await _flush(session, customer, checked.warnings, external_id, email)
    if written.customer is not None:
        created = NewEvent(EventType.CUSTOMER_CREATED, customer.external_customer_id, who, now)
        await events.record(session, [created], now)
    return written


async def update_customer(
    session: AsyncSession,
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
    customer = await session.scalar(
        select(Customer)
        .where(col(Customer.external_customer_id) == external_customer_id)
        .with_for_update()
    )
    if customer is None:
        return CustomerOutcome(problems=[not_found(external_customer_id)])
    checked = rules.check_record({**data_of(customer), **patch}, environment)
    email = _accepted(checked.values["email"], checked.problems, "email")
    problems = checked.problems + await _taken(session, None, email, exclude=customer.id)
    if problems:
        return CustomerOutcome(problems=rules.in_field_order(problems), warnings=checked.warnings)

    changed = {
        name: checked.values[name]
        for name in rules.DATA_FIELDS
        if getattr(customer, name) != checked.values[name]
    }
    if not changed:
        return CustomerOutcome(customer=customer, warnings=checked.warnings)
    for column, value in {**changed, **search_keys(checked.values)}.items():
        setattr(customer, column, value)
    customer.updated_at = now
    written = await _flush(session, customer, checked.warnings, None, email, exclude=customer.id)
    if written.customer is not None:
        updated = NewEvent(
            EventType.CUSTOMER_UPDATED, customer.external_customer_id, who, now, list(changed)
        )
        await events.record(session, [updated], now)
    return written


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


async def _flush(
    session: AsyncSession,
    customer: Customer,
    warnings: list[Problem],
    external_id: str | None,
    email: str | None,
    exclude: int | None = None,
) -> CustomerOutcome:
    """Write the row; a unique index that refuses it (a lost race) becomes TAKEN, not an error."""
    try:
        async with session.begin_nested():
            session.add(customer)
            await session.flush()
    except IntegrityError:
        taken = await _taken(session, external_id, email, exclude=exclude)
        if not taken:
            raise
        return CustomerOutcome(problems=taken, warnings=warnings)
    return CustomerOutcome(customer=customer, warnings=warnings)


async def _taken(
    session: AsyncSession,
    external_id: str | None,
    email: str | None,
    exclude: int | None = None,
) -> list[Problem]:
    """TAKEN problems for an id or an e-mail (any case) that another customer already has."""
    conditions: list[ColumnElement[bool]] = []
    if external_id is not None:
        conditions.append(col(Customer.external_customer_id) == external_id)
    if email is not None:
        conditions.append(col(Customer.email_key) == rules.fold(email))
    if not conditions:
        return []
    query = select(col(Customer.external_customer_id), col(Customer.email_key)).where(
        or_(*conditions)
    )
    if exclude is not None:
        query = query.where(col(Customer.id) != exclude)
    rows = (await session.execute(query)).all()
    problems = []
    if external_id is not None and any(row[0] == external_id for row in rows):
        problems.append(
            Problem(
                "external_customer_id",
                Code.TAKEN,
                f"A customer with the id {external_id!r} already exists.",
            )
        )
    if email is not None and any(row[1] == rules.fold(email) for row in rows):
        problems.append(
            Problem(
                "email",
                Code.TAKEN,
                "Another customer already has this e-mail address (compared ignoring case).",
            )
        )
    return problems


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
    query = select(Customer).where(*_conditions(where, now, ttl))
    return await fetch_page(
        session, query, order, first=first, after=after, last=last, before=before,
        secret=cursor_secret,
    )  # fmt: skip


async def count_customers(
    session: AsyncSession, where: CustomerFilter, now: datetime, ttl: timedelta
) -> int:
    """How many customers match."""
    query = sa_select(func.count()).select_from(Customer).where(*_conditions(where, now, ttl))
    return (await session.execute(query)).scalar_one()


def _conditions(where: CustomerFilter, now: datetime, ttl: timedelta) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.external_customer_ids is not None:
        conditions.append(col(Customer.external_customer_id).in_(where.external_customer_ids))
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
    status, started = col(Customer.kyc_status), col(Customer.kyc_started_at)
    pending, expired = KycStatus.PENDING in statuses, KycStatus.EXPIRED in statuses
    if pending == expired:  # both or neither: a stale PENDING is in, or out, either way
        return status.in_(statuses)
    stored = status.in_(statuses - {KycStatus.PENDING})
    if pending:
        return or_(stored, and_(status == KycStatus.PENDING, started > stale_before))
    return or_(stored, and_(status == KycStatus.PENDING, started <= stale_before))
