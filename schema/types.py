"""The GraphQL object types, enums and user errors of the contract."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

import strawberry

from db import models, rules
from schema import fields, ids
from schema.context import Info
from schema.translate import mirrors


@mirrors(models.KycType)
@strawberry.enum(description="What a KYC verification checks.")
class KycVerificationType(enum.Enum):
    PROOF_OF_ID = strawberry.enum_value(
        "PROOF_OF_ID", description="A government-issued identity document."
    )


@mirrors(models.KycStatus)
@strawberry.enum(description="Where a KYC verification stands.")
class KycVerificationStatus(enum.Enum):
    PENDING = strawberry.enum_value(
        "PENDING", description="Started; waiting for the verification provider's result."
    )
    VERIFIED = strawberry.enum_value(
        "VERIFIED", description="The provider verified the customer's identity."
    )
    UNDER_REVIEW = strawberry.enum_value(
        "UNDER_REVIEW", description="The provider could not decide; an operator must review it."
    )
    REJECTED = strawberry.enum_value("REJECTED", description="The provider refused the identity.")
    EXPIRED = strawberry.enum_value(
        "EXPIRED", description="No result came within the time to live; start a new one."
    )
    VERIFIED_MANUALLY = strawberry.enum_value(
        "VERIFIED_MANUALLY", description="An operator approved it on review."
    )
    REJECTED_MANUALLY = strawberry.enum_value(
        "REJECTED_MANUALLY", description="An operator rejected it on review."
    )


@mirrors(rules.Code)
@strawberry.enum(description="Why a mutation refused its input. Branch on this, not on messages.")
class UserErrorCode(enum.Enum):
    REQUIRED = strawberry.enum_value("REQUIRED", description="A required value is missing.")
    INVALID = strawberry.enum_value(
        "INVALID", description="The value holds characters it may not hold."
    )
    TOO_LONG = strawberry.enum_value("TOO_LONG", description="The value is too long.")
    INVALID_EMAIL = strawberry.enum_value(
        "INVALID_EMAIL", description="Not a valid e-mail address."
    )
    DISPOSABLE_EMAIL = strawberry.enum_value(
        "DISPOSABLE_EMAIL", description="The e-mail's domain hands out disposable addresses."
    )
    EMAIL_PLUS_SUFFIX = strawberry.enum_value(
        "EMAIL_PLUS_SUFFIX", description="The e-mail's local part has a '+' sub-address."
    )
    INVALID_PHONE = strawberry.enum_value("INVALID_PHONE", description="Not a valid phone number.")
    PHONE_NOT_MOBILE = strawberry.enum_value(
        "PHONE_NOT_MOBILE", description="A valid number, but not a mobile one."
    )
    INVALID_COUNTRY = strawberry.enum_value(
        "INVALID_COUNTRY", description="Not an assigned ISO 3166-1 alpha-2 country code."
    )
    INVALID_STATE = strawberry.enum_value(
        "INVALID_STATE", description="Not a two-character state code (a US one for the US)."
    )
    INVALID_ZIP = strawberry.enum_value("INVALID_ZIP", description="Not a valid postal code.")
    TAKEN = strawberry.enum_value("TAKEN", description="Another customer already has this value.")
    NOT_FOUND = strawberry.enum_value("NOT_FOUND", description="No record has this id.")
    INVALID_TRANSITION = strawberry.enum_value(
        "INVALID_TRANSITION",
        description="The verification's current status does not allow this change.",
    )
    INVALID_URL = strawberry.enum_value(
        "INVALID_URL",
        description="A webhook URL that is malformed or not allowed as a target (https, and "
        "never an internal address).",
    )


@fields.shown_as("UserError")
@strawberry.type(
    description="A problem with the input of a mutation; the mutation changed nothing."
)
class UserError:
    field: list[str] | None = fields.field(
        "UserError.field",
        description='Path into the mutation\'s arguments, e.g. ["input", "data", "phone"].',
    )
    message: str = fields.field(
        "UserError.message", description="What is wrong and what would be right."
    )
    code: UserErrorCode = fields.field("UserError.code", description="Why the input was refused.")
    source: strawberry.Private[rules.Problem]


@fields.shown_as("UserWarning")
@strawberry.type(
    description=(
        "Something accepted only because the server runs in the sandbox environment; "
        "production would refuse it with the same code."
    )
)
class UserWarning:
    field: list[str] | None = fields.field(
        "UserWarning.field",
        description="Path into the mutation's arguments of the value warned about.",
    )
    message: str = fields.field(
        "UserWarning.message", description="What production would refuse, and why."
    )
    code: UserErrorCode = fields.field(
        "UserWarning.code", description="The rule that production enforces."
    )
    source: strawberry.Private[rules.Problem]


def user_errors(problems: Iterable[rules.Problem]) -> list[UserError]:
    """The db layer's problems as user errors, their paths rooted at the `input` argument."""
    return [UserError(source=p) for p in problems]


def user_warnings(problems: Iterable[rules.Problem]) -> list[UserWarning]:
    """Problems the sandbox let through, as warnings shaped like user errors."""
    return [UserWarning(source=p) for p in problems]


@strawberry.interface(description="An object with a globally unique, opaque id.")
class Node:
    id: strawberry.ID = strawberry.field(
        description="The object's global id, for `Query.node`; opaque and stable."
    )


@fields.shown_as("KycVerification")
@strawberry.type(description="One identity-verification attempt of a customer.")
class KycVerification(Node):
    id: strawberry.ID = fields.field(
        "KycVerification.id",
        description="The object's global id, for `Query.node`; opaque and stable.",
    )
    type: KycVerificationType = fields.field(
        "KycVerification.type", description="What the verification checks."
    )
    created_at: datetime = fields.field(
        "KycVerification.createdAt", description="When it was started."
    )
    status: KycVerificationStatus = fields.field(
        "KycVerification.status",
        description=(
            "Where it stands now. A PENDING verification older than the server's time to live "
            "shows as EXPIRED."
        ),
    )
    updated_at: datetime = fields.field(
        "KycVerification.updatedAt", description="When its status last changed."
    )
    source: strawberry.Private[models.KycVerification]

    @classmethod
    def from_optional(cls, row: models.KycVerification | None) -> KycVerification | None:
        return None if row is None else cls(source=row)

    @classmethod
    def from_row(cls, row: models.KycVerification) -> KycVerification:
        return cls(source=row)


@fields.shown_as("CustomerData")
@strawberry.type(description="A customer's contact data, normalised when it was written.")
class CustomerData:
    email: str = fields.field(
        "CustomerData.email", description="E-mail address; its domain is lower case."
    )
    phone: str | None = fields.field(
        "CustomerData.phone",
        description="Mobile phone number in E.164 form, e.g. +12015550123.",
    )
    first_name: str | None = fields.field("CustomerData.firstName", description="Given name.")
    last_name: str | None = fields.field("CustomerData.lastName", description="Family name.")
    street: str | None = fields.field(
        "CustomerData.street", description="Street address, first line."
    )
    street2: str | None = fields.field(
        "CustomerData.street2", description="Street address, second line."
    )
    state: str | None = fields.field(
        "CustomerData.state",
        description=(
            "Two-character state code, upper case (a US state, DC or territory for the US)."
        ),
    )
    city: str | None = fields.field("CustomerData.city", description="City.")
    zip: str | None = fields.field(
        "CustomerData.zip",
        description="Postal code; for the US 5 digits or ZIP+4 (10001-1234).",
    )
    country: str | None = fields.field(
        "CustomerData.country", description="ISO 3166-1 alpha-2 code, upper case."
    )
    source: strawberry.Private[models.Customer]


@fields.shown_as("Customer")
@strawberry.federation.type(
    keys=["externalCustomerId", "id"],
    description=(
        "A customer, known by the id that your own system gave it. A federation entity: "
        "other subgraphs reference it by externalCustomerId (or by id)."
    ),
)
class Customer(Node):
    id: strawberry.ID = fields.field(
        "Customer.id", description="The object's global id, for `Query.node`; opaque and stable."
    )
    external_customer_id: str = fields.field(
        "Customer.externalCustomerId",
        description="Your system's id for the customer: case-sensitive, unique, never changes.",
    )
    data: CustomerData = fields.field("Customer.data", description="Contact data.")
    created_at: datetime = fields.field(
        "Customer.createdAt", description="When the customer was created."
    )
    updated_at: datetime = fields.field(
        "Customer.updatedAt", description="When a value of the customer last changed."
    )
    kyc_verifications: list[KycVerification] = fields.field(
        "Customer.kycVerifications",
        description="Every identity verification of the customer, oldest first.",
    )
    kyc_status: KycVerificationStatus | None = fields.field(
        "Customer.kycStatus",
        description="Status of the newest verification; null when there is none.",
    )
    source: strawberry.Private[models.Customer]

    @classmethod
    def from_optional(cls, row: models.Customer | None) -> Customer | None:
        return None if row is None else cls(source=row)

    @classmethod
    async def resolve_reference(
        cls, info: Info, externalCustomerId: str | None = None, id: str | None = None
    ) -> Customer | None:
        """The entity for a federation representation. The gateway sends many at once: the
        loaders answer them all with one query per key."""
        loaders = info.context.loaders
        if externalCustomerId is not None:
            return cls.from_optional(await loaders.customer_by_external_id.load(externalCustomerId))
        key = None if id is None else ids.decode_as("Customer", id)
        return None if key is None else cls.from_optional(await loaders.customer.load(key))

    @classmethod
    def from_row(cls, row: models.Customer) -> Customer:
        return cls(source=row)
