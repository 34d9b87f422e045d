"""API keys managed through the API (scope keys:manage): list, create, revoke.

A key's secret is in `createApiKey`'s payload alone, once; the server keeps only its hash. A
key can hold only scopes its maker holds, so keys:manage never widens what its holder may do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from db import keys, models
from db.pages import PageError
from db.rules import Problem
from schema.context import Info
from schema.customer_list import DEFAULT_PAGE, PageInfo, first_page_size, page_info
from schema.errors import bad_input
from schema.types import UserError, user_errors


@strawberry.type(description="An API key: everything about it but its secret.")
class ApiKey:
    name: str = strawberry.field(description="Its name, unique among keys, revoked ones too.")
    prefix: str = strawberry.field(
        description="The secret's first characters, to tell keys apart (cak_…)."
    )
    scopes: list[str] = strawberry.field(description="What it may do (customers:read, ...).")
    created_at: datetime = strawberry.field(description="When it was made.")
    created_by: str | None = strawberry.field(
        description="Who made it (`key:<name>`, `token:<iss>#<sub>`, `system:cli`); null for "
        "keys made before this was recorded."
    )
    last_used_at: datetime | None = strawberry.field(
        description="When it was last used, to the minute; null if never."
    )
    revoked_at: datetime | None = strawberry.field(
        description="When it was revoked; null while it is active."
    )
    revoked_by: str | None = strawberry.field(description="Who revoked it; null while active.")
    max_cost: int | None = strawberry.field(
        description="Points its rate-limit bucket holds; null: the server's RATE_LIMIT_MAX_COST."
    )
    restore_rate: float | None = strawberry.field(
        description="Points a second its bucket regains; null: the server's "
        "RATE_LIMIT_RESTORE_RATE."
    )

    @classmethod
    def from_row(cls, row: models.ApiKey) -> ApiKey:
        return cls(
            name=row.name,
            prefix=row.prefix,
            scopes=row.scopes.split(),
            created_at=row.created_at,
            created_by=row.created_by,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            revoked_by=row.revoked_by,
            max_cost=row.max_cost,
            restore_rate=row.restore_rate,
        )


@strawberry.type(description="A key in a list, with its place in it.")
class ApiKeyEdge:
    cursor: str = strawberry.field(description="Pass it as `after` for the next page.")
    node: ApiKey = strawberry.field(description="The key.")


@strawberry.type(description="A page of API keys, oldest first.")
class ApiKeyConnection:
    edges: list[ApiKeyEdge] = strawberry.field(description="The page's keys.")
    nodes: list[ApiKey] = strawberry.field(description="The page's keys.")
    page_info: PageInfo = strawberry.field(description="Where the page lies.")


@strawberry.input(description="A new API key.")
class CreateApiKeyInput:
    name: str = strawberry.field(
        description=f"A name people will recognise, unique, at most {keys.NAME_CHARACTERS} "
        "characters."
    )
    scopes: list[str] = strawberry.field(
        description="What it may do: at least one of " + ", ".join(sorted(keys.ALL_SCOPES))
        + "; only scopes you hold yourself."
    )  # fmt: skip
    max_cost: int | None = strawberry.field(
        default=None,
        description="Points its rate-limit bucket holds (from 1; requests cost what "
        "extensions.cost.requestedQueryCost says); null: the server's default.",
    )
    restore_rate: float | None = strawberry.field(
        default=None,
        description="Points a second its bucket regains (above 0); null: the server's default.",
    )


@strawberry.input(description="An API key to revoke.")
class RevokeApiKeyInput:
    name: str = strawberry.field(description="The active key's name.")


@strawberry.type(description="The outcome of createApiKey.")
class CreateApiKeyPayload:
    api_key: ApiKey | None = strawberry.field(description="The new key; null on errors.")
    secret: str | None = strawberry.field(
        description="The key to send as `Authorization: Bearer <key>`: shown this once, "
        "nowhere else, ever; keep it safe. Null on errors."
    )
    user_errors: list[UserError] = strawberry.field(
        description="REQUIRED, TOO_LONG, INVALID (an unknown scope, or one you lack; a "
        "maxCost or restoreRate out of range) or TAKEN."
    )


@strawberry.type(description="The outcome of revokeApiKey.")
class RevokeApiKeyPayload:
    api_key: ApiKey | None = strawberry.field(description="The revoked key; null on errors.")
    user_errors: list[UserError] = strawberry.field(description="NOT_FOUND.")


@strawberry.type
class ApiKeyQuery:
    @strawberry.field(
        description=f"Every API key, revoked ones too, oldest first: `first` (default "
        f"{DEFAULT_PAGE}) after a cursor. Never a key's secret."
    )
    async def api_keys(
        self,
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description=f"Page size (default {DEFAULT_PAGE}).")
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="Start after this cursor.")
        ] = None,
    ) -> ApiKeyConnection:
        size = first_page_size(first)
        try:
            async with info.context.db.read() as session:
                page = await keys.page_keys(
                    session, first=size, after=after, secret=info.context.cursor_secret
                )
        except PageError as error:
            raise bad_input(str(error)) from None
        nodes = [ApiKey.from_row(row) for row in page.rows]
        return ApiKeyConnection(
            edges=[ApiKeyEdge(cursor=c, node=n) for c, n in zip(page.cursors, nodes, strict=True)],
            nodes=nodes,
            page_info=page_info(page),
        )


@strawberry.type
class ApiKeyMutation:
    @strawberry.mutation(
        description="Make an API key with scopes you hold yourself. The answer holds its "
        "secret, shown this once."
    )
    async def create_api_key(
        self,
        info: Info,
        input: Annotated[CreateApiKeyInput, strawberry.argument(description="Name and scopes.")],
    ) -> CreateApiKeyPayload:
        context = info.context
        principal = context.principal
        assert principal is not None  # keys:manage was checked before anything ran
        async with context.db.write() as session:
            made = await keys.make_key(
                session,
                input.name,
                input.scopes,
                context.clock(),
                created_by=principal.actor,
                granter=principal.scopes,
                max_cost=input.max_cost,
                restore_rate=input.restore_rate,
            )
        if isinstance(made, list):
            return CreateApiKeyPayload(api_key=None, secret=None, user_errors=user_errors(made))
        return CreateApiKeyPayload(
            api_key=ApiKey.from_row(made.row), secret=made.secret, user_errors=[]
        )

    @strawberry.mutation(
        description="Revoke an active API key: every server refuses it (401) within "
        "KEY_CACHE_SECONDS."
    )
    async def revoke_api_key(
        self,
        info: Info,
        input: Annotated[RevokeApiKeyInput, strawberry.argument(description="Which key.")],
    ) -> RevokeApiKeyPayload:
        context = info.context
        async with context.db.write() as session:
            revoked = await keys.revoke_key(session, input.name, context.clock(), context.actor)
        if isinstance(revoked, Problem):
            return RevokeApiKeyPayload(api_key=None, user_errors=user_errors([revoked]))
        return RevokeApiKeyPayload(api_key=ApiKey.from_row(revoked), user_errors=[])
