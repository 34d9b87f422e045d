"""The GraphQL object types, enums and user errors of the contract."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import strawberry

from db import kyc, models, rules
from schema import ids
from schema.access import guard_personal_data
from schema.context import Info
from schema.translate import input_path, mirror, mirrors


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


@strawberry.type(
    description="A problem with the input of a mutation; the mutation changed nothing."
)
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path into the mutation\'s arguments, e.g. ["input", "data", "phone"].'
    )
    message: str = strawberry.field(description="What is wrong and what would be right.")
    code: UserErrorCode = strawberry.field(description="Why the input was refused.")


@strawberry.type(
    description=(
        "Something accepted only because the server runs in the sandbox environment; "
        "production would refuse it with the same code."
    )
)
class UserWarning:
    field: list[str] | None = strawberry.field(
        description="Path into the mutation's arguments of the value warned about."
    )
    message: str = strawberry.field(description="What production would refuse, and why.")
    code: UserErrorCode = strawberry.field(description="The rule that production enforces.")


def user_errors(problems: Iterable[rules.Problem]) -> list[UserError]:
    """The db layer's problems as user errors, their paths rooted at the `input` argument."""
    return [UserError(**_reported(p)) for p in problems]


def user_warnings(problems: Iterable[rules.Problem]) -> list[UserWarning]:
    """Problems the sandbox let through, as warnings shaped like user errors."""
    return [UserWarning(**_reported(p)) for p in problems]


# A db problem as a UserError (or UserWarning) shows it, field by field: the one conversion,
# which both executors use (the compiled path's generated code calls these too).
PROBLEM_FIELDS: dict[str, Callable[[rules.Problem], Any]] = {
    "field": lambda problem: input_path(problem.field),
    "message": lambda problem: problem.message,
    "code": lambda problem: mirror(problem.code, UserErrorCode),
}


def _reported(problem: rules.Problem) -> dict[str, Any]:
    return {name: value_of(problem) for name, value_of in PROBLEM_FIELDS.items()}


@strawberry.interface(description="An object with a globally unique, opaque id.")
class Node:
    id: strawberry.ID = strawberry.field(
        description="The object's global id, for `Query.node`; opaque and stable."
    )


@strawberry.type(description="One identity-verification attempt of a customer.")
class KycVerification(Node):
    type: KycVerificationType = strawberry.field(description="What the verification checks.")
    created_at: datetime = strawberry.field(description="When it was started.")
    row: strawberry.Private[models.KycVerification]

    @strawberry.field(
        description=(
            "Where it stands now. A PENDING verification older than the server's time to live "
            "shows as EXPIRED."
        )
    )
    def status(self, info: Info) -> KycVerificationStatus:
        context = info.context
        status = kyc.effective_status(
            self.row.status, self.row.created_at, context.clock(), context.kyc_ttl
        )
        return mirror(status, KycVerificationStatus)

    @strawberry.field(description="When its status last changed.")
    def updated_at(self, info: Info) -> datetime:
        return kyc.effective_updated_at(self.row, info.context.clock(), info.context.kyc_ttl)

    @classmethod
    def from_optional(cls, row: models.KycVerification | None) -> KycVerification | None:
        return None if row is None else cls.from_row(row)

    @classmethod
    def from_row(cls, row: models.KycVerification) -> KycVerification:
        assert row.id is not None
        return cls(
            id=ids.encode("KycVerification", row.id),
            type=mirror(row.type, KycVerificationType),
            created_at=row.created_at,
            row=row,
        )


@strawberry.type(description="A customer's contact data, normalised when it was written.")
class CustomerData:
    email: str = strawberry.field(description="E-mail address; its domain is lower case.")
    phone: str | None = strawberry.field(
        description="Mobile phone number in E.164 form, e.g. +12015550123."
    )
    first_name: str | None = strawberry.field(description="Given name.")
    last_name: str | None = strawberry.field(description="Family name.")
    street: str | None = strawberry.field(description="Street address, first line.")
    street2: str | None = strawberry.field(description="Street address, second line.")
    state: str | None = strawberry.field(
        description="Two-character state code, upper case (a US state, DC or territory for the US)."
    )
    city: str | None = strawberry.field(description="City.")
    zip: str | None = strawberry.field(
        description="Postal code; for the US 5 digits or ZIP+4 (10001-1234)."
    )
    country: str | None = strawberry.field(description="ISO 3166-1 alpha-2 code, upper case.")


@strawberry.federation.type(
    keys=["externalCustomerId", "id"],
    description=(
        "A customer, known by the id that your own system gave it. A federation entity: "
        "other subgraphs reference it by externalCustomerId (or by id)."
    ),
)
class Customer(Node):
    external_customer_id: str = strawberry.field(
        description="Your system's id for the customer: case-sensitive, unique, never changes."
    )

    def _data(self, info: Info) -> CustomerData:
        self._personal(info, "data")
        # CustomerData's attributes are named as the table's columns (rules.DATA_FIELDS).
        return CustomerData(**{name: getattr(self.row, name) for name in rules.DATA_FIELDS})

    data: CustomerData = strawberry.field(resolver=_data, description="Contact data.")
    created_at: datetime = strawberry.field(description="When the customer was created.")
    updated_at: datetime = strawberry.field(
        description="When a value of the customer last changed."
    )
    row: strawberry.Private[models.Customer]

    def _personal(self, info: Info, field: str) -> None:
        """The personal fields' one check of whose record this is (schema/access.py)."""
        principal = info.context.principal
        guard_personal_data(principal, self.row.external_customer_id, f"Customer.{field}")

    @strawberry.field(description="Every identity verification of the customer, oldest first.")
    async def kyc_verifications(self, info: Info) -> list[KycVerification]:
        self._personal(info, "kycVerifications")
        assert self.row.id is not None
        rows = await info.context.loaders.verifications_of.load(self.row.id)
        return [KycVerification.from_row(row) for row in rows]

    @strawberry.field(description="Status of the newest verification; null when there is none.")
    def kyc_status(self, info: Info) -> KycVerificationStatus | None:
        self._personal(info, "kycStatus")
        if self.row.kyc_status is None:
            return None
        context = info.context
        status = kyc.effective_status(
            self.row.kyc_status, self.row.kyc_started_at, context.clock(), context.kyc_ttl
        )
        return mirror(status, KycVerificationStatus)

    @classmethod
    def from_optional(cls, row: models.Customer | None) -> Customer | None:
        return None if row is None else cls.from_row(row)

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
        assert row.id is not None
        return cls(
            id=ids.encode("Customer", row.id),
            external_customer_id=row.external_customer_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            row=row,
        )
