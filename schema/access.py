"""Which scope every field needs: root fields and the fields that show personal data alike.

One table, keyed by schema coordinate (`Type.field`), so that a field is guarded wherever it
appears: at the root, in a mutation's payload, behind `node`, `_entities`, an alias or a
fragment. Every field of the schema is either in `FIELD_SCOPES` or in `OPEN_FIELDS` (a test
keeps it so), so a new field cannot be forgotten; a field missing from both needs a scope no
key has. The document analysis (`schema/analysis.py`) finds every guarded field an operation
may resolve, and an operation that asks for any its key may not read is refused whole, before
anything runs, with a FORBIDDEN error at each such field.

A field lists the scopes that each allow it (any one of them suffices), so a narrower scope
is added by naming it beside the others: customers:self (a signed-in customer's token) reaches
`customer`, `node`, `updateCustomer` and `startKycVerification`, and through them its own
record only (the resolvers answer null or NOT_FOUND for any other customer: `own_customer`);
lists and everything else are FORBIDDEN to it.

Whose record a scope reaches is not known before the document runs, so the personal fields
(`PERSONAL_FIELDS`) are checked twice: here, statically, for the scope, and as each customer
is shown, for its owner (`shows_personal_data`), wherever the customer appears: a root field,
a mutation's payload, an event or a webhook delivery. A scope beside customers:self widens
only what it grants itself: customers:write lets a token change any customer, but the
payload shows another customer's personal data only to a token that may read it
(customers:read). Both executors ask `shows_personal_data`: the resolvers (schema/types.py)
refuse the field with FORBIDDEN, the compiled path leaves such a request to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from graphql import FieldNode, GraphQLError

from db.keys import Principal, Scope

FORBIDDEN = "FORBIDDEN"

READ = frozenset({Scope.CUSTOMERS_READ})
WRITE = frozenset({Scope.CUSTOMERS_WRITE})
# Where customers:self reaches its own record alone, the resolvers seeing to the "own".
READ_OR_SELF = READ | {Scope.CUSTOMERS_SELF}
WRITE_OR_SELF = WRITE | {Scope.CUSTOMERS_SELF}

# A customer's personal data: its contact data, its verification history and where its
# verification stands. customers:read shows any customer's; customers:self its own alone.
PERSONAL_FIELDS = frozenset(
    {
        "Customer.data",
        "Customer.kycVerifications",
        "Customer.kycStatus",
        *(
            f"CustomerData.{name}"
            for name in (
                "email", "phone", "firstName", "lastName", "street", "street2", "state", "city",
                "zip", "country",
            )
        ),
    }
)  # fmt: skip

FIELD_SCOPES: Mapping[str, frozenset[Scope]] = {
    # Reads.
    "Query.node": READ_OR_SELF,
    "Query.customer": READ_OR_SELF,
    "Query.customers": READ,
    # Federation: _entities hands out customers by key, and the SDL maps the whole API.
    "Query._entities": READ,
    "Query._service": READ,
    # Changes.
    "Mutation.createCustomer": WRITE,
    "Mutation.updateCustomer": WRITE_OR_SELF,
    "Mutation.deleteCustomer": WRITE,
    "Mutation.startKycVerification": WRITE_OR_SELF,
    "Mutation.recordKycResult": frozenset({Scope.KYC_PROVIDER}),
    "Mutation.reviewKycVerification": frozenset({Scope.KYC_REVIEW}),
    # Events (the feed and the subscription) and webhooks.
    "Query.customerEvents": READ,
    "Subscription.customerEvents": READ,
    "Query.webhookEndpoints": frozenset({Scope.WEBHOOKS_MANAGE}),
    "Mutation.createWebhookEndpoint": frozenset({Scope.WEBHOOKS_MANAGE}),
    "Mutation.updateWebhookEndpoint": frozenset({Scope.WEBHOOKS_MANAGE}),
    "Mutation.deleteWebhookEndpoint": frozenset({Scope.WEBHOOKS_MANAGE}),
    # API keys: a key made here holds only scopes its maker holds (db/keys.py).
    "Query.apiKeys": frozenset({Scope.KEYS_MANAGE}),
    "Mutation.createApiKey": frozenset({Scope.KEYS_MANAGE}),
    "Mutation.revokeApiKey": frozenset({Scope.KEYS_MANAGE}),
    # Personal data, wherever a customer shows up (a mutation's payload included).
    **dict.fromkeys(PERSONAL_FIELDS, READ_OR_SELF),
}

# Fields that show no personal data: what a mutation says about its own outcome (the ids of
# what it touched, the verification it moved, its user errors), and the plumbing of pages.
# Introspection (`__schema`, `__type`, `__typename` and the `__` types) describes the schema,
# not the data: any valid key may use it.
OPEN_FIELDS = frozenset(
    {
        "Node.id",
        "Customer.id",
        "Customer.externalCustomerId",
        "Customer.createdAt",
        "Customer.updatedAt",
        "KycVerification.id",
        "KycVerification.type",
        "KycVerification.status",
        "KycVerification.createdAt",
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
        "UserError.field",
        "UserError.message",
        "UserError.code",
        "UserWarning.field",
        "UserWarning.message",
        "UserWarning.code",
        "_Service.sdl",
        # Events hold no personal data (a customer's values are behind CustomerEvent.customer,
        # guarded as above), and webhooks are reachable only through webhooks:manage roots.
        "CustomerEvent.id",
        "CustomerEvent.cursor",
        "CustomerEvent.type",
        "CustomerEvent.externalCustomerId",
        "CustomerEvent.customer",
        "CustomerEvent.verification",
        "CustomerEvent.status",
        "CustomerEvent.previousStatus",
        "CustomerEvent.changedFields",
        "CustomerEvent.actor",
        "CustomerEvent.occurredAt",
        "CustomerEventEdge.cursor",
        "CustomerEventEdge.node",
        "CustomerEventConnection.edges",
        "CustomerEventConnection.nodes",
        "CustomerEventConnection.pageInfo",
        "WebhookEndpoint.id",
        "WebhookEndpoint.url",
        "WebhookEndpoint.eventTypes",
        "WebhookEndpoint.enabled",
        "WebhookEndpoint.createdAt",
        "WebhookEndpoint.deliveries",
        "WebhookDelivery.id",
        "WebhookDelivery.event",
        "WebhookDelivery.status",
        "WebhookDelivery.attempts",
        "WebhookDelivery.lastResponseStatus",
        "WebhookDelivery.lastError",
        "WebhookDelivery.nextAttemptAt",
        "WebhookDelivery.createdAt",
        "WebhookDelivery.deliveredAt",
        "WebhookDeliveryEdge.cursor",
        "WebhookDeliveryEdge.node",
        "WebhookDeliveryConnection.edges",
        "WebhookDeliveryConnection.nodes",
        "WebhookDeliveryConnection.pageInfo",
        "CreateWebhookEndpointPayload.endpoint",
        "CreateWebhookEndpointPayload.secret",
        "CreateWebhookEndpointPayload.userErrors",
        "WebhookEndpointPayload.endpoint",
        "WebhookEndpointPayload.userErrors",
        "DeleteWebhookEndpointPayload.deletedId",
        "DeleteWebhookEndpointPayload.userErrors",
        # API keys are reachable only through keys:manage roots; no field holds a secret but
        # createApiKey's payload, which only its maker sees.
        *(
            f"ApiKey.{name}"
            for name in (
                "name",
                "prefix",
                "scopes",
                "createdAt",
                "createdBy",
                "lastUsedAt",
                "revokedAt",
                "revokedBy",
                "maxCost",
                "restoreRate",
            )
        ),
        "ApiKeyEdge.cursor",
        "ApiKeyEdge.node",
        "ApiKeyConnection.edges",
        "ApiKeyConnection.nodes",
        "ApiKeyConnection.pageInfo",
        "CreateApiKeyPayload.apiKey",
        "CreateApiKeyPayload.secret",
        "CreateApiKeyPayload.userErrors",
        "RevokeApiKeyPayload.apiKey",
        "RevokeApiKeyPayload.userErrors",
    }
)

NO_SCOPE: frozenset[Scope] = frozenset()  # what an unlisted field needs: a scope no key has


def own_customer(principal: Principal | None, needed: Scope) -> str | None:
    """The one externalCustomerId a principal may touch where it lacks `needed` and acts
    through customers:self; None when it may touch any customer.

    Any other customer is then NOT_FOUND (or null), as if it did not exist, so such a token
    cannot probe which ids exist. A principal with neither scope touches none ("")."""
    if principal is not None and needed in principal.scopes:
        return None
    return (principal.customer if principal is not None else None) or ""


def shows_personal_data(principal: Principal | None, external_customer_id: str | None) -> bool:
    """Whether the personal fields of this customer may be shown to the principal: any
    customer's with customers:read, else its own customer's alone (customers:self). None
    stands for a customer not known yet: shown only to a principal that may read any."""
    return own_customer(principal, Scope.CUSTOMERS_READ) in (None, external_customer_id)


def guard_personal_data(
    principal: Principal | None, external_customer_id: str, coordinate: str
) -> None:
    """Raise FORBIDDEN where `shows_personal_data` says no: the one check that every
    resolver of a personal field makes."""
    if not shows_personal_data(principal, external_customer_id):
        raise GraphQLError(
            f"Your token may not read {coordinate} of this customer: customers:self reaches "
            "its own customer's personal data only, and another's needs customers:read.",
            extensions={"code": FORBIDDEN},
        )


def scopes_of(type_name: str, field_name: str) -> frozenset[Scope] | None:
    """The scopes that each allow a field (any one suffices); None for an open field."""
    if field_name.startswith("__") or type_name.startswith("__"):
        return None
    coordinate = f"{type_name}.{field_name}"
    if coordinate in OPEN_FIELDS:
        return None
    return FIELD_SCOPES.get(coordinate, NO_SCOPE)


def forbidden(
    coordinate: str, needed: Iterable[Scope], node: FieldNode, path: Iterable[str]
) -> GraphQLError:
    """The FORBIDDEN error for a field that the request's key may not read."""
    names = sorted(str(scope) for scope in needed)
    if not names:
        reason = "a scope that no key has"
    elif len(names) == 1:
        reason = f"the {names[0]} scope"
    else:
        reason = "the scope " + " or ".join(names)
    return GraphQLError(
        f"Your API key or token may not use {coordinate}: it needs {reason}.",
        nodes=[node],
        path=list(path),
        extensions={"code": FORBIDDEN},
    )
