"""The KYC mutations: start a verification, record the provider's result, review it."""

from __future__ import annotations

import enum
from typing import Annotated

import strawberry

from db import customers, kyc, models
from db.keys import Scope
from db.rules import Code, Problem
from schema import fields, ids
from schema.context import Info, Writer
from schema.translate import mirror
from schema.types import (
    Customer,
    KycVerification,
    KycVerificationStatus,
    KycVerificationType,
    UserError,
)


@strawberry.enum(description="An operator's decision on a verification UNDER_REVIEW.")
class KycReviewDecision(enum.Enum):
    APPROVE = strawberry.enum_value("APPROVE", description="Moves it to VERIFIED_MANUALLY.")
    REJECT = strawberry.enum_value("REJECT", description="Moves it to REJECTED_MANUALLY.")


DECISIONS = {
    KycReviewDecision.APPROVE: models.KycStatus.VERIFIED_MANUALLY,
    KycReviewDecision.REJECT: models.KycStatus.REJECTED_MANUALLY,
}


@strawberry.input(description="Which customer to verify, and how.")
class StartKycVerificationInput:
    external_customer_id: str = strawberry.field(description="The customer to verify.")
    type: KycVerificationType = strawberry.field(
        default=KycVerificationType.PROOF_OF_ID, description="What to verify."
    )


@strawberry.input(description="The verification provider's outcome for a PENDING verification.")
class RecordKycResultInput:
    verification_id: strawberry.ID = strawberry.field(
        description="The global id of the verification."
    )
    status: KycVerificationStatus = strawberry.field(
        description="VERIFIED, REJECTED or UNDER_REVIEW; anything else is INVALID_TRANSITION."
    )


@strawberry.input(description="An operator's decision on a verification UNDER_REVIEW.")
class ReviewKycVerificationInput:
    verification_id: strawberry.ID = strawberry.field(
        description="The global id of the verification."
    )
    decision: KycReviewDecision = strawberry.field(description="Approve or reject it.")


@fields.shown_as("KycVerificationPayload")
@strawberry.type(description="The outcome of a KYC mutation.")
class KycVerificationPayload:
    verification: KycVerification | None = fields.field(
        "KycVerificationPayload.verification",
        description="The verification as it is now; null on errors.",
    )
    customer: Customer | None = fields.field(
        "KycVerificationPayload.customer",
        description="The verification's customer, with its new kycStatus; null on errors.",
    )
    user_errors: list[UserError] = fields.field(
        "KycVerificationPayload.userErrors",
        description="Why nothing changed: NOT_FOUND or INVALID_TRANSITION.",
    )
    source: strawberry.Private[kyc.VerificationOutcome]


def verification_payload(outcome: kyc.VerificationOutcome) -> KycVerificationPayload:
    """The payload of every KYC mutation, from what the db layer's write did: its fields are
    schema/fields.py's, which the compiled path builds from too."""
    return KycVerificationPayload(source=outcome)


# The write bodies: each mutation's one, which both executors run (the resolvers below, and
# schema/compiled/).


async def start(
    writer: Writer, external_customer_id: str, kind: models.KycType
) -> kyc.VerificationOutcome:
    """startKycVerification."""
    if writer.own_customer(Scope.CUSTOMERS_WRITE) not in (None, external_customer_id):
        # A customers:self token verifying another customer: as if there were none.
        return kyc.VerificationOutcome(problems=[customers.not_found(external_customer_id)])
    async with writer.db.write() as session:
        return await kyc.start_verification(
            session, external_customer_id, kind, writer.now, writer.ttl, who=writer.actor
        )


async def transition(
    writer: Writer, verification_id: str, target: models.KycStatus, actor: kyc.Actor
) -> kyc.VerificationOutcome:
    """Move the verification with this global id to `target`, if the table lets `actor`
    (recordKycResult, reviewKycVerification). A GraphQLError (BAD_USER_INPUT) for an id past
    the largest key, before anything is read."""
    key = ids.decode_as("KycVerification", verification_id)
    if key is None:
        not_found = Problem(
            "verification_id", Code.NOT_FOUND, "There is no verification with this id."
        )
        return kyc.VerificationOutcome(problems=[not_found])
    async with writer.db.write() as session:
        return await kyc.move_verification(
            session, key, target, actor, writer.now, writer.ttl, who=writer.actor
        )


@strawberry.type
class KycMutation:
    @strawberry.mutation(
        description=(
            "Start verifying a customer: a new PENDING verification when it has none, or its "
            "newest was REJECTED, EXPIRED or REJECTED_MANUALLY; the active one when one is "
            "PENDING or UNDER_REVIEW; INVALID_TRANSITION when it is already verified."
        )
    )
    async def start_kyc_verification(
        self,
        info: Info,
        input: Annotated[StartKycVerificationInput, strawberry.argument(description="Who.")],
    ) -> KycVerificationPayload:
        kind = mirror(input.type, models.KycType)
        outcome = await start(info.context.writer(), input.external_customer_id, kind)
        return verification_payload(outcome)

    @strawberry.mutation(
        description=(
            "Record the verification provider's result: PENDING moves to VERIFIED, REJECTED "
            "or UNDER_REVIEW."
        )
    )
    async def record_kyc_result(
        self,
        info: Info,
        input: Annotated[RecordKycResultInput, strawberry.argument(description="The result.")],
    ) -> KycVerificationPayload:
        target = mirror(input.status, models.KycStatus)
        writer = info.context.writer()
        outcome = await transition(writer, input.verification_id, target, kyc.Actor.PROVIDER)
        return verification_payload(outcome)

    @strawberry.mutation(
        description=(
            "Record an operator's review: UNDER_REVIEW moves to VERIFIED_MANUALLY (APPROVE) or "
            "REJECTED_MANUALLY (REJECT)."
        )
    )
    async def review_kyc_verification(
        self,
        info: Info,
        input: Annotated[
            ReviewKycVerificationInput, strawberry.argument(description="The decision.")
        ],
    ) -> KycVerificationPayload:
        target = DECISIONS[input.decision]
        writer = info.context.writer()
        outcome = await transition(writer, input.verification_id, target, kyc.Actor.REVIEWER)
        return verification_payload(outcome)
