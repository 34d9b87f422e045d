"""Customer events told two of three ways: the feed (`Query.customerEvents`) and the live
subscription (`Subscription.customerEvents`); webhooks (schema/webhooks.py) send the same
events with `webhook_body`."""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Any, TypeVar

import strawberry
from graphql import GraphQLError

from db import events, models
from db.engine import Database
from db.faults import fault_of
from db.feed import FeedSignal, TooManyForHolder, TooManySubscriptions
from db.pages import PageError
from schema import fields, ids
from schema.context import Info
from schema.customer_list import DEFAULT_PAGE, PageInfo, first_page_size, page_info
from schema.errors import bad_input
from schema.loaders import Loaders
from schema.scalars import serialize
from schema.translate import changed_fields, mirror, mirrors
from schema.types import Customer, KycVerification, KycVerificationStatus, Node

# How many events a subscription reads from the table at a time.
BATCH = 100
# A subscription looks at the table at least this often even without a wake-up.
IDLE_SECONDS = 5.0
# While the database is unavailable, a subscription tries its read again after this long at
# first, then twice as long each time, up to the longest pause.
FIRST_RETRY_SECONDS = 0.1
LONGEST_RETRY_SECONDS = 2.0

T = TypeVar("T")


@mirrors(models.EventType)
@strawberry.enum(description="What happened to a customer.")
class CustomerEventType(enum.Enum):
    CUSTOMER_CREATED = strawberry.enum_value(
        "CUSTOMER_CREATED", description="createCustomer made the customer."
    )
    CUSTOMER_UPDATED = strawberry.enum_value(
        "CUSTOMER_UPDATED", description="updateCustomer changed values; see changedFields."
    )
    CUSTOMER_DELETED = strawberry.enum_value(
        "CUSTOMER_DELETED", description="deleteCustomer removed the customer."
    )
    KYC_VERIFICATION_STARTED = strawberry.enum_value(
        "KYC_VERIFICATION_STARTED", description="startKycVerification made a new verification."
    )
    KYC_VERIFICATION_STATUS_CHANGED = strawberry.enum_value(
        "KYC_VERIFICATION_STATUS_CHANGED",
        description="A provider's result, an operator's review, or the expiry moved a status.",
    )


@strawberry.input(description="Which events to read; every condition given must hold.")
class CustomerEventFilter:
    types: list[CustomerEventType] | None = strawberry.field(
        default=None, description="Only events of these types (null or empty: every type)."
    )
    external_customer_id: str | None = strawberry.field(
        default=None, description="Only the events of this customer (your system's id, exact)."
    )

    def to_db(self) -> events.EventFilter:
        types = None if self.types is None else [mirror(t, models.EventType) for t in self.types]
        return events.EventFilter(types, self.external_customer_id)


async def _customer_now(root: CustomerEvent, info: Info) -> Customer | None:
    """The event's customer as it is now: a read of its own, which the compiled path leaves
    to this resolver (tests/test_compiled_coverage.py's FALLS_BACK)."""
    loaders = fields.loaders_for(root, info)
    return Customer.from_optional(
        await loaders.customer_by_external_id.load(root.source.external_customer_id)
    )


# Each field but `customer` is made from its definition in schema/fields.py, as the compiled
# path's builder of the feed is.
@fields.shown_as("CustomerEvent")
@strawberry.type(
    description=(
        "Something that happened to a customer, told without personal data: the fields that "
        "changed are named, never their values (follow `customer` for those)."
    )
)
class CustomerEvent(Node):
    id: strawberry.ID = fields.field(
        "CustomerEvent.id",
        description="The object's global id, for `Query.node`; opaque and stable.",
    )
    cursor: str = fields.field(
        "CustomerEvent.cursor",
        description="The event's place in the feed: pass it as `after` to the feed or the "
        "subscription to resume right after it.",
    )
    type: CustomerEventType = fields.field("CustomerEvent.type", description="What happened.")
    external_customer_id: str = fields.field(
        "CustomerEvent.externalCustomerId", description="Whose it is: your system's id."
    )
    status: KycVerificationStatus | None = fields.field(
        "CustomerEvent.status",
        description="KYC events: the verification's status as this change left it.",
    )
    previous_status: KycVerificationStatus | None = fields.field(
        "CustomerEvent.previousStatus",
        description="KYC_VERIFICATION_STATUS_CHANGED: the status before the change.",
    )
    changed_fields: list[str] = fields.field(
        "CustomerEvent.changedFields",
        description="CUSTOMER_UPDATED: the names of the CustomerData fields that changed, in "
        "the contract's order; never their values. Empty for other types.",
    )
    actor: str = fields.field(
        "CustomerEvent.actor",
        description="Who made the change, its kind first: `key:<the API key's name>`, "
        "`token:<the token's issuer>#<its subject>`, or `system:expiry-sweep` for the expiry of "
        "a verification. Events recorded before this form name the key, the subject, or "
        '"system" alone.',
    )
    occurred_at: datetime = fields.field(
        "CustomerEvent.occurredAt",
        description="When it happened; for an expiry, the moment the verification expired.",
    )
    customer: Customer | None = strawberry.field(
        resolver=_customer_now,
        description="The customer as it is now; null once it is deleted.",
    )
    verification: KycVerification | None = fields.field(
        "CustomerEvent.verification",
        description="KYC events: the verification as it is now (an object with an id is the "
        "same everywhere, so a client's cache stays true); null for other events, and once "
        "its customer is deleted. `status` has what this change set.",
    )
    source: strawberry.Private[models.CustomerEvent]
    # A subscription's own loaders for each event (fields.loaders_for); None: the request's.
    loaders: strawberry.Private[Loaders | None] = None

    @classmethod
    def from_row(cls, row: models.CustomerEvent, loaders: Loaders | None = None) -> CustomerEvent:
        return cls(source=row, loaders=loaders)


def verification_of(row: models.CustomerEvent) -> models.KycVerification | None:
    """The verification as a KYC event recorded it (not stored: a snapshot)."""
    created = row.verification_created_at
    if row.verification_id is None or row.verification_type is None or row.status is None:
        return None
    if created is None:
        return None
    return models.KycVerification(
        id=row.verification_id,
        customer_id=0,  # unknown to the event, and never shown
        type=row.verification_type,
        status=row.status,
        created_at=created,
        updated_at=row.occurred_at,
    )


def webhook_body(row: models.CustomerEvent, cursor_secret: bytes) -> bytes:
    """The JSON body of a webhook delivery of this event (Standard Webhooks' type,
    timestamp and data); like the event, it holds no personal data."""
    snapshot = verification_of(row)
    verification = None
    if snapshot is not None and snapshot.id is not None:
        verification = {
            "id": ids.encode("KycVerification", snapshot.id),
            "type": snapshot.type.name,
            "status": snapshot.status.name,
            "createdAt": serialize(snapshot.created_at),
            "updatedAt": serialize(snapshot.updated_at),
        }
    body: dict[str, Any] = {
        "type": mirror(row.type, CustomerEventType).value,
        "timestamp": serialize(row.occurred_at),
        "data": {
            "eventId": ids.encode("CustomerEvent", row.id),
            "cursor": events.cursor_of(row, cursor_secret),
            "externalCustomerId": row.external_customer_id,
            "verification": verification,
            "previousStatus": None if row.previous_status is None else row.previous_status.name,
            "changedFields": changed_fields(row.changed_fields),
            "actor": row.actor,
        },
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@strawberry.type(description="An event in the feed, with its place in it.")
class CustomerEventEdge:
    cursor: str = strawberry.field(description="Pass it as `after` to read on from here.")
    node: CustomerEvent = strawberry.field(description="The event.")


@strawberry.type(description="A page of the feed, oldest first.")
class CustomerEventConnection:
    edges: list[CustomerEventEdge] = strawberry.field(description="The page's events.")
    nodes: list[CustomerEvent] = strawberry.field(description="The page's events.")
    page_info: PageInfo = strawberry.field(
        description="endCursor is where to resume, also when the page is empty."
    )


_AFTER = "Start after this cursor (an event's or a page's endCursor)."
_FILTER = "Which events."


@strawberry.type
class EventQuery:
    @strawberry.field(
        description=(
            "The feed of every change to customers, oldest first, in the one order that the "
            "subscription and webhooks tell too. A page holds `first` events (default "
            f"{DEFAULT_PAGE}, at most 100). A cursor older than the server keeps events "
            "(EVENT_RETENTION_DAYS) is a BAD_USER_INPUT error: resync."
        )
    )
    async def customer_events(
        self,
        info: Info,
        first: Annotated[int | None, strawberry.argument(description="Page size.")] = None,
        after: Annotated[str | None, strawberry.argument(description=_AFTER)] = None,
        filter: Annotated[
            CustomerEventFilter | None, strawberry.argument(description=_FILTER)
        ] = None,
    ) -> CustomerEventConnection:
        size = first_page_size(first)
        where = (filter or CustomerEventFilter()).to_db()
        try:
            async with info.context.db.read() as session:
                page = await events.list_events(
                    session,
                    where,
                    first=size,
                    after=after,
                    secret=info.context.cursor_secret,
                )
        except PageError as error:
            raise bad_input(str(error)) from None
        nodes = [CustomerEvent.from_row(row) for row in page.rows]
        return CustomerEventConnection(
            edges=[
                CustomerEventEdge(cursor=cursor, node=node)
                for cursor, node in zip(page.cursors, nodes, strict=True)
            ],
            nodes=nodes,
            page_info=page_info(page, empty_end=after),
        )


@strawberry.type
class EventSubscription:
    @strawberry.subscription(
        description=(
            "Events as they commit, from every server process, in feed order, with no gap and "
            "no duplicate. With `after`, the events after that cursor come first, then live "
            "ones: a client that reconnects with the last cursor it saw misses nothing. "
            "Without it, only events after the moment of subscribing. While the database "
            "is unavailable it waits (SUBSCRIPTION_OUTAGE_SECONDS) and goes on where it was; "
            "past that, over WebSocket, the socket is closed with 1013 (try again later): "
            "reconnect with the last cursor."
        )
    )
    async def customer_events(
        self,
        info: Info,
        after: Annotated[str | None, strawberry.argument(description=_AFTER)] = None,
        filter: Annotated[
            CustomerEventFilter | None, strawberry.argument(description=_FILTER)
        ] = None,
    ) -> AsyncGenerator[CustomerEvent, None]:
        context = info.context
        signal = context.feed
        if signal is None:
            raise GraphQLError("This server does not serve subscriptions.")
        where = (filter or CustomerEventFilter()).to_db()
        holder = context.principal
        _acquire(signal, holder)
        outage = signal.outage_seconds
        db = context.db
        try:
            position = await riding_out(outage, partial(_start, db, after, context.cursor_secret))
            while True:
                seen = signal.latest
                rows = await riding_out(outage, partial(_read_after, db, position, where))
                for row in rows:
                    position = row.id
                    # Fresh loaders for each event: `customer` shows the customer as it is now.
                    yield CustomerEvent.from_row(row, Loaders(db))
                if len(rows) < BATCH:
                    await signal.wait_beyond(max(seen, position), IDLE_SECONDS)
        finally:
            signal.release(holder)


def _acquire(signal: FeedSignal, holder: object) -> None:
    """Count the subscription against the process's and its principal's bounds."""
    try:
        signal.acquire(holder)
    except TooManyForHolder:
        raise GraphQLError(
            f"Your API key or token holds {signal.max_per_holder} subscriptions on this server "
            "already (MAX_SUBSCRIPTIONS_PER_PRINCIPAL); end one, or retry later.",
            extensions={"code": "TOO_MANY_SUBSCRIPTIONS"},
        ) from None
    except TooManySubscriptions:
        raise GraphQLError(
            f"This server serves {signal.max_subscriptions} subscriptions already "
            "(MAX_SUBSCRIPTIONS); retry later or on another server.",
            extensions={"code": "TOO_MANY_SUBSCRIPTIONS"},
        ) from None


async def riding_out(outage_seconds: float, read: Callable[[], Awaitable[T]]) -> T:
    """`read()`, tried again while the database is unavailable, for up to `outage_seconds`
    (pausing longer each time); then its failure. Other failures are not retried."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + outage_seconds
    pause = FIRST_RETRY_SECONDS
    while True:
        try:
            return await read()
        except Exception as error:
            if fault_of(error) is None or loop.time() + pause > give_up:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_RETRY_SECONDS)


async def _read_after(
    db: Database, position: int, where: events.EventFilter
) -> list[models.CustomerEvent]:
    async with db.read() as session:
        return list(await events.events_after(session, position, where, BATCH))


async def _start(db: Database, after: str | None, secret: bytes) -> int:
    """Where a subscription starts: after the cursor, or where the feed ends now."""
    try:
        async with db.read() as session:
            if after is None:
                return await events.head(session)
            return await events.position_of(session, after, secret)
    except PageError as error:
        raise bad_input(str(error)) from None
