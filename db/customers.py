"""Reads and writes of customers. Every write runs `db.rules` on the complete record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from db import rules
from db.models import Customer, utc_now
from db.rules import Code, Environment, Problem

# The contract's data field names and the columns that hold them.
COLUMNS: Mapping[str, str] = {
    "email": "email",
    "phone": "phone",
    "firstName": "first_name",
    "lastName": "last_name",
    "street": "street",
    "street2": "street2",
    "state": "state",
    "city": "city",
    "zip": "zip",
    "country": "country",
}
_ID_PATH = ("externalCustomerId",)
_EMAIL_PATH = ("data", "email")


@dataclass
class Written:
    """What a write did: the customer it wrote, or the problems that stopped it."""

    customer: Customer | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def data_of(customer: Customer) -> dict[str, str | None]:
    """The customer's data under the contract's field names."""
    return {name: getattr(customer, column) for name, column in COLUMNS.items()}


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


async def create_customer(
    session: AsyncSession,
    external_customer_id: str | None,
    data: Mapping[str, str | None],
    environment: Environment = Environment.PRODUCTION,
) -> Written:
    """Create a customer, or return every problem with the input and write nothing."""
    checked = rules.check_customer(external_customer_id, data, environment)
    values = checked.values
    external_id = _accepted(values["externalCustomerId"], checked.problems, _ID_PATH)
    email = _accepted(values["email"], checked.problems, _EMAIL_PATH)
    problems = checked.problems + await _taken(session, external_id, email)
    if problems:
        return Written(problems=rules.in_field_order(problems), warnings=checked.warnings)

    now = utc_now()
    customer = Customer.model_validate(
        {
            "external_customer_id": values["externalCustomerId"],
            "email_key": rules.email_key(values["email"] or ""),
            "created_at": now,
            "updated_at": now,
            **{column: values[name] for name, column in COLUMNS.items()},
        }
    )
    return await _flush(session, customer, checked.warnings, external_id, email)


async def update_customer(
    session: AsyncSession,
    external_customer_id: str,
    patch: Mapping[str, str | None],
    environment: Environment = Environment.PRODUCTION,
) -> Written:
    """Apply a patch (absent key: unchanged; None: cleared) to a customer.

    The patch is merged into the stored record and the whole record checked, so a patch can
    never leave a record that create would refuse. `updatedAt` moves only when a value changes.
    """
    customer = await session.scalar(
        select(Customer)
        .where(col(Customer.external_customer_id) == external_customer_id)
        .with_for_update()
    )
    if customer is None:
        return Written(problems=[_not_found(external_customer_id)])
    checked = rules.check_record({**data_of(customer), **patch}, environment)
    email = _accepted(checked.values["email"], checked.problems, _EMAIL_PATH)
    problems = checked.problems + await _taken(session, None, email, exclude=customer.id)
    if problems:
        return Written(problems=rules.in_field_order(problems), warnings=checked.warnings)

    changed = {
        column: checked.values[name]
        for name, column in COLUMNS.items()
        if getattr(customer, column) != checked.values[name]
    }
    if not changed:
        return Written(customer=customer, warnings=checked.warnings)
    for column, value in changed.items():
        setattr(customer, column, value)
    customer.email_key = rules.email_key(customer.email)
    customer.updated_at = utc_now()
    return await _flush(session, customer, checked.warnings, None, email, exclude=customer.id)


async def delete_customer(session: AsyncSession, external_customer_id: str) -> list[Problem]:
    """Delete a customer and its verifications; NOT_FOUND when there is no such customer."""
    result = await session.execute(
        delete(Customer).where(col(Customer.external_customer_id) == external_customer_id)
    )
    return [] if result.rowcount else [_not_found(external_customer_id)]  # type: ignore[attr-defined]


async def _flush(
    session: AsyncSession,
    customer: Customer,
    warnings: list[Problem],
    external_id: str | None,
    email: str | None,
    exclude: int | None = None,
) -> Written:
    """Write the row; a unique index that refuses it (a lost race) becomes TAKEN, not an error."""
    try:
        async with session.begin_nested():
            session.add(customer)
            await session.flush()
    except IntegrityError:
        taken = await _taken(session, external_id, email, exclude=exclude)
        if not taken:
            raise
        return Written(problems=taken, warnings=warnings)
    return Written(customer=customer, warnings=warnings)


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
        conditions.append(col(Customer.email_key) == rules.email_key(email))
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
                _ID_PATH,
                Code.TAKEN,
                f"A customer with the id {external_id!r} already exists.",
            )
        )
    if email is not None and any(row[1] == rules.email_key(email) for row in rows):
        problems.append(
            Problem(
                _EMAIL_PATH,
                Code.TAKEN,
                "Another customer already has this e-mail address (compared ignoring case).",
            )
        )
    return problems


def _accepted(value: str | None, problems: list[Problem], path: tuple[str, ...]) -> str | None:
    """The value if it passed its own rules: uniqueness is checked only for such values."""
    return None if value is None or any(p.field == path for p in problems) else value


def _not_found(external_customer_id: str) -> Problem:
    return Problem(
        _ID_PATH,
        Code.NOT_FOUND,
        f"There is no customer with the id {external_customer_id!r}.",
    )
