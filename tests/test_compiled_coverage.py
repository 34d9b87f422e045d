"""What the compiled path covers, written down: every `Type.field` (and root argument) of the
types it builds is either answered by it or falls back to graphql-core by a decision listed
here, never by accident. The lists are compared with the plan builder's own tables
(schema/compiled/plan.py: `COVERED`, which holds schema/fields.py's table, `ROOT_ARGUMENTS`,
`NULL_ONLY_ARGUMENTS`)."""

from __future__ import annotations

from graphql import GraphQLObjectType

from schema import schema
from schema.compiled.plan import COVERED, NULL_ONLY_ARGUMENTS, ROOT_ARGUMENTS, covered_fields

ANSWERED = {
    "Query.customer",
    "Query.customers",
    "Query.node",
    "Query.customerEvents",
    "Mutation.createCustomer",
    "Mutation.updateCustomer",
    "Mutation.deleteCustomer",
    "Mutation.startKycVerification",
    "Mutation.recordKycResult",
    "Mutation.reviewKycVerification",
    "Customer.id",
    "Customer.externalCustomerId",
    "Customer.data",
    "Customer.createdAt",
    "Customer.updatedAt",
    "Customer.kycVerifications",  # not under a write's payload: that would be another read
    "Customer.kycStatus",
    *(
        f"CustomerData.{name}"
        for name in (
            "email",
            "phone",
            "firstName",
            "lastName",
            "street",
            "street2",
            "state",
            "city",
            "zip",
            "country",
        )
    ),
    "KycVerification.id",
    "KycVerification.type",
    "KycVerification.createdAt",
    "KycVerification.status",
    "KycVerification.updatedAt",
    "CustomerConnection.edges",
    "CustomerConnection.nodes",
    "CustomerConnection.pageInfo",
    "CustomerConnection.totalCount",
    "CustomerEdge.cursor",
    "CustomerEdge.node",
    "PageInfo.hasNextPage",
    "PageInfo.hasPreviousPage",
    "PageInfo.startCursor",
    "PageInfo.endCursor",
    "CustomerEventConnection.edges",
    "CustomerEventConnection.nodes",
    "CustomerEventConnection.pageInfo",
    "CustomerEventEdge.cursor",
    "CustomerEventEdge.node",
    *(
        f"CustomerEvent.{name}"
        for name in (
            "id",
            "cursor",
            "type",
            "externalCustomerId",
            "status",
            "previousStatus",
            "changedFields",
            "actor",
            "occurredAt",
            "verification",
        )
    ),
    *(
        f"{kind}.{name}"
        for kind in ("UserError", "UserWarning")
        for name in ("field", "message", "code")
    ),
    "CreateCustomerPayload.customer",
    "CreateCustomerPayload.userErrors",
    "CreateCustomerPayload.warnings",
    "UpdateCustomerPayload.customer",
    "UpdateCustomerPayload.userErrors",
    "UpdateCustomerPayload.warnings",
    "DeleteCustomerPayload.deletedExternalCustomerId",
    "DeleteCustomerPayload.userErrors",
    "KycVerificationPayload.verification",
    "KycVerificationPayload.customer",
    "KycVerificationPayload.userErrors",
}

# Fields of those types that graphql-core answers, and why.
FALLS_BACK = {
    "Query._entities": "federation: rare, and resolved by Strawberry's own machinery",
    "Query._service": "federation: the SDL, rare",
    "CustomerEvent.customer": "a second read per page (the customers as they are now), and "
    "whose personal data it shows: not compiled yet",
    "Query.webhookEndpoints": "administration: rare",
    "Mutation.createWebhookEndpoint": "administration: rare",
    "Mutation.updateWebhookEndpoint": "administration: rare",
    "Mutation.deleteWebhookEndpoint": "administration: rare",
    "Query.apiKeys": "administration: rare",
    "Mutation.createApiKey": "administration: rare",
    "Mutation.revokeApiKey": "administration: rare",
}

# Root arguments the compiled path takes only as null (or a variable null or absent): none,
# every argument of `customers` and `customerEvents` is answered.
NULL_ONLY: dict[str, set[str]] = {}

HOW = (
    "Either define it in schema/fields.py (both executors are made from the definition; add "
    "tests/test_compiled.py cases proving they answer it byte for byte the same) or, for a "
    "root or connection field, give it a builder in schema/compiled/plan.py, and list it in "
    "ANSWERED here; or list it in FALLS_BACK with the reason graphql-core answers every "
    "document that selects it."
)


def schema_fields(type_name: str) -> set[str]:
    graphql_type = schema._schema.get_type(type_name)
    assert isinstance(graphql_type, GraphQLObjectType), type_name
    return {f"{type_name}.{name}" for name in graphql_type.fields}


def test_every_field_of_a_compiled_type_is_answered_or_falls_back_by_decision() -> None:
    in_schema = set().union(*(schema_fields(type_name) for type_name in COVERED))
    undecided = sorted(in_schema - ANSWERED - set(FALLS_BACK))
    assert not undecided, (
        f"{', '.join(undecided)}: neither answered by the compiled path nor listed as falling "
        f"back to graphql-core (tests/test_compiled_coverage.py). {HOW}"
    )
    gone = sorted((ANSWERED | set(FALLS_BACK)) - in_schema)
    assert not gone, f"{', '.join(gone)}: no longer in the schema; strike them from the lists"


def test_the_plan_builds_exactly_the_fields_listed_as_answered() -> None:
    built = covered_fields(schema._schema)
    unbuilt = sorted(ANSWERED - built)
    assert not unbuilt, (
        f"{', '.join(unbuilt)}: listed as answered, but the compiled plan has no builder "
        f"for them, so every document selecting them falls back. {HOW}"
    )
    unlisted = sorted(built - ANSWERED)
    assert not unlisted, (
        f"{', '.join(unlisted)}: the compiled plan builds them, but they are not listed as "
        f"answered. {HOW}"
    )


def test_the_root_arguments_taken_only_as_null_are_written_down() -> None:
    assert {name: set(arguments) for name, arguments in NULL_ONLY_ARGUMENTS.items()} == NULL_ONLY
    for name, arguments in NULL_ONLY.items():
        assert arguments <= ROOT_ARGUMENTS[name]
