"""Root query fields: one customer by your id, any object by its global id."""

from __future__ import annotations

from typing import Annotated

import strawberry

from db import customers
from db.keys import Scope
from schema import ids
from schema.context import Info
from schema.types import Customer, KycVerification, Node


@strawberry.type
class CustomerQuery:
    @strawberry.field(description="Any object by its global id; null when there is none.")
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global id.")],
    ) -> Node | None:
        decoded = ids.decode(id)
        if decoded is None:
            return None
        type_name, key = decoded
        loaders = info.context.loaders
        own = info.context.own_customer(Scope.CUSTOMERS_READ)
        if type_name == "KycVerification":
            verification = await loaders.verification.load(key)
            if verification is None:
                return None
            if own is not None:  # a customers:self token sees its own customer's only
                owner = await loaders.customer.load(verification.customer_id)
                if owner is None or owner.external_customer_id != own:
                    return None
            return KycVerification.from_row(verification)
        if type_name == "Customer":
            customer = await loaders.customer.load(key)
            if customer is None or own not in (None, customer.external_customer_id):
                return None
            return Customer.from_row(customer)
        return None

    @strawberry.field(description="The customer with this id of your system; null when none.")
    async def customer(
        self,
        info: Info,
        external_customer_id: Annotated[
            str, strawberry.argument(description="Your system's id, exact and case-sensitive.")
        ],
    ) -> Customer | None:
        if info.context.own_customer(Scope.CUSTOMERS_READ) not in (None, external_customer_id):
            return None  # a customers:self token's answer for any customer but its own
        async with info.context.db.read() as session:
            row = await customers.get_customer(session, external_customer_id)
        return None if row is None else Customer.from_row(row)
