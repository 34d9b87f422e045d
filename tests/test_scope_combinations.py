"""Scopes that combine safely: customers:self shows personal data of its own customer alone,
wherever a customer appears in a document, whatever other scopes the token holds.

Every path that reaches `Customer` (root fields, mutation payloads, event and webhook delivery
nodes) is sent with every combination of the scopes, on both executors (the compiled path on
and off). Another customer's personal data (its e-mail here) may show only to a token holding
customers:read; a broader scope beside customers:self widens only what that scope itself grants
(customers:write changes any customer, but its payload keeps another's data to itself).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from db import customers, kyc, webhooks
from db.driver import WriteDriver
from db.engine import Database
from db.models import KycStatus, KycType
from schema import ids
from tests.support.clock import Clock
from tests.support.graphql_client import GraphQLClient
from tests.support.identity import IdentityProvider
from tests.test_webhooks import KEY

SCOPES = (
    "customers:read",
    "customers:write",
    "customers:self",
    "kyc:provider",
    "kyc:review",
    "webhooks:manage",
)
COMBINATIONS = [
    combination
    for size in range(1, len(SCOPES) + 1)
    for combination in itertools.combinations(SCOPES, size)
]
OWN = "own-1"
VICTIM = "victim-1"
VICTIM_EMAIL = f"{VICTIM}@example.com"
# What each path selects of a customer: every kind of personal field.
PERSONAL = "externalCustomerId data { email phone } kycStatus kycVerifications { id status }"


# Whose data a scope reaches does not depend on the database engine: SQLite proves it.
pytestmark = [pytest.mark.sqlite_only, pytest.mark.both_executors]


@pytest.fixture
def setting_overrides(idp: IdentityProvider) -> dict[str, Any]:
    return {
        **idp.settings(),
        "webhook_secret_key": KEY,
        "webhook_allow_private_targets": True,
    }


@dataclass
class Target:
    """A customer a path shows, and the request that shows it."""

    email: str
    query: str
    variables: dict[str, Any]


@dataclass
class Seeds:
    db: Database
    clock: Clock
    made: int = 0

    async def customer(self, *, verification: KycStatus | None = None) -> tuple[str, str, int]:
        """A new customer (its id, e-mail and primary key), its verification at this status."""
        self.made += 1
        external_id = f"other-{self.made}"
        email = f"{external_id}@example.com"
        now = self.clock()
        async with self.db.write() as session:
            driver = await WriteDriver.of(session)
            outcome = await customers.create_customer(
                driver, external_id, {"email": email, "phone": "+12015550123"}, now=now, who="test"
            )
            assert outcome.customer is not None
            assert outcome.customer.id is not None
            key = outcome.customer.id
            if verification is not None:
                started = await kyc.start_verification(
                    session, external_id, KycType.PROOF_OF_ID, now, who="test"
                )
                assert started.verification is not None
                assert started.verification.id is not None
                key = started.verification.id
                if verification is not KycStatus.PENDING:
                    await kyc.move_verification(
                        session, key, verification, kyc.Actor.PROVIDER, now, who="test"
                    )
        return external_id, email, key


async def one_customer(seeds: Seeds, victim_id: str) -> Target:
    query = f"query($id: String!) {{ customer(externalCustomerId: $id) {{ {PERSONAL} }} }}"
    return Target(VICTIM_EMAIL, query, {"id": VICTIM})


async def node(seeds: Seeds, victim_id: str) -> Target:
    query = f"query($id: ID!) {{ node(id: $id) {{ ... on Customer {{ {PERSONAL} }} }} }}"
    return Target(VICTIM_EMAIL, query, {"id": victim_id})


async def page(seeds: Seeds, victim_id: str) -> Target:
    return Target(VICTIM_EMAIL, f"{{ customers(first: 50) {{ nodes {{ {PERSONAL} }} }} }}", {})


async def entities(seeds: Seeds, victim_id: str) -> Target:
    query = (
        "query($r: [_Any!]!) { _entities(representations: $r) "
        f"{{ ... on Customer {{ {PERSONAL} }} }} }}"
    )
    representation = {"__typename": "Customer", "externalCustomerId": VICTIM}
    return Target(VICTIM_EMAIL, query, {"r": [representation]})


async def events(seeds: Seeds, victim_id: str) -> Target:
    query = f"{{ customerEvents(first: 100) {{ nodes {{ customer {{ {PERSONAL} }} }} }} }}"
    return Target(VICTIM_EMAIL, query, {})


async def deliveries(seeds: Seeds, victim_id: str) -> Target:
    query = (
        "{ webhookEndpoints { deliveries(first: 100) { nodes { event "
        f"{{ customer {{ {PERSONAL} }} }} }} }} }} }}"
    )
    return Target(VICTIM_EMAIL, query, {})


def payload(mutation: str, input_: str) -> str:
    return (
        f"mutation($input: {input_}!) {{ {mutation}(input: $input) "
        f"{{ customer {{ {PERSONAL} }} userErrors {{ code }} }} }}"
    )


async def create(seeds: Seeds, victim_id: str) -> Target:
    seeds.made += 1
    external_id = f"made-{seeds.made}"
    email = f"{external_id}@example.com"
    input_ = {"externalCustomerId": external_id, "data": {"email": email}}
    return Target(email, payload("createCustomer", "CreateCustomerInput"), {"input": input_})


async def update(seeds: Seeds, victim_id: str) -> Target:
    input_ = {"externalCustomerId": VICTIM, "data": {}}
    return Target(VICTIM_EMAIL, payload("updateCustomer", "UpdateCustomerInput"), {"input": input_})


async def start(seeds: Seeds, victim_id: str) -> Target:
    query = payload("startKycVerification", "StartKycVerificationInput")
    return Target(VICTIM_EMAIL, query, {"input": {"externalCustomerId": VICTIM}})


async def record(seeds: Seeds, victim_id: str) -> Target:
    _, email, key = await seeds.customer(verification=KycStatus.PENDING)
    input_ = {"verificationId": ids.encode("KycVerification", key), "status": "UNDER_REVIEW"}
    return Target(email, payload("recordKycResult", "RecordKycResultInput"), {"input": input_})


async def review(seeds: Seeds, victim_id: str) -> Target:
    _, email, key = await seeds.customer(verification=KycStatus.UNDER_REVIEW)
    input_ = {"verificationId": ids.encode("KycVerification", key), "decision": "APPROVE"}
    query = payload("reviewKycVerification", "ReviewKycVerificationInput")
    return Target(email, query, {"input": input_})


Path = Callable[[Seeds, str], Awaitable[Target]]
# Every path to a customer, and the scope that reaches another customer through it: with that
# scope and customers:read, the customer's personal data shows.
PATHS: dict[str, tuple[Path, str]] = {
    "Query.customer": (one_customer, "customers:read"),
    "Query.node": (node, "customers:read"),
    "Query.customers": (page, "customers:read"),
    "Query._entities": (entities, "customers:read"),
    "Query.customerEvents": (events, "customers:read"),
    "Query.webhookEndpoints": (deliveries, "webhooks:manage"),
    "Mutation.createCustomer": (create, "customers:write"),
    "Mutation.updateCustomer": (update, "customers:write"),
    "Mutation.startKycVerification": (start, "customers:write"),
    "Mutation.recordKycResult": (record, "kyc:provider"),
    "Mutation.reviewKycVerification": (review, "kyc:review"),
}


@pytest.fixture
async def victim_id(gql: GraphQLClient, db: Database, clock: Clock) -> str:
    """The token's own customer, and another with a verification, seen by a webhook."""
    endpoint = await gql.run("create_webhook_endpoint", input={"url": "http://127.0.0.1:9/"})
    assert endpoint["createWebhookEndpoint"]["userErrors"] == []
    await gql.create(OWN, phone="+12015550123")
    victim = await gql.create(VICTIM, phone="+12015550123")
    await gql.start_kyc(VICTIM)
    async with db.write() as session:
        assert await webhooks.enqueue(session, clock()) > 0
    victim_id: str = victim["customer"]["id"]
    return victim_id


@pytest.mark.parametrize("path", PATHS)
async def test_another_customers_personal_data_shows_only_with_customers_read(
    path: str,
    victim_id: str,
    anonymous: httpx.AsyncClient,
    idp: IdentityProvider,
    db: Database,
    clock: Clock,
) -> None:
    make, reaching = PATHS[path]
    seeds = Seeds(db, clock)
    leaks, hidden = [], []
    for scopes in COMBINATIONS:
        target = await make(seeds, victim_id)
        token = idp.token(sub="ann", scope=" ".join(scopes), external_customer_id=OWN)
        response = await anonymous.post(
            "/graphql",
            json={"query": target.query, "variables": target.variables},
            headers={"authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        shown = target.email in response.text
        if shown and "customers:read" not in scopes:
            leaks.append((scopes, response.json()))
        if not shown and {"customers:read", reaching} <= set(scopes):
            hidden.append((scopes, response.json()))
    assert leaks == [], f"another customer's personal data shown without customers:read: {leaks}"
    # The documents do reach the data: a token that may read it sees it.
    assert hidden == []


async def test_a_payload_refuses_another_customers_data_and_the_write_is_made(
    victim_id: str, anonymous: httpx.AsyncClient, idp: IdentityProvider, gql: GraphQLClient
) -> None:
    """customers:write changes any customer; beside customers:self, its payload shows the
    fields that are no one's personal data, and refuses the others with FORBIDDEN."""
    token = idp.token(sub="ann", scope="customers:self customers:write", external_customer_id=OWN)
    query = (
        "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) "
        "{ customer { externalCustomerId data { city } } userErrors { code } } }"
    )
    input_ = {"externalCustomerId": VICTIM, "data": {"city": "Newark"}}
    response = await anonymous.post(
        "/graphql",
        json={"query": query, "variables": {"input": input_}},
        headers={"authorization": f"Bearer {token}"},
    )
    body = response.json()
    assert body["data"] == {"updateCustomer": {"customer": None, "userErrors": []}}
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["updateCustomer", "customer", "data"], "FORBIDDEN")
    ]
    written = await gql.customer(VICTIM)
    assert written is not None
    assert written["data"]["city"] == "Newark"
    # Its own customer's data it sees, through the same payload.
    own = await anonymous.post(
        "/graphql",
        json={"query": query, "variables": {"input": {**input_, "externalCustomerId": OWN}}},
        headers={"authorization": f"Bearer {token}"},
    )
    assert own.json()["data"] == {
        "updateCustomer": {
            "customer": {"externalCustomerId": OWN, "data": {"city": "Newark"}},
            "userErrors": [],
        }
    }


async def test_customers_self_alone_gets_no_other_record(
    victim_id: str, anonymous: httpx.AsyncClient, idp: IdentityProvider, gql: GraphQLClient
) -> None:
    """Another customer's record, not only its personal fields, is null to customers:self:
    as if it did not exist (its id and externalCustomerId included)."""
    started = await gql.start_kyc(VICTIM)
    token = idp.token(sub="ann", scope="customers:self", external_customer_id=OWN)
    query = """
    query($external: String!, $customer: ID!, $verification: ID!) {
      customer(externalCustomerId: $external) { id externalCustomerId }
      byId: node(id: $customer) { id ... on Customer { externalCustomerId } }
      verification: node(id: $verification) { id }
    }
    """
    variables = {
        "external": VICTIM,
        "customer": victim_id,
        "verification": started["verification"]["id"],
    }
    response = await anonymous.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"},
    )
    body = response.json()
    assert body["data"] == {"customer": None, "byId": None, "verification": None}, body
    assert "errors" not in body
