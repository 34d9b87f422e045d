"""The customer reads of the compiled path: one statement per request, on the driver.

A customer by the client's id, or a page of the default order (newest first) after an
optional cursor, each with its verifications in the same statement when they are asked for
(a LEFT JOIN, the page as a subquery). The rows are what `customers.get_customer`,
`customers.list_customers` and `kyc.list_verifications` read, in the same order, with the
same keyset statement and cursors (db/pages.py); the compiled path's byte-identity tests hold
the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, func, select

from db.customers import OrderField, ordering
from db.driver import DriverStatement, PerDialect
from db.engine import Database
from db.models import Customer, KycStatus, KycType, KycVerification
from db.pages import Direction, decode_cursor, encode_cursor, seek

CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
VERIFICATIONS = KycVerification.__table__  # type: ignore[attr-defined]
_VERIFICATION_COLUMNS = ("id", "type", "status", "created_at", "updated_at")
# The default order of `Query.customers`: newest first, the id breaking ties.
NEWEST_FIRST = ordering(OrderField.CREATED_AT, Direction.DESC)


class Verification(NamedTuple):
    """A verification's columns, as `kyc.effective_status` and friends read them."""

    id: int
    type: KycType
    status: KycStatus
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CustomerRow:
    """A customer's columns (`row.email`, ...) and, when asked for, its verifications."""

    row: Any
    verifications: list[Verification] = field(default_factory=list)


def _build(kind: str, verifications: bool) -> Select[Any]:
    if kind == "count":
        return select(func.count().label("count")).select_from(CUSTOMERS)
    if kind == "verification":
        v = VERIFICATIONS.c
        columns = [v[name] for name in _VERIFICATION_COLUMNS]
        return select(*columns).where(v.id == bindparam("id", type_=v.id.type))
    if kind in ("external_customer_id", "id"):
        return _lookup(kind, verifications)
    return _page(kind, verifications)


def _per_dialect(kind: str, verifications: bool) -> PerDialect:
    return PerDialect(lambda _dialect: _build(kind, verifications))


# Each statement, compiled once per dialect in the one statement cache (db/driver.py).
_STATEMENTS = {
    (kind, verifications): _per_dialect(kind, verifications)
    for kind in ("count", "verification", "external_customer_id", "id", "page", "after")
    for verifications in (False, True)
}


class CustomerReads:
    """The compiled path's reads on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _statement(self, kind: str, verifications: bool) -> DriverStatement:
        return _STATEMENTS[(kind, verifications)].on(self.db.engine.dialect)

    async def by_external_id(
        self, external_customer_id: str, verifications: bool
    ) -> CustomerRow | None:
        statement = self._statement("external_customer_id", verifications)
        rows = await self.db.fetch(statement, {"external_customer_id": external_customer_id})
        found = _grouped(rows, verifications)
        return found[0] if found else None

    async def by_id(self, customer_id: int, verifications: bool) -> CustomerRow | None:
        statement = self._statement("id", verifications)
        found = _grouped(await self.db.fetch(statement, {"id": customer_id}), verifications)
        return found[0] if found else None

    async def verification(self, verification_id: int) -> Verification | None:
        rows = await self.db.fetch(self._statement("verification", False), {"id": verification_id})
        return Verification(*rows[0]) if rows else None

    async def newest_first(
        self, first: int, after: tuple[Any, ...] | None, verifications: bool
    ) -> tuple[list[CustomerRow], bool]:
        """Up to `first` customers after the sort key `after` (None: from the start), and
        whether more follow."""
        values: dict[str, Any] = {"size": first + 1}
        if after is not None:
            values["after_created_at"], values["after_id"] = after
        statement = self._statement("after" if after is not None else "page", verifications)
        found = _grouped(await self.db.fetch(statement, values), verifications)
        return found[:first], len(found) > first

    async def count(self) -> int:
        """How many customers there are (what an unfiltered `totalCount` counts)."""
        statement = self._statement("count", False)
        (row,) = await self.db.fetch(statement, {})
        return int(row[0])


def after_key(cursor: str, secret: bytes) -> tuple[Any, ...]:
    """The sort key in a cursor of the default order; PageError when it is not one."""
    return decode_cursor(NEWEST_FIRST, cursor, secret)


def cursor_of(customer: Any, secret: bytes) -> str:
    """The cursor of a customer in the default order, as `pages.fetch_page` makes it."""
    return encode_cursor(NEWEST_FIRST, (customer.created_at, customer.id), secret)


def _with_verifications(customers: Any, order: Sequence[Any]) -> Select[Any]:
    """`customers` (a table or subquery) LEFT JOIN each one's verifications, oldest first."""
    v = VERIFICATIONS.c
    labelled = [v[name].label(f"v_{name}") for name in _VERIFICATION_COLUMNS]
    return (
        select(*customers.c, *labelled)
        .select_from(customers.outerjoin(VERIFICATIONS, v.customer_id == customers.c.id))
        .order_by(*order, v.id)
    )


def _lookup(column: str, verifications: bool) -> Select[Any]:
    """A customer by a unique column, which also names the bound parameter."""
    c = CUSTOMERS.c
    condition = c[column] == bindparam(column, type_=c[column].type)
    if not verifications:
        return select(*c).where(condition)
    return _with_verifications(CUSTOMERS, ()).where(condition)


def _page(kind: str, verifications: bool) -> Select[Any]:
    """A page of the default order, after the sort key bound as after_created_at, after_id
    when `kind` is "after": db/pages.py's keyset statement, with bound parameters."""
    c = CUSTOMERS.c
    after = None
    if kind == "after":
        after = [
            bindparam("after_created_at", type_=c.created_at.type),
            bindparam("after_id", type_=c.id.type),
        ]
    page = seek(select(*c), NEWEST_FIRST, after=after, limit=bindparam("size"))
    if not verifications:
        return page
    rows = page.subquery("c")
    order = [rows.c[str(column.key)].desc() for column in NEWEST_FIRST.columns]
    return _with_verifications(rows, order)


def _grouped(rows: list[Any], verifications: bool) -> list[CustomerRow]:
    """The customers of the rows in order, each with the verifications joined to it."""
    if not verifications:
        return [CustomerRow(row) for row in rows]
    found: list[CustomerRow] = []
    for row in rows:
        if not found or found[-1].row.id != row.id:
            found.append(CustomerRow(row))
        if row.v_id is not None:
            found[-1].verifications.append(
                Verification(row.v_id, row.v_type, row.v_status, row.v_created_at, row.v_updated_at)
            )
    return found
