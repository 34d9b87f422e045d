"""The customer reads of the compiled path: one statement per request, on the driver.

A customer by the client's id, or a page of customers (any filter, any order, either way
from a cursor), each with its verifications in the same statement when they are asked for:
the page as a subquery, each of its customers' verifications read by the index on their
customer (`ix_kyc_verification_customer`), for that page's customers only (PostgreSQL: a
LATERAL join, else its planner may hash the whole table; SQLite looks each up by index).
The rows are what `customers.get_customer`, `customers.list_customers` and
`kyc.list_verifications` read, in the same order, with the same filter, keyset statement and
cursors (`customers.conditions`, db/pages.py); the compiled path's byte-identity tests hold
the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, bindparam, select, true

from db.customers import count_query_of
from db.driver import ByShape, DriverStatement, PerDialect
from db.engine import Database
from db.models import Customer, KycStatus, KycType, KycVerification
from db.pages import (
    Keyset,
    Ordering,
    Page,
    page_of,
    page_shape,
    page_statement,
    page_values,
    walk_order,
)

CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
VERIFICATIONS = KycVerification.__table__  # type: ignore[attr-defined]
_VERIFICATION_COLUMNS = ("id", "type", "status", "created_at", "updated_at")


class Verification(NamedTuple):
    """A verification's columns, as `kyc.effective_status` and friends read them."""

    id: int
    type: KycType
    status: KycStatus
    created_at: datetime
    updated_at: datetime


_WIDTH = len(CUSTOMERS.c)  # a joined row's verification columns come after the customer's
_new_tuple = tuple.__new__  # a named tuple from a row's values, without its Python constructor


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made
# CustomerRow half the cost of grouping a page, one per customer. (Never hashable either
# way: its verifications are a list.)
@dataclass(slots=True)
class CustomerRow:
    """The compiled path's one form of a customer read: its columns by name (`row.email`,
    ...: the read's own row, whose labels are the columns' names) and, when asked for, its
    verifications. (A write's payload is built from the model the write body returns.)"""

    row: Any
    verifications: list[Verification] = field(default_factory=list)


def _build(kind: str, verifications: bool) -> Select[Any]:
    if kind == "verification":
        v = VERIFICATIONS.c
        columns = [v[name] for name in _VERIFICATION_COLUMNS]
        return select(*columns).where(v.id == bindparam("id", type_=v.id.type))
    return _lookup(kind, verifications)


def _per_dialect(kind: str, verifications: bool) -> PerDialect:
    return PerDialect(lambda _dialect: _build(kind, verifications))


# Each statement, compiled once per dialect in the one statement cache (db/driver.py).
_STATEMENTS = {
    (kind, verifications): _per_dialect(kind, verifications)
    for kind in ("verification", "external_customer_id", "id")
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
        values = {"external_customer_id": external_customer_id}
        rows = await self.db.fetch(statement, values, point=True)
        found = _grouped(rows, verifications)
        return found[0] if found else None

    async def by_id(self, customer_id: int, verifications: bool) -> CustomerRow | None:
        statement = self._statement("id", verifications)
        rows = await self.db.fetch(statement, {"id": customer_id}, point=True)
        found = _grouped(rows, verifications)
        return found[0] if found else None

    async def verification(self, verification_id: int) -> Verification | None:
        statement = self._statement("verification", False)
        rows = await self.db.fetch(statement, {"id": verification_id}, point=True)
        return Verification(*rows[0]) if rows else None

    async def page(
        self,
        conditions: Sequence[ColumnElement[bool]],
        ordering: Ordering,
        keyset: Keyset,
        verifications: bool,
        secret: bytes,
        cursors: bool,
    ) -> Page[CustomerRow]:
        """The page of the customers that meet `conditions` (`customers.conditions`), as
        `pages.fetch_page` reads it: the same statement, rows and cursors (made only when
        `cursors`)."""
        dialect = self.db.engine.dialect
        statement, values = _SHAPES.on(
            dialect,
            ("page", verifications, *page_shape(ordering, keyset)),
            conditions,
            page_values(keyset),
            lambda: page_query(conditions, ordering, keyset, verifications, dialect.name),
        )
        rows = _grouped(await self.db.fetch(statement, values), verifications)
        return page_of(
            rows, ordering, keyset, secret, key_of=lambda c: ordering.key_of(c.row), cursors=cursors
        )

    async def count(self, conditions: Sequence[ColumnElement[bool]] = ()) -> int:
        """How many customers meet `conditions` (what `totalCount` counts)."""
        statement, values = _SHAPES.on(
            self.db.engine.dialect, ("count",), conditions, {}, lambda: count_query_of(conditions)
        )
        (row,) = await self.db.fetch(statement, values)
        return int(row[0])


def page_query(
    conditions: Sequence[ColumnElement[bool]],
    ordering: Ordering,
    keyset: Keyset,
    verifications: bool,
    dialect: str,
) -> Select[Any]:
    """The statement of a page of customers, with their verifications when asked for."""
    query = page_statement(select(*CUSTOMERS.c).where(*conditions), ordering, keyset)
    if verifications:
        query = _page_with_verifications(query, ordering, keyset.forward, dialect)
    return query


# The pages' statements, by shape: a filter's and a cursor's values differ per request.
_SHAPES = ByShape()


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


def _page_with_verifications(
    page: Select[Any], ordering: Ordering, forward: bool, dialect: str
) -> Select[Any]:
    """`page` (a keyset page statement) as a subquery, each of its customers with its
    verifications, oldest first, looked up by the index on their customer: on PostgreSQL a
    LATERAL join (a plain join lets the planner hash every verification in the table)."""
    rows = page.subquery("c")
    v = VERIFICATIONS.c
    order = [*walk_order(ordering, forward, [rows.c[str(c.key)] for c in ordering.columns])]
    if dialect != "postgresql":
        return _with_verifications(rows, order)
    # OFFSET 0 keeps PostgreSQL from pulling the LATERAL subquery up into a plain join
    # (which it would hash): the subquery stays a look-up per customer of the page.
    own = (
        select(*(v[name] for name in _VERIFICATION_COLUMNS))
        .where(v.customer_id == rows.c.id)
        .offset(0)
        .lateral("v")
    )
    labelled = [own.c[name].label(f"v_{name}") for name in _VERIFICATION_COLUMNS]
    return (
        select(*rows.c, *labelled)
        .select_from(rows.outerjoin(own, true()))
        .order_by(*order, own.c.id)
    )


def _grouped(rows: list[Any], verifications: bool) -> list[CustomerRow]:
    """The customers of the rows in order, each with the verifications joined to it.

    Each customer's `row` is the read's own row (a named tuple whose first values are the
    customer's columns, by the same names; a joined row's verification columns follow
    them), not a copy of its values: a copy cost as much again as reading the row."""
    if not verifications:
        return [CustomerRow(row) for row in rows]
    found: list[CustomerRow] = []
    for row in rows:
        if not found or found[-1].row.id != row.id:
            found.append(CustomerRow(row))
        if row.v_id is not None:
            found[-1].verifications.append(_new_tuple(Verification, row[_WIDTH:]))
    return found
