"""The root types, composed side by side from the groups of fields that define them.

Each group lives with what it serves (`customer_list.py`, `query.py`, `customer_mutations.py`,
`kyc_mutations.py`). A new group of root fields is one more base class here, in the order the
fields should appear in the SDL; a new root (a Subscription) is a class here and one more
argument where `schema/__init__.py` builds the schema.
"""

from __future__ import annotations

import strawberry

from schema.api_keys import ApiKeyMutation, ApiKeyQuery
from schema.customer_list import CustomerListQuery
from schema.customer_mutations import CustomerMutation
from schema.events import EventQuery, EventSubscription
from schema.kyc_mutations import KycMutation
from schema.query import CustomerQuery
from schema.webhooks import WebhookMutation, WebhookQuery


@strawberry.type(
    description="Reads of customers, their verifications and their events, webhooks and API keys."
)
class Query(CustomerListQuery, CustomerQuery, EventQuery, WebhookQuery, ApiKeyQuery):
    pass


@strawberry.type(description="Changes to customers, their verifications, webhooks and API keys.")
class Mutation(CustomerMutation, KycMutation, WebhookMutation, ApiKeyMutation):
    pass


@strawberry.type(description="Live events, pushed over WebSocket (graphql-transport-ws).")
class Subscription(EventSubscription):
    pass
