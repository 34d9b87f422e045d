"""Webhook endpoints: the contract's queries and mutations (scope webhooks:manage)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import strawberry

from db import models, webhooks
from db.pages import PageError
from db.rules import Code, Problem
from schema import ids
from schema.context import Info
from schema.customer_list import DEFAULT_PAGE, PageInfo, first_page_size, page_info
from schema.errors import bad_input
from schema.events import CustomerEvent, CustomerEventType
from schema.translate import mirror, mirrors
from schema.types import Node, UserError, user_errors


@mirrors(models.DeliveryStatus)
@strawberry.enum(description="Where a webhook delivery stands.")
class WebhookDeliveryStatus(enum.Enum):
    PENDING = strawberry.enum_value(
        "PENDING", description="Not yet delivered; another attempt is scheduled."
    )
    SUCCEEDED = strawberry.enum_value("SUCCEEDED", description="The endpoint answered 2xx.")
    FAILED = strawberry.enum_value("FAILED", description="Gave up after the last retry.")


@strawberry.type(description="One event sent (or being sent) to one endpoint.")
class WebhookDelivery(Node):
    status: WebhookDeliveryStatus = strawberry.field(description="Where it stands.")
    attempts: int = strawberry.field(description="How many attempts were made.")
    last_response_status: int | None = strawberry.field(
        description="HTTP status of the last attempt; null if it got none."
    )
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed (timeout, refused, status); never the body."
    )
    next_attempt_at: datetime | None = strawberry.field(
        description="When the next attempt is due; null once settled."
    )
    created_at: datetime = strawberry.field(description="When the event was queued for it.")
    delivered_at: datetime | None = strawberry.field(description="When the endpoint took it.")
    event_id: strawberry.Private[int]

    @strawberry.field(description="The event; null once it is past retention.")
    async def event(self, info: Info) -> CustomerEvent | None:
        row = await info.context.loaders.event.load(self.event_id)
        return None if row is None else CustomerEvent.from_row(row)

    @classmethod
    def from_row(cls, row: models.WebhookDelivery) -> WebhookDelivery:
        assert row.id is not None
        return cls(
            id=ids.encode("WebhookDelivery", row.id),
            status=mirror(row.status, WebhookDeliveryStatus),
            attempts=row.attempts,
            last_response_status=row.last_response_status,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at
            if row.status is models.DeliveryStatus.PENDING
            else None,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            event_id=row.event_id,
        )


@strawberry.type(description="A delivery in a list, with its place in it.")
class WebhookDeliveryEdge:
    cursor: str = strawberry.field(description="Pass it as `after` for the next page.")
    node: WebhookDelivery = strawberry.field(description="The delivery.")


@strawberry.type(description="A page of deliveries, newest first.")
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge] = strawberry.field(description="The page's deliveries.")
    nodes: list[WebhookDelivery] = strawberry.field(description="The page's deliveries.")
    page_info: PageInfo = strawberry.field(description="Where the page lies.")


@strawberry.type(description="A URL that receives the feed's events, signed per Standard Webhooks.")
class WebhookEndpoint(Node):
    url: str = strawberry.field(description="Where events are POSTed.")
    event_types: list[CustomerEventType] = strawberry.field(
        description="The types it receives; empty: every type."
    )
    enabled: bool = strawberry.field(
        description="Whether events are sent; events while disabled are not sent later."
    )
    created_at: datetime = strawberry.field(description="When it was made.")
    row_id: strawberry.Private[int]

    @strawberry.field(description="What was sent to it, newest first.")
    async def deliveries(
        self,
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description=f"Page size (default {DEFAULT_PAGE}).")
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="Start after this cursor.")
        ] = None,
        status: Annotated[
            WebhookDeliveryStatus | None, strawberry.argument(description="Only these.")
        ] = None,
    ) -> WebhookDeliveryConnection:
        size = first_page_size(first)
        wanted = None if status is None else mirror(status, models.DeliveryStatus)
        try:
            async with info.context.db.read() as session:
                page = await webhooks.list_deliveries(
                    session,
                    self.row_id,
                    wanted,
                    first=size,
                    after=after,
                    secret=info.context.cursor_secret,
                )
        except PageError as error:
            raise bad_input(str(error)) from None
        nodes = [WebhookDelivery.from_row(row) for row in page.rows]
        return WebhookDeliveryConnection(
            edges=[
                WebhookDeliveryEdge(cursor=c, node=n)
                for c, n in zip(page.cursors, nodes, strict=True)
            ],
            nodes=nodes,
            page_info=page_info(page),
        )

    @classmethod
    def from_row(cls, row: models.WebhookEndpoint) -> WebhookEndpoint:
        assert row.id is not None
        return cls(
            id=ids.encode("WebhookEndpoint", row.id),
            url=row.url,
            event_types=[mirror(t, CustomerEventType) for t in webhooks.event_types(row)],
            enabled=row.enabled,
            created_at=row.created_at,
            row_id=row.id,
        )


_TYPES = "The event types it receives; empty: every type."


@strawberry.input(description="A new webhook endpoint.")
class CreateWebhookEndpointInput:
    url: str = strawberry.field(
        description="An https:// URL on a public address (see INVALID_URL)."
    )
    event_types: list[CustomerEventType] = strawberry.field(
        default_factory=list, description=_TYPES
    )


@strawberry.input(description="Changes to a webhook endpoint; a null or omitted field stays.")
class UpdateWebhookEndpointInput:
    id: strawberry.ID = strawberry.field(description="The endpoint's global id.")
    url: str | None = strawberry.field(default=None, description="A new URL.")
    event_types: list[CustomerEventType] | None = strawberry.field(default=None, description=_TYPES)
    enabled: bool | None = strawberry.field(default=None, description="Send events, or not.")


@strawberry.input(description="A webhook endpoint to delete, with its deliveries.")
class DeleteWebhookEndpointInput:
    id: strawberry.ID = strawberry.field(description="The endpoint's global id.")


@strawberry.type(description="The outcome of createWebhookEndpoint.")
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(
        description="The new endpoint; null on errors."
    )
    secret: str | None = strawberry.field(
        description="whsec_…, the signing secret: shown this once, keep it safe."
    )
    user_errors: list[UserError] = strawberry.field(description="INVALID_URL, say.")


@strawberry.type(description="The outcome of updateWebhookEndpoint.")
class WebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(
        description="The endpoint as it is now; null on errors."
    )
    user_errors: list[UserError] = strawberry.field(description="NOT_FOUND or INVALID_URL.")


@strawberry.type(description="The outcome of deleteWebhookEndpoint.")
class DeleteWebhookEndpointPayload:
    deleted_id: strawberry.ID | None = strawberry.field(
        description="The deleted endpoint's id; null on errors."
    )
    user_errors: list[UserError] = strawberry.field(description="NOT_FOUND.")


def _settings(info: Info) -> webhooks.Settings:
    return info.context.webhooks or webhooks.Settings(box=None)


NOT_CONFIGURED = Problem(
    "url",
    Code.INVALID,
    "Webhooks need WEBHOOK_SECRET_KEY set on the server, to keep signing secrets encrypted "
    "(see the README); ask the server's operator.",
)


def _errors(problem: Problem) -> list[UserError]:
    return user_errors([problem])


def _types(types: list[CustomerEventType] | None) -> list[models.EventType] | None:
    return None if types is None else [mirror(t, models.EventType) for t in types]


def _endpoint_key(global_id: str) -> int | Problem:
    key = ids.decode_as("WebhookEndpoint", global_id)
    if key is None:
        return Problem("id", Code.NOT_FOUND, "There is no webhook endpoint with this id.")
    return key


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="Every webhook endpoint, oldest first.")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        async with info.context.db.read() as session:
            rows = await webhooks.list_endpoints(session)
        return [WebhookEndpoint.from_row(row) for row in rows]


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        description=(
            "Send the feed's events (from now on) to a URL, signed per Standard Webhooks. "
            "The answer holds the signing secret, shown this once."
        )
    )
    async def create_webhook_endpoint(
        self,
        info: Info,
        input: Annotated[CreateWebhookEndpointInput, strawberry.argument(description="The URL.")],
    ) -> CreateWebhookEndpointPayload:
        settings = _settings(info)
        if settings.box is None:
            return CreateWebhookEndpointPayload(
                endpoint=None, secret=None, user_errors=_errors(NOT_CONFIGURED)
            )
        target = await webhooks.check_url(input.url, settings.allow_private, settings.resolver)
        if isinstance(target, Problem):
            return CreateWebhookEndpointPayload(
                endpoint=None, secret=None, user_errors=_errors(target)
            )
        context = info.context
        async with context.db.write() as session:
            endpoint, secret = await webhooks.create_endpoint(
                session, target, _types(input.event_types) or [], settings.box, context.clock()
            )
        return CreateWebhookEndpointPayload(
            endpoint=WebhookEndpoint.from_row(endpoint), secret=secret, user_errors=[]
        )

    @strawberry.mutation(description="Change an endpoint's URL, event types or whether it is on.")
    async def update_webhook_endpoint(
        self,
        info: Info,
        input: Annotated[UpdateWebhookEndpointInput, strawberry.argument(description="Changes.")],
    ) -> WebhookEndpointPayload:
        settings = _settings(info)
        key = _endpoint_key(input.id)
        target = None
        if not isinstance(key, Problem) and input.url is not None:
            target = await webhooks.check_url(input.url, settings.allow_private, settings.resolver)
        if isinstance(key, Problem) or isinstance(target, Problem):
            problem = key if isinstance(key, Problem) else target
            assert isinstance(problem, Problem)
            return WebhookEndpointPayload(endpoint=None, user_errors=_errors(problem))
        async with info.context.db.write() as session:
            updated = await webhooks.update_endpoint(
                session, key, target=target, types=_types(input.event_types), enabled=input.enabled
            )
        if isinstance(updated, Problem):
            return WebhookEndpointPayload(endpoint=None, user_errors=_errors(updated))
        return WebhookEndpointPayload(endpoint=WebhookEndpoint.from_row(updated), user_errors=[])

    @strawberry.mutation(description="Delete an endpoint; nothing more is sent to it.")
    async def delete_webhook_endpoint(
        self,
        info: Info,
        input: Annotated[DeleteWebhookEndpointInput, strawberry.argument(description="Which.")],
    ) -> DeleteWebhookEndpointPayload:
        key = _endpoint_key(input.id)
        if not isinstance(key, Problem):
            async with info.context.db.write() as session:
                problem = await webhooks.delete_endpoint(session, key)
            if problem is None:
                return DeleteWebhookEndpointPayload(deleted_id=input.id, user_errors=[])
            key = problem
        return DeleteWebhookEndpointPayload(deleted_id=None, user_errors=_errors(key))
