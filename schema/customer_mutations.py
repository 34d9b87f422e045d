"""The customer mutations: create, update (patch semantics) and delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, TypeVar

import strawberry

from db import customers, rules
from db.keys import Scope
from schema import fields
from schema.context import Info, Writer
from schema.types import Customer, UserError, UserWarning

_PHONE = "Mobile phone number; with a leading + any country, without it a US number."
_STATE = "Two-character state code; for the US (or no country) a US state, DC or territory."
_ZIP = "Postal code, up to 10 characters; for the US 5 digits or ZIP+4."
_COUNTRY = "ISO 3166-1 alpha-2 country code, any case."


@strawberry.input(description="A new customer's contact data. Blank optional values count as null.")
class CustomerDataInput:
    email: str = strawberry.field(description="E-mail address; unique across customers, any case.")
    phone: str | None = strawberry.field(default=None, description=_PHONE)
    first_name: str | None = strawberry.field(default=None, description="Given name.")
    last_name: str | None = strawberry.field(default=None, description="Family name.")
    street: str | None = strawberry.field(default=None, description="Street address, first line.")
    street2: str | None = strawberry.field(default=None, description="Street address, second line.")
    state: str | None = strawberry.field(default=None, description=_STATE)
    city: str | None = strawberry.field(default=None, description="City.")
    zip: str | None = strawberry.field(default=None, description=_ZIP)
    country: str | None = strawberry.field(default=None, description=_COUNTRY)

    def values(self) -> dict[str, str | None]:
        """The data by the db layer's field names (the attributes are named as the columns)."""
        return {name: getattr(self, name) for name in rules.DATA_FIELDS}


@strawberry.input(
    description=(
        "Changes to a customer's data. Every field is optional: an omitted field is left as it "
        "is, an explicit null clears it (the e-mail cannot be cleared)."
    )
)
class CustomerDataPatch:
    email: strawberry.Maybe[str | None] = strawberry.field(description="New e-mail address.")
    phone: strawberry.Maybe[str | None] = strawberry.field(description=_PHONE)
    first_name: strawberry.Maybe[str | None] = strawberry.field(description="Given name.")
    last_name: strawberry.Maybe[str | None] = strawberry.field(description="Family name.")
    street: strawberry.Maybe[str | None] = strawberry.field(description="Street, first line.")
    street2: strawberry.Maybe[str | None] = strawberry.field(description="Street, second line.")
    state: strawberry.Maybe[str | None] = strawberry.field(description=_STATE)
    city: strawberry.Maybe[str | None] = strawberry.field(description="City.")
    zip: strawberry.Maybe[str | None] = strawberry.field(description=_ZIP)
    country: strawberry.Maybe[str | None] = strawberry.field(description=_COUNTRY)

    def changes(self) -> dict[str, str | None]:
        """Only the fields the client sent, by the db layer's names: a value, or None to clear."""
        given = {name: getattr(self, name) for name in rules.DATA_FIELDS}
        return {name: some.value for name, some in given.items() if some is not None}


@strawberry.input(description="A customer to create.")
class CreateCustomerInput:
    external_customer_id: str = strawberry.field(
        description="Your system's id for the customer: 1 to 255 characters, no blanks."
    )
    data: CustomerDataInput = strawberry.field(description="The customer's contact data.")


@strawberry.input(description="Changes to one customer.")
class UpdateCustomerInput:
    external_customer_id: str = strawberry.field(description="Which customer to change.")
    data: CustomerDataPatch = strawberry.field(description="The fields to set or clear.")


@strawberry.input(description="A customer to delete.")
class DeleteCustomerInput:
    external_customer_id: str = strawberry.field(description="Which customer to delete.")


@fields.shown_as("CreateCustomerPayload")
@strawberry.type(description="The outcome of createCustomer.")
class CreateCustomerPayload:
    customer: Customer | None = fields.field(
        "CreateCustomerPayload.customer", description="The new customer; null on errors."
    )
    user_errors: list[UserError] = fields.field(
        "CreateCustomerPayload.userErrors",
        description="Every problem with the input; empty on success.",
    )
    warnings: list[UserWarning] = fields.field(
        "CreateCustomerPayload.warnings",
        description="Values that only the sandbox environment accepts.",
    )
    source: strawberry.Private[customers.CustomerOutcome]


@fields.shown_as("UpdateCustomerPayload")
@strawberry.type(description="The outcome of updateCustomer.")
class UpdateCustomerPayload:
    customer: Customer | None = fields.field(
        "UpdateCustomerPayload.customer",
        description="The customer as it is now; null on errors.",
    )
    user_errors: list[UserError] = fields.field(
        "UpdateCustomerPayload.userErrors",
        description="Every problem with the input; empty on success.",
    )
    warnings: list[UserWarning] = fields.field(
        "UpdateCustomerPayload.warnings",
        description="Values that only the sandbox environment accepts.",
    )
    source: strawberry.Private[customers.CustomerOutcome]


@fields.shown_as("DeleteCustomerPayload")
@strawberry.type(description="The outcome of deleteCustomer.")
class DeleteCustomerPayload:
    deleted_external_customer_id: str | None = fields.field(
        "DeleteCustomerPayload.deletedExternalCustomerId",
        description="The id of the deleted customer; null on errors.",
    )
    user_errors: list[UserError] = fields.field(
        "DeleteCustomerPayload.userErrors",
        description="NOT_FOUND when there was no such customer.",
    )
    source: strawberry.Private[fields.Deleted]


Payload = TypeVar("Payload", CreateCustomerPayload, UpdateCustomerPayload)


def customer_payload(kind: type[Payload], outcome: customers.CustomerOutcome) -> Payload:
    """The payload of createCustomer or updateCustomer, from what the db layer's write did: its
    fields are schema/fields.py's, which the compiled path builds from too."""
    return kind(source=outcome)


# The write bodies: each mutation's one, which both executors run (the resolvers below, and
# schema/compiled/), given its input by the db layer's names.


async def create(
    writer: Writer, external_customer_id: str, data: Mapping[str, str | None]
) -> customers.CustomerOutcome:
    """createCustomer: `data` holds every data field, None for those not given."""
    async with writer.db.transaction() as driver:
        return await customers.create_customer(
            driver, external_customer_id, data, writer.environment,
            now=writer.now, who=writer.actor,
        )  # fmt: skip


async def update(
    writer: Writer, external_customer_id: str, patch: Mapping[str, str | None]
) -> customers.CustomerOutcome:
    """updateCustomer: `patch` holds the fields given, None to clear one."""
    if writer.own_customer(Scope.CUSTOMERS_WRITE) not in (None, external_customer_id):
        # A customers:self token changing another customer: as if there were none.
        return customers.CustomerOutcome(problems=[customers.not_found(external_customer_id)])
    async with writer.db.transaction() as driver:
        return await customers.update_customer(
            driver, external_customer_id, patch, writer.environment,
            now=writer.now, who=writer.actor,
        )  # fmt: skip


async def delete(writer: Writer, external_customer_id: str) -> list[rules.Problem]:
    """deleteCustomer: its problems, none when it deleted the customer."""
    async with writer.db.write() as session:
        return await customers.delete_customer(
            session, external_customer_id, now=writer.now, who=writer.actor
        )


@strawberry.type
class CustomerMutation:
    @strawberry.mutation(
        description="Create a customer. Every rule runs; all problems are reported together."
    )
    async def create_customer(
        self,
        info: Info,
        input: Annotated[CreateCustomerInput, strawberry.argument(description="The customer.")],
    ) -> CreateCustomerPayload:
        writer = info.context.writer()
        outcome = await create(writer, input.external_customer_id, input.data.values())
        return customer_payload(CreateCustomerPayload, outcome)

    @strawberry.mutation(
        description=(
            "Change a customer's data: omitted fields stay, null clears. The merged record must "
            "pass every rule that create runs."
        )
    )
    async def update_customer(
        self,
        info: Info,
        input: Annotated[UpdateCustomerInput, strawberry.argument(description="The changes.")],
    ) -> UpdateCustomerPayload:
        writer = info.context.writer()
        outcome = await update(writer, input.external_customer_id, input.data.changes())
        return customer_payload(UpdateCustomerPayload, outcome)

    @strawberry.mutation(description="Delete a customer and its verification history.")
    async def delete_customer(
        self,
        info: Info,
        input: Annotated[DeleteCustomerInput, strawberry.argument(description="The customer.")],
    ) -> DeleteCustomerPayload:
        problems = await delete(info.context.writer(), input.external_customer_id)
        return DeleteCustomerPayload(source=fields.Deleted(input.external_customer_id, problems))
