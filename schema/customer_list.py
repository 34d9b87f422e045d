"""`Query.customers`: a Relay connection over customers, filtered and ordered, seek-paginated."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import strawberry

from db import customers, models
from db.pages import Direction, Ordering, Page, PageError
from schema import fields
from schema.context import Info
from schema.errors import bad_input
from schema.translate import mirror, mirrors
from schema.types import Customer, KycVerificationStatus

DEFAULT_PAGE = 20  # also what the cost limiter assumes when a query gives no page size
MAX_PAGE = 100
MAX_IDS = 100


@mirrors(customers.OrderField)
@strawberry.enum(description="What a list of customers can be sorted by.")
class CustomerOrderField(enum.Enum):
    CREATED_AT = strawberry.enum_value("CREATED_AT", description="When the customer was created.")
    UPDATED_AT = strawberry.enum_value("UPDATED_AT", description="When its data last changed.")
    EXTERNAL_CUSTOMER_ID = strawberry.enum_value(
        "EXTERNAL_CUSTOMER_ID", description="Your system's id, by code point (case-sensitive)."
    )
    EMAIL = strawberry.enum_value("EMAIL", description="The e-mail address, ignoring case.")


@mirrors(Direction)
@strawberry.enum(description="Which way to sort.")
class OrderDirection(enum.Enum):
    ASC = strawberry.enum_value("ASC", description="Smallest or oldest first.")
    DESC = strawberry.enum_value("DESC", description="Largest or newest first.")


@strawberry.input(description="How to sort a list of customers. Rows that tie keep a stable order.")
class CustomerOrder:
    field: CustomerOrderField = strawberry.field(
        default=CustomerOrderField.CREATED_AT, description="What to sort by."
    )
    direction: OrderDirection = strawberry.field(
        default=OrderDirection.DESC, description="Which way to sort."
    )


@strawberry.input(description="Which customers to list; every condition given must hold.")
class CustomerFilter:
    external_customer_ids: list[str] | None = strawberry.field(
        default=None, description=f"Only these ids of your system (at most {MAX_IDS})."
    )
    email: str | None = strawberry.field(
        default=None, description="Exactly this e-mail address, ignoring case."
    )
    search: str | None = strawberry.field(
        default=None,
        description=(
            "A prefix, ignoring case, of the e-mail, first name, last name or externalCustomerId."
        ),
    )
    country: str | None = strawberry.field(
        default=None, description="ISO 3166-1 alpha-2 country code, any case."
    )
    kyc_status: list[KycVerificationStatus] | None = strawberry.field(
        default=None,
        description="The status of the newest verification is one of these "
        "(`[UNDER_REVIEW]` is the review queue).",
    )
    has_kyc_verification: bool | None = strawberry.field(
        default=None, description="Whether the customer has any verification at all."
    )
    created_after: datetime | None = strawberry.field(
        default=None, description="Created strictly after this instant."
    )
    created_before: datetime | None = strawberry.field(
        default=None, description="Created strictly before this instant."
    )

    def to_db(self) -> customers.CustomerFilter:
        if self.external_customer_ids is not None and len(self.external_customer_ids) > MAX_IDS:
            raise bad_input(f"filter.externalCustomerIds takes at most {MAX_IDS} ids.")
        return customers.CustomerFilter(
            external_customer_ids=self.external_customer_ids,
            email=self.email,
            search=self.search,
            country=self.country,
            kyc_status=None
            if self.kyc_status is None
            else [mirror(status, models.KycStatus) for status in self.kyc_status],
            has_kyc_verification=self.has_kyc_verification,
            created_after=self.created_after,
            created_before=self.created_before,
        )


@fields.shown_as("PageInfo")
@strawberry.type(description="Where a page lies in the whole list.")
class PageInfo:
    has_next_page: bool = fields.field(
        "PageInfo.hasNextPage", description="Whether more rows follow this page."
    )
    has_previous_page: bool = fields.field(
        "PageInfo.hasPreviousPage",
        description=(
            "Whether rows come before this page. Walking forward from a cursor, this is true "
            "without looking (rows were before the cursor); walking backward it is exact."
        ),
    )
    start_cursor: str | None = fields.field(
        "PageInfo.startCursor", description="The first row's cursor."
    )
    end_cursor: str | None = fields.field(
        "PageInfo.endCursor", description="The last row's cursor."
    )
    source: strawberry.Private[fields.PageEnds]


@strawberry.type(description="A customer in a list, with its place in it.")
class CustomerEdge:
    cursor: str = strawberry.field(
        description="An opaque position: pass it as after or before to get the next pages."
    )
    node: Customer = strawberry.field(description="The customer.")


@strawberry.type(description="A page of customers.")
class CustomerConnection:
    edges: list[CustomerEdge] = strawberry.field(description="The page's customers with cursors.")
    nodes: list[Customer] = strawberry.field(description="The page's customers.")
    page_info: PageInfo = strawberry.field(description="Where the page lies.")
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(
        description=(
            "How many customers match the filter in all. Counted only when asked for: it "
            "costs a scan of the matches, which a page does not."
        )
    )
    async def total_count(self) -> int:
        return await self.count()


def page_info(page: Page[Any], empty_end: str | None = None) -> PageInfo:
    """Where a page lies; an empty page ends at `empty_end` (the cursor it started after)."""
    return PageInfo(
        source=fields.PageEnds(page.has_next, page.has_previous, page.cursors, empty_end)
    )


def page_sizes(first: int | None, last: int | None) -> tuple[int | None, int | None]:
    """`first` and `last` as `Query.customers` takes them, whichever executor reads them:
    one of the two, each from 0 to MAX_PAGE, and `first` DEFAULT_PAGE when neither is given;
    BAD_USER_INPUT for anything else."""
    for name, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= MAX_PAGE:
            raise bad_input(f"{name} must be between 0 and {MAX_PAGE}; page through larger lists.")
    if first is not None and last is not None:
        raise bad_input("Give either first or last, not both.")
    if first is None and last is None:
        first = DEFAULT_PAGE
    return first, last


def ordering_of(order_by: CustomerOrder | None) -> Ordering:
    """The sort key `orderBy` names (newest first when it is null), whichever executor
    reads it."""
    order = order_by or CustomerOrder()
    return customers.ordering(
        mirror(order.field, customers.OrderField), mirror(order.direction, Direction)
    )


def first_page_size(first: int | None) -> int:
    """The size of a page that only walks forward (the event feed, a webhook's deliveries)."""
    size, _ = page_sizes(first, None)
    assert size is not None
    return size


@strawberry.type
class CustomerListQuery:
    @strawberry.field(
        description=(
            f"A page of customers: `first` (default {DEFAULT_PAGE}, at most {MAX_PAGE}) after a "
            "cursor, or `last` before one. Newest first unless `orderBy` says otherwise."
        )
    )
    async def customers(
        self,
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description="Page size, walking forward.")
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="Start after this cursor.")
        ] = None,
        last: Annotated[
            int | None, strawberry.argument(description="Page size, walking backward.")
        ] = None,
        before: Annotated[
            str | None, strawberry.argument(description="End before this cursor.")
        ] = None,
        filter: Annotated[
            CustomerFilter | None, strawberry.argument(description="Which customers.")
        ] = None,
        order_by: Annotated[
            CustomerOrder | None, strawberry.argument(description="Sort order.")
        ] = None,
    ) -> CustomerConnection:
        first, last = page_sizes(first, last)
        where = (filter or CustomerFilter()).to_db()
        ordering = ordering_of(order_by)
        context = info.context
        now, ttl = context.clock(), context.kyc_ttl
        try:
            async with context.db.read() as session:
                page = await customers.list_customers(
                    session, where, ordering, first=first, after=after, last=last,
                    before=before, now=now, ttl=ttl, cursor_secret=context.cursor_secret,
                )  # fmt: skip
        except PageError as error:
            raise bad_input(str(error)) from None

        async def count() -> int:
            async with context.db.read() as session:
                return await customers.count_customers(session, where, now, ttl)

        nodes = [Customer.from_row(row) for row in page.rows]
        return CustomerConnection(
            edges=[
                CustomerEdge(cursor=c, node=n) for c, n in zip(page.cursors, nodes, strict=True)
            ],
            nodes=nodes,
            page_info=page_info(page),
            count=count,
        )
