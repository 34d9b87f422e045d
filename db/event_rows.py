"""The event feed's reads for the compiled path (`Query.customerEvents`), on the driver.

A page of the feed is `events.list_events`'s: the same filter (`events.conditions`), keyset
statement and cursors (db/pages.py), the same refusal of a pruned cursor; each event with
its verification as it is now, when asked for, joined by its primary key in the same
statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select

from db.customer_rows import VERIFICATIONS, Verification
from db.driver import ByShape, PerDialect
from db.engine import Database
from db.events import FEED, EventFilter, conditions, pruned_through_query
from db.models import CustomerEvent
from db.pages import Keyset, Page, page_of, page_shape, page_statement, page_values, walk_order

EVENTS = CustomerEvent.__table__  # type: ignore[attr-defined]
_VERIFICATION_COLUMNS = ("id", "type", "status", "created_at", "updated_at")


@dataclass(frozen=True)
class EventRow:
    """An event's columns (`row.type`, ...) and its verification as it is now, when asked
    for and still there."""

    row: Any
    verification: Verification | None = None


_PRUNED_THROUGH = PerDialect(lambda _dialect: pruned_through_query())
_SHAPES = ByShape()


class EventReads:
    """The compiled path's reads of the feed on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def pruned_through(self) -> int:
        """No event at or below this number is kept any more (`events.pruned_through`)."""
        statement = _PRUNED_THROUGH.on(self.db.engine.dialect)
        ((through,),) = await self.db.fetch(statement, {}, point=True)  # one row by its key
        return int(through)

    async def page(
        self, where: EventFilter, keyset: Keyset, secret: bytes, verifications: bool
    ) -> Page[EventRow]:
        """A page of the feed, oldest first, as `events.list_events` reads it (the caller
        checks a cursor against `pruned_through` first, as it does)."""
        matching = conditions(where)

        def build() -> Select[Any]:
            query = page_statement(select(*EVENTS.c).where(*matching), FEED, keyset)
            return _with_verifications(query, keyset.forward) if verifications else query

        statement, values = _SHAPES.on(
            self.db.engine.dialect,
            (verifications, *page_shape(FEED, keyset)),
            matching,
            page_values(keyset),
            build,
        )
        rows = [
            EventRow(row, _verification(row) if verifications else None)
            for row in await self.db.fetch(statement, values)
        ]
        return page_of(rows, FEED, keyset, secret, key_of=lambda e: FEED.key_of(e.row))


def _with_verifications(page: Select[Any], forward: bool) -> Select[Any]:
    """Each event of `page` with its verification, by the verification's primary key."""
    rows = page.subquery("e")
    v = VERIFICATIONS.c
    labelled = [v[name].label(f"v_{name}") for name in _VERIFICATION_COLUMNS]
    order = walk_order(FEED, forward, [rows.c[str(c.key)] for c in FEED.columns])
    return (
        select(*rows.c, *labelled)
        .select_from(rows.outerjoin(VERIFICATIONS, v.id == rows.c.verification_id))
        .order_by(*order)
    )


def _verification(row: Any) -> Verification | None:
    if row.v_id is None:
        return None
    return Verification(row.v_id, row.v_type, row.v_status, row.v_created_at, row.v_updated_at)
