"""The customer event feed: one event for each committed change, in one order for every reader.

Writes append events in the same transaction as the change they tell (a transactional
outbox): the change and its event commit together or not at all.

Order. Every event gets its number from the single row of `event_counter`: the writing
transaction runs `UPDATE event_counter SET last = last + n RETURNING last` as its last
statement before it commits. The update takes the row's lock, held until that transaction
commits or rolls back, so the next writer waits for it and then reads the committed value.
Numbers are therefore handed out in commit order, and a reader that has seen event n (in any
process, on any server) finds every event below n already committed: nothing can appear
behind a cursor once it was handed out. A sequence would not do: a transaction that took a
smaller number could commit after one that took a larger number. The price is that writers
queue for the counter between their last statement and their commit; on SQLite writers are
serialised anyway (BEGIN IMMEDIATE). On PostgreSQL the counter's statement also writes the
first event and sends a NOTIFY, which is delivered at commit, to wake the readers of every
server process (`db.feed`).

No personal data: an event names the customer by externalCustomerId and the fields that
changed, never their values.

Actors. An event names who made its change, its kind first so that no name can pass for
another kind's (a token whose `sub` is "system", or a key named "admin", stays what it is):
`key:<the API key's name>`, `token:<the token's issuer>#<its sub>` (a subject is unique only
within its issuer), `system:expiry-sweep` for what the server does by itself. `actor` below
builds every one of them. Events written before these forms keep the actor they were written
with (a key's name, a token's subject, "system").
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Dialect,
    Select,
    String,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from db.driver import DriverStatement, PerDialect, WriteDriver, among, settable, setting
from db.engine import Database
from db.models import (
    CustomerEvent,
    EventCounter,
    EventType,
    KycStatus,
    KycVerification,
)
from db.pages import Direction, Ordering, Page, PageError, decode_cursor, encode_cursor, fetch_page

# The longest actor an event can hold (its column's length).
ACTOR_CHARACTERS = 255


class ActorKind(enum.StrEnum):
    KEY = "key"  # an API key, by its name
    TOKEN = "token"  # an identity provider's token, by its issuer and subject
    SYSTEM = "system"  # the server itself, by the job


def actor(kind: ActorKind, name: str, *, issuer: str = "") -> str:
    """The actor of an event: `kind:name`, and a token's `token:issuer#sub`."""
    if kind is ActorKind.TOKEN:
        return f"{kind}:{issuer}#{name}"
    return f"{kind}:{name}"


EXPIRY_SWEEP = actor(ActorKind.SYSTEM, "expiry-sweep")  # it expires verifications left PENDING
CHANNEL = "customer_events"  # PostgreSQL's NOTIFY channel: the payload is the newest number
_FEED_KEY: tuple[Any, ...] = (col(CustomerEvent.id),)
FEED = Ordering("EVENTS", _FEED_KEY, Direction.ASC)
_COUNTER = 1  # the id of the counter's single row


@dataclass(frozen=True)
class NewEvent:
    """An event to record: what happened to whom, by whom, and when."""

    type: EventType
    external_customer_id: str
    actor: str
    occurred_at: datetime
    changed_columns: Sequence[str] = ()  # CUSTOMER_UPDATED: the columns that changed
    verification: KycVerification | None = None  # KYC events: as the change left it
    previous_status: KycStatus | None = None  # KYC_VERIFICATION_STATUS_CHANGED


@dataclass(frozen=True)
class EventFilter:
    """Which events to read; None (or an empty list of types) means any."""

    types: Sequence[EventType] | None = None
    external_customer_id: str | None = None


# Told of every event as it is written, with its type. The server counts them in its metrics
# (db/ stays free of any metrics library), as db.kyc's transition observers are.
EventObserver = Callable[[EventType], None]
event_observers: list[EventObserver] = []


# The trace of the write in hand (its W3C traceparent), stored with its events so that their
# webhook deliveries continue it; web/tracing.py sets it (db/ knows no tracer). None: no trace.
def _untraced() -> str | None:
    return None


current_trace: Callable[[], str | None] = _untraced


async def record(session: AsyncSession, events: Sequence[NewEvent], now: datetime) -> None:
    """`append` for a write made through the ORM: what the session still holds is written
    first, since the counter must be the transaction's last write."""
    if not events:
        return
    await session.flush()
    await append(await WriteDriver.of(session), events, now)


async def append(driver: WriteDriver, events: Sequence[NewEvent], now: datetime) -> None:
    """Append events to the feed in this transaction. Call it last before the commit: from
    here until the commit, other writers wait for the counter (that is the order guarantee)."""
    if not events:
        return
    trace = current_trace()
    rows = [_row(event, now, trace) for event in events]
    # The counter's statement numbers them all and may write the first itself (`_next`).
    numbered = (await driver.run(_NEXT, {"count": len(rows), **setting(rows[0])}))[0]
    first = numbered.last - len(rows) + 1
    for number, row in enumerate(rows[numbered.carried :], start=first + numbered.carried):
        await driver.run(_INSERT, {"set_id": number, **setting(row)})
    for event in events:
        for observe in event_observers:
            observe(event.type)


def _row(event: NewEvent, now: datetime, trace: str | None) -> dict[str, Any]:
    """An event's columns but its number."""
    verification = event.verification
    return {
        "type": event.type,
        "external_customer_id": event.external_customer_id,
        "changed_fields": " ".join(event.changed_columns),
        "verification_id": verification.id if verification else None,
        "verification_type": verification.type if verification else None,
        "status": verification.status if verification else None,
        "previous_status": event.previous_status,
        "verification_created_at": verification.created_at if verification else None,
        "actor": event.actor,
        "occurred_at": event.occurred_at,
        "recorded_at": now,
        "traceparent": trace,
    }


# append()'s statements, run on the transaction's driver connection (db/driver.py).
_COUNTER_ROW = EventCounter.__table__.c  # type: ignore[attr-defined]
_EVENTS = CustomerEvent.__table__  # type: ignore[attr-defined]


def _event_values(number: ColumnElement[int]) -> dict[str, Any]:
    """An INSERT's values: the event numbered `number`, the rest bound as `setting` names them."""
    return {"id": number, **settable(c for c in _EVENTS.c if c.key != "id")}


def _next(dialect: str) -> Any:
    # The counter moves on by the events' count, and says how many of them the statement
    # wrote itself (`carried`). On PostgreSQL it writes the first (every customer write's
    # only one) and notifies the listeners, delivered at the commit so that none is woken
    # before the events can be read: one round trip, where the counter, the insert and a
    # NOTIFY were three. SQLite's statements cannot write from a WITH, and cost no round
    # trip: there it moves the counter only.
    count = bindparam("count", type_=_COUNTER_ROW.last.type)
    counted = (
        update(EventCounter.__table__)  # type: ignore[attr-defined]
        .where(_COUNTER_ROW.id == _COUNTER)
        .values(last=_COUNTER_ROW.last + count)
        .returning(_COUNTER_ROW.last)
    )
    if dialect != "postgresql":
        return counted.returning(literal_column("0").label("carried"))
    counter = counted.cte("counter")
    first_number = sa_select(counter.c.last - count + 1).scalar_subquery()
    first = insert(_EVENTS).values(_event_values(first_number)).cte("first_event")
    notified = func.pg_notify(literal(CHANNEL, String()), cast(counter.c.last, String()))
    return sa_select(
        counter.c.last, notified.label("notified"), literal_column("1").label("carried")
    ).add_cte(first)


_NEXT = PerDialect(_next)
_INSERT = PerDialect(
    lambda _dialect: insert(_EVENTS).values(
        _event_values(bindparam("set_id", type_=_EVENTS.c.id.type))
    )
)


def cursor_of(event: CustomerEvent, secret: bytes) -> str:
    """The opaque cursor of an event (signed with the server's cursor secret): pass it as
    `after` to resume behind it."""
    return encode_cursor(FEED, (event.id,), secret)


async def position_of(session: AsyncSession, cursor: str, secret: bytes) -> int:
    """The event number inside a cursor; PageError for a cursor that is not one, or one
    older than what the feed still keeps (the client must resync, not skip events)."""
    (position,) = decode_cursor(FEED, cursor, secret)
    if position < await pruned_through(session):
        raise PageError(
            "The cursor is older than the events the server keeps (EVENT_RETENTION_DAYS): "
            "events after it were pruned. Resync: read the customers you need, then follow "
            "the feed from its end (customerEvents without after)."
        )
    return int(position)


async def head(session: AsyncSession) -> int:
    """The newest event's number (0 before the first)."""
    return int((await session.execute(head_query())).scalar_one())


def head_query() -> Select[Any]:
    """The statement that reads `head`."""
    return sa_select(_COUNTER_ROW.last).where(_COUNTER_ROW.id == _COUNTER)


# `head` for what reads it over and over outside a session (SQLite's feed poll, twenty
# times a second), compiled once: a session and an ORM statement cost about 0.3 ms a read.
_HEAD = PerDialect(lambda _dialect: head_query())


def head_statement(dialect: Dialect) -> DriverStatement:
    """`head`'s statement, compiled for `dialect` (PostgreSQL's listener runs it on its own
    connection)."""
    return _HEAD.on(dialect)


async def read_head(db: Database) -> int:
    """`head`, read on one of the database's reader connections."""
    ((last,),) = await db.fetch(head_statement(db.engine.dialect), {}, point=True)  # by key
    return int(last)


async def pruned_through(session: AsyncSession) -> int:
    """No event at or below this number is kept any more."""
    return int((await session.execute(pruned_through_query())).scalar_one())


def pruned_through_query() -> Select[Any]:
    """The statement that reads `pruned_through`."""
    return sa_select(_COUNTER_ROW.pruned_through).where(_COUNTER_ROW.id == _COUNTER)


def conditions(where: EventFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.types:
        conditions.append(among(_EVENTS.c.type, where.types))
    if where.external_customer_id is not None:
        conditions.append(col(CustomerEvent.external_customer_id) == where.external_customer_id)
    return conditions


async def list_events(
    session: AsyncSession, where: EventFilter, *, first: int, after: str | None, secret: bytes
) -> Page[CustomerEvent]:
    """A page of the feed, oldest first; PageError for a bad or pruned cursor."""
    if after is not None:
        await position_of(session, after, secret)
    query = select(CustomerEvent).where(*conditions(where))
    return await fetch_page(session, query, FEED, first=first, after=after, secret=secret)


async def events_after(
    session: AsyncSession, position: int, where: EventFilter, limit: int
) -> list[CustomerEvent]:
    """Up to `limit` events after `position` that match, oldest first."""
    query = (
        select(CustomerEvent)
        .where(col(CustomerEvent.id) > position, *conditions(where))
        .order_by(col(CustomerEvent.id))
        .limit(limit)
    )
    return list((await session.scalars(query)).all())


async def get_events(session: AsyncSession, ids: Sequence[int]) -> list[CustomerEvent | None]:
    """The events with these numbers, in order, None where there is none (pruned)."""
    rows = await session.scalars(select(CustomerEvent).where(col(CustomerEvent.id).in_(ids)))
    by_id: Mapping[int, CustomerEvent] = {row.id: row for row in rows}
    return [by_id.get(id_) for id_ in ids]


async def prune(session: AsyncSession, before: datetime) -> int:
    """Delete the events recorded before `before`, as one prefix of the feed; returns how many.

    The prefix ends at the newest event recorded before `before`, so the feed never has a
    hole, and `pruned_through` tells readers whose cursor points into it to resync.
    """
    through = (
        await session.execute(
            sa_select(func.max(col(CustomerEvent.id))).where(
                col(CustomerEvent.recorded_at) < before
            )
        )
    ).scalar_one()
    if through is None:
        return 0
    deleted = await session.execute(delete(CustomerEvent).where(col(CustomerEvent.id) <= through))
    await session.execute(
        update(EventCounter)
        .where(col(EventCounter.id) == _COUNTER, col(EventCounter.pruned_through) < through)
        .values(pruned_through=through)
    )
    return int(deleted.rowcount)  # type: ignore[attr-defined]
