"""The compiled path answers exactly as graphql-core does: same status, headers and bytes.

Two apps run side by side, one with COMPILED_PATH on and one with it off, and every request
goes to both: the answers must be identical, byte for byte, whatever the document (one the
compiled path covers, one it leaves to graphql-core, one that is refused). The requests are
the committed example operations, with variables that find data, find none, or are refused,
and thousands of documents that hypothesis makes up over the customer types
(tests/support/documents.py), sent now and then with another credential (customers' tokens,
some holding customers:self beside a write scope). Queries go to two apps over one database;
mutations, which change it, go to two apps over two copies of it, seeded alike (the seeding
is compared too), in the production and the sandbox environment.

COMPILED_EXAMPLES_SQLITE and COMPILED_EXAMPLES_POSTGRESQL set how many documents the property
test makes up on each backend (2,000 and 300 by default); COMPILED_WRITES_SQLITE and
COMPILED_WRITES_POSTGRESQL how many writes the other one makes up (300 and 100).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from starlette.applications import Starlette

from db import keys
from db.rules import Environment
from schema import ids
from server import Settings, create_app
from tests.support.clock import Clock
from tests.support.databases import TEST_API_KEY, Databases, add_key
from tests.support.documents import Catalog, Request, global_id, requests, writes
from tests.support.graphql_client import GraphQLClient, operation
from tests.support.identity import IdentityProvider
from tests.support.paths import OPERATIONS
from tests.test_customers_api import FULL

EXAMPLES = {
    "sqlite": int(os.environ.get("COMPILED_EXAMPLES_SQLITE", "2000")),
    "postgresql": int(os.environ.get("COMPILED_EXAMPLES_POSTGRESQL", "300")),
}
# Made-up writes: each changes both copies of the database, and is followed by reading both.
WRITE_EXAMPLES = {
    "sqlite": int(os.environ.get("COMPILED_WRITES_SQLITE", "300")),
    "postgresql": int(os.environ.get("COMPILED_WRITES_POSTGRESQL", "100")),
}
# Both apps sign cursors with this, also when they serve two copies of the database (each
# copy would otherwise make a secret of its own on the first start).
CURSOR_SECRET = "test-compiled-cursor-secret"
TTL = timedelta(hours=24)  # KYC_PENDING_TTL_SECONDS's default
# Between two customers: not a whole millisecond, so some share the millisecond they show.
STEP = timedelta(microseconds=1_499)
# Headers that differ between any two answers: the request id is made up per request.
UNCOMPARED = frozenset({"x-request-id"})


# A key that may read no customer: every customer field is FORBIDDEN to it.
NARROW_KEY = keys.new_key()
# The key that seeds and looks up what a test needs, on one app only: its requests draw from
# a bucket of their own, so the test key's buckets on the two apps stay alike, and with them
# every answer's extensions.cost.throttleStatus.
SETUP_KEY = keys.new_key()


@pytest.fixture
def setting_overrides(idp: IdentityProvider) -> dict[str, Any]:
    return {**idp.settings(), "cursor_secret": CURSOR_SECRET}


def credentials(idp: IdentityProvider) -> tuple[tuple[str, str], ...]:
    """Who else sends requests: (what it is, its Authorization header). A customer's token
    reads its own record alone; the narrow key, no customer at all. The tokens last an hour,
    long enough for hypothesis to shrink a failure."""
    hour = int(time.time()) + 3600
    return tuple(
        (name, f"Bearer {credential}")
        for name, credential in [
            (
                "c-1's token",
                idp.token(scope="customers:self", external_customer_id="c-1", exp=hour),
            ),
            (
                f"{UNICODE_ID}'s token",
                idp.token(scope="customers:self", external_customer_id=UNICODE_ID, exp=hour),
            ),
            ("a reader's token", idp.token(scope="customers:read", exp=hour)),
            ("a key with kyc:provider only", NARROW_KEY),
        ]
    )


def mixed_credentials(idp: IdentityProvider) -> tuple[tuple[str, str], ...]:
    """Customers' tokens that hold customers:self beside a write scope: what each may read and
    change is decided the same way on both paths."""
    hour = int(time.time()) + 3600
    return tuple(
        (
            f"{who}'s token with {scope}",
            f"Bearer {idp.token(scope=scope, external_customer_id=who, exp=hour)}",
        )
        for who, scope in [
            ("c-1", "customers:self customers:write"),
            ("c-2", "customers:self kyc:provider"),
            (UNICODE_ID, "customers:self customers:write kyc:review"),
        ]
    )


# The apps.


@dataclass
class Side:
    """One app, started, and a client of it that sends the test key."""

    app: Starlette
    http: httpx.AsyncClient
    setup: GraphQLClient  # with SETUP_KEY

    @property
    def compiled_answers(self) -> int:
        answers: int = self.app.state.view.compiled_answers
        return answers


@asynccontextmanager
async def serving(settings: Settings, clock: Clock) -> AsyncIterator[Side]:
    app = create_app(settings, clock)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"authorization": f"Bearer {TEST_API_KEY}"}
        setup = {"authorization": f"Bearer {SETUP_KEY}"}
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://test", headers=headers
            ) as client,
            httpx.AsyncClient(transport=transport, base_url="http://test", headers=setup) as other,
        ):
            yield Side(app, client, GraphQLClient(other))


@dataclass
class Pair:
    """The app with the compiled path and the app without it."""

    compiled: Side
    general: Side

    async def compare(self, request: Request) -> httpx.Response:
        """Send the request to both; their answers must be the same. Returns the answer."""
        compiled, general = await asyncio.gather(
            request.send(self.compiled.http), request.send(self.general.http)
        )
        assert_same(request, compiled, general)
        return general


async def start_pair(
    stack: AsyncExitStack, settings: Settings, clock: Clock, general_url: str | None = None
) -> Pair:
    """Both apps, stopped when the stack closes; the general one over `general_url` if given.
    The database (each, if two) gets the narrow key."""
    general: dict[str, Any] = {"compiled_path": False}
    if general_url is not None:
        general["database_url"] = general_url
    pair = Pair(
        await stack.enter_async_context(
            serving(settings.model_copy(update={"compiled_path": True}), clock)
        ),
        await stack.enter_async_context(serving(settings.model_copy(update=general), clock)),
    )
    for side in (pair.compiled, pair.general) if general_url else (pair.general,):
        await add_key(side.app.state.db, "narrow", NARROW_KEY, [keys.Scope.KYC_PROVIDER])
        await add_key(side.app.state.db, "setup", SETUP_KEY, keys.ALL_SCOPES)
    return pair


@pytest.fixture
async def pair(settings: Settings, clock: Clock) -> AsyncIterator[Pair]:
    """The two apps over the test's one database."""
    async with AsyncExitStack() as stack:
        yield await start_pair(stack, settings, clock)


@pytest.fixture
def twin_database_url(databases: Databases, backend: str) -> Iterator[str]:
    """A second database, made like the test's own."""
    url = databases.url_for(backend)
    yield url
    databases.drop(url)


@pytest.fixture
async def twins(settings: Settings, clock: Clock, twin_database_url: str) -> AsyncIterator[Pair]:
    """The two apps, each over a database of its own."""
    async with AsyncExitStack() as stack:
        yield await start_pair(stack, settings, clock, twin_database_url)


# Comparing answers.


def shown(response: httpx.Response) -> str:
    headers = {k: v for k, v in response.headers.items() if k not in UNCOMPARED}
    body = response.content.decode(errors="replace")
    return f"{response.status_code} {headers}\n{body}"


def difference(compiled: bytes, general: bytes) -> str:
    """Where two bodies differ: a diff of their JSON, or the first byte that differs."""

    def lines(body: bytes) -> list[str]:
        try:
            return json.dumps(json.loads(body), indent=1, ensure_ascii=False).splitlines()
        except ValueError:
            return body.decode(errors="replace").splitlines()

    diff = list(
        difflib.unified_diff(
            lines(compiled), lines(general), "compiled", "graphql-core", lineterm="", n=2
        )
    )
    if diff:
        return "\n".join(diff[:80])
    at = next(
        (i for i, (a, b) in enumerate(zip(compiled, general, strict=False)) if a != b),
        min(len(compiled), len(general)),
    )
    return (
        f"the same JSON in different bytes, from byte {at}: "
        f"{compiled[at : at + 40]!r} against {general[at : at + 40]!r}"
    )


def assert_same(request: Request, compiled: httpx.Response, general: httpx.Response) -> None:
    """The two answers must be indistinguishable (but for the request id)."""

    def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [(k, v) for k, v in response.headers.multi_items() if k not in UNCOMPARED]
        return response.status_code, headers, response.content

    if answer(compiled) != answer(general):
        raise AssertionError(
            "The compiled path's answer differs from graphql-core's.\n"
            f"{request}\n"
            f"--- compiled path's answer\n{shown(compiled)}\n"
            f"--- graphql-core's answer\n{shown(general)}\n"
            f"--- difference\n{difference(compiled.content, general.content)}"
        )


class BothClient(GraphQLClient):
    """GraphQLClient over both apps: each request goes to both, and their answers must be the
    same (for seeding two copies of the database alike, comparing as it goes)."""

    def __init__(self, pair: Pair) -> None:
        super().__init__(pair.general.http)
        self.pair = pair

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return await self.pair.compare(Request(query, variables))


# The data.


@dataclass
class Seeded:
    """What the seeding made: global ids by externalCustomerId, and the rest."""

    customers: dict[str, str] = field(default_factory=dict)
    verifications: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    instants: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # the deleted customer's and verification's


UNICODE_ID = "zoë-😀-ü"
GB = {
    "email": "FIVE@EXAMPLE.CO.UK",
    "phone": "+44 7400 123456",
    "country": "gb",
    "zip": "SW1A 1AA",
    "city": "London",
}
UNICODE = {
    "email": "zoë@example.org",
    "firstName": "Zoë",
    "lastName": "Ñúñez\u200dŁ",  # with a zero-width joiner
    "street": 'Flat "B" \\ back',
    "street2": "</script><!-- \u2028 \u2029 ☃",  # JavaScript's line separators
    "city": "São Paulo",
    "zip": "01310-100",
    "country": "br",
}


async def seed(gql: GraphQLClient, clock: Clock) -> Seeded:
    """A dozen customers through the API: full and bare records, unicode, ties in createdAt,
    and 0, 1 or 3 verifications in every status (one PENDING so old that it shows EXPIRED)."""
    seeded = Seeded()

    async def create(external_id: str, data: dict[str, Any], step: timedelta = STEP) -> None:
        payload = await gql.create(external_id, **data)
        assert payload["userErrors"] == [], payload
        customer = payload["customer"]
        seeded.customers[external_id] = customer["id"]
        seeded.emails.append(customer["data"]["email"])
        seeded.instants.append(customer["createdAt"])
        clock.advance(step)

    async def verify(external_id: str, *steps: tuple[str, str]) -> str:
        started = await gql.start_kyc(external_id)
        assert started["userErrors"] == [], started
        verification_id: str = started["verification"]["id"]
        seeded.verifications.append(verification_id)
        for kind, value in steps:
            if kind == "record":
                payload = await gql.record_kyc(verification_id, value)
            else:
                payload = await gql.review_kyc(verification_id, value)
            assert payload["userErrors"] == [], payload
        clock.advance(STEP)
        return verification_id

    await create("c-1", FULL)
    await create("c-2", {"email": "Bare@Example.com"})  # every optional field null
    await create(UNICODE_ID, UNICODE)
    await verify(UNICODE_ID, ("record", "REJECTED"))
    await verify(UNICODE_ID, ("record", "UNDER_REVIEW"), ("review", "REJECT"))
    await create("c-4", {"email": "four@example.com", "firstName": "ann"})
    await verify("c-4")  # PENDING: past the time to live below, it shows as EXPIRED
    await create("C-5", GB)
    await verify("C-5", ("record", "VERIFIED"))
    await create("c-6", {"email": "six@example.com", "lastName": "O'Brien", "country": "DE"})
    await verify("c-6", ("record", "UNDER_REVIEW"))
    await create("c-7", {"email": "seven@example.com", "firstName": "Ann", "lastName": "Lee"})
    await verify("c-7", ("record", "UNDER_REVIEW"), ("review", "APPROVE"))
    await create("c-8", {"email": "eight@example.com"})  # deleted at the end
    seeded.deleted = [seeded.customers.pop("c-8"), await verify("c-8")]
    seeded.emails.remove("eight@example.com")
    await create("c-9", {"email": "nine@example.com", "phone": "+12015550199", "city": "Boston"})
    for n, country in enumerate(["US", None, "de", "US"], 1):
        data = {"email": f"T{n}@example.com", "lastName": "Lee", "country": country}
        if n == 1:
            data["state"] = "ca"
        # Created in the same microsecond: ties in every order by time.
        await create(f"t-{n}", data, step=timedelta(0))
    clock.advance(TTL + timedelta(hours=1))
    await verify(UNICODE_ID)  # a third verification, PENDING and fresh
    updated = await gql.update("c-9", city="Zürich", phone=None)
    assert updated["userErrors"] == [], updated
    # Deleted last: SQLite gives the largest key to the next row again (its tables have no
    # AUTOINCREMENT), and the ids of the deleted must stay dangling.
    deleted = await gql.run("delete_customer", input={"externalCustomerId": "c-8"})
    assert deleted["deleteCustomer"]["userErrors"] == []
    clock.advance(timedelta(minutes=5, microseconds=501))
    return seeded


# A cursor is signed for its order: those of other orders are refused.
CURSOR_ORDERS = [
    None,
    {"field": "EXTERNAL_CUSTOMER_ID", "direction": "ASC"},
    {"field": "EMAIL", "direction": "DESC"},
]


async def catalog_of(
    seeded: Seeded, pair: Pair, credentials: tuple[tuple[str, str], ...]
) -> Catalog:
    """What the documents of the property test can refer to."""
    cursors: list[str] = []
    for n, order in enumerate(CURSOR_ORDERS):
        page = await pair.general.setup.run("customers", first=100, orderBy=order)
        found = [edge["cursor"] for edge in page["customers"]["edges"]]
        cursors += found if n == 0 else found[:3]
    existing = list(seeded.customers)
    return Catalog(
        external_ids=(*existing, "nobody", "C-1", "c-8", "", " c-1", "c-1\u200b"),
        node_ids=(
            *seeded.customers.values(),
            *seeded.verifications,
            *seeded.deleted,
            global_id("Customer", 999),
            global_id("KycVerification", 999),
            global_id("Customer", 2**31),  # past the largest key: BAD_USER_INPUT
            global_id("WebhookEndpoint", 1),
            global_id("CustomerEvent", 1),
            global_id("Customer", "1x"),
            "bogus",
            "",
        ),
        emails=(*seeded.emails, "ANN.LEE@EXAMPLE.COM", "zoë@EXAMPLE.org", "nobody@example.com"),
        cursors=tuple(cursors),
        instants=(
            *seeded.instants[:4],
            seeded.instants[-1],
            "2025-06-05T06:57:11.152+02:00",
            "2025-06-05T04:57:11Z",
            "2025-06-05",
            "not a date",
        ),
        credentials=credentials,
    )


# The committed example operations.


def operation_type(name: str) -> str:
    text = "\n".join(
        line for line in operation(name).splitlines() if not line.lstrip().startswith("#")
    )
    return text.split()[0]


def example_operations(kind: str) -> set[str]:
    return {p.stem for p in OPERATIONS.glob("*.graphql") if operation_type(p.stem) == kind}


def query_cases(
    seeded: Seeded, cursors: list[str], event_cursors: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    customer_ids = list(seeded.customers.values())
    return [
        *[("customer", {"externalCustomerId": id_}) for id_ in [*seeded.customers, "nobody"]],
        ("customer", {"externalCustomerId": "c-8"}),  # deleted
        ("customers", {}),
        ("customers", {"first": 3, "withTotalCount": True}),
        ("customers", {"first": 3, "after": cursors[2]}),
        ("customers", {"last": 2, "before": cursors[5]}),
        ("customers", {"last": 4}),
        ("customers", {"first": 0}),
        ("customers", {"first": 101}),
        ("customers", {"first": 1, "last": 1}),
        ("customers", {"after": "bogus"}),
        ("customers", {"first": "3"}),
        ("customers", {"filter": {"kycStatus": ["EXPIRED"]}, "withTotalCount": True}),
        ("customers", {"filter": {"kycStatus": ["PENDING", "UNDER_REVIEW"]}}),
        ("customers", {"filter": {"search": "zo"}}),
        ("customers", {"filter": {"search": "ann"}, "orderBy": {"field": "EMAIL"}}),
        ("customers", {"filter": {"country": "us", "hasKycVerification": False}}),
        ("customers", {"filter": {"email": "ann.lee@EXAMPLE.com"}}),
        ("customers", {"filter": {"externalCustomerIds": ["c-1", UNICODE_ID, "nobody"]}}),
        ("customers", {"filter": {"createdAfter": seeded.instants[3]}, "withTotalCount": True}),
        ("customers", {"filter": {"createdBefore": "yesterday"}}),
        ("customers", {"orderBy": {"field": "UPDATED_AT", "direction": "ASC"}, "first": 5}),
        ("customers", {"orderBy": {"field": "EXTERNAL_CUSTOMER_ID"}, "after": cursors[0]}),
        # Each order both ways, backward too; the review queue; filters of every kind.
        ("customers", {"orderBy": {"field": "CREATED_AT", "direction": "ASC"}, "first": 4}),
        ("customers", {"orderBy": {"field": "EMAIL", "direction": "ASC"}, "last": 3}),
        ("customers", {"orderBy": {"field": "EMAIL"}, "first": 5}),
        ("customers", {"orderBy": {"field": "UPDATED_AT"}, "last": 2, "withTotalCount": True}),
        ("customers", {"orderBy": {"field": "EXTERNAL_CUSTOMER_ID", "direction": "DESC"}}),
        ("customers", {"first": 2, "after": cursors[1], "before": cursors[6]}),
        ("customers", {"last": 3, "before": cursors[-1], "filter": {"country": "US"}}),
        ("customers", {"filter": {"kycStatus": ["UNDER_REVIEW"]}, "withTotalCount": True}),
        ("customers", {"filter": {"kycStatus": "EXPIRED"}}),  # one value for a list of one
        ("customers", {"filter": {"kycStatus": []}, "withTotalCount": True}),
        ("customers", {"filter": {"externalCustomerIds": []}}),
        (
            "customers",
            {"filter": {"hasKycVerification": True, "createdBefore": seeded.instants[-1]}},
        ),
        ("customers", {"filter": {"search": "t-", "country": "de"}, "orderBy": {"field": "EMAIL"}}),
        ("customers", {"filter": {"externalCustomerIds": [f"c-{n}" for n in range(101)]}}),
        *[("node", {"id": id_}) for id_ in [*customer_ids, *seeded.verifications]],
        *[("node", {"id": id_}) for id_ in seeded.deleted],
        ("node", {"id": "bogus"}),
        ("node", {"id": global_id("Customer", 2**31)}),
        (
            "entities",
            {
                "representations": [
                    {"__typename": "Customer", "externalCustomerId": "c-1"},
                    {"__typename": "Customer", "id": customer_ids[2]},
                    {"__typename": "Customer", "externalCustomerId": "nobody"},
                ]
            },
        ),
        ("entities", {"representations": [{"__typename": "Nope", "id": "1"}]}),
        ("service", {}),
        ("customer_events", {"first": 5}),
        ("customer_events", {"first": 9, "filter": {"types": ["KYC_VERIFICATION_STARTED"]}}),
        ("customer_events", {"after": "bogus"}),
        ("customer_events", {"first": 3, "after": event_cursors[2]}),
        ("customer_events", {"after": event_cursors[-1]}),  # an empty page ends at `after`
        ("customer_events", {"first": 0}),
        ("customer_events", {"filter": {"externalCustomerId": UNICODE_ID}}),
        ("customer_events", {"filter": {"types": "CUSTOMER_DELETED"}}),
        ("customer_events", {"first": 101}),
        ("customer_events", {"after": cursors[0]}),  # a customer's cursor: another order
        ("webhook_endpoints", {}),
        ("api_keys", {"first": 5}),
    ]


ACCEPT_GRAPHQL = "application/graphql-response+json"
# The example queries the compiled path answers (when graphql-core's answer has no error).
COMPILED_QUERIES = {"customer", "customers", "node", "customer_events"}


async def test_example_queries_answer_alike(
    pair: Pair, clock: Clock, idp: IdentityProvider
) -> None:
    """Each query with the test key (over POST, also asking for GraphQL over HTTP's media
    type, and over GET), and with every other credential: customers' tokens, which read their
    own record alone, a reader's token, and a key that may read no customer."""
    seeded = await seed(pair.general.setup, clock)
    page = await pair.general.setup.run("customers", first=100)
    cursors = [edge["cursor"] for edge in page["customers"]["edges"]]
    feed = await pair.general.setup.run("customer_events", first=100)
    event_cursors = [node["cursor"] for node in feed["customerEvents"]["nodes"]]
    cases = query_cases(seeded, cursors, event_cursors)
    assert {name for name, _ in cases} == example_operations("query")
    others = credentials(idp)
    for name, variables in cases:
        document = operation(name)
        before = pair.compiled.compiled_answers
        answer = await pair.compare(Request(document, variables))
        # Every list's every argument, and the feed: the compiled path answers each case but
        # those graphql-core answers with an error.
        compiled = name in COMPILED_QUERIES and "errors" not in answer.json()
        assert pair.compiled.compiled_answers == before + compiled, (name, variables)
        for method, accept in [("POST", ACCEPT_GRAPHQL), ("GET", None)]:
            await pair.compare(Request(document, variables, method=method, accept=accept))
        for credential in others:
            await pair.compare(Request(document, variables, credential=credential))


def inputs(**fields: Any) -> dict[str, Any]:
    """The variables of a mutation: its one argument, `input`."""
    return {"input": fields}


def compiled_write(name: str, variables: dict[str, Any]) -> bool:
    """Whether the compiled path answers this example write: the customer and KYC writes,
    but a result or review for an id that is no verification's (graphql-core's NOT_FOUND)."""
    if name in ("record_kyc_result", "review_kyc_verification"):
        return ids.decode_as("KycVerification", variables["input"]["verificationId"]) is not None
    return name.endswith("_customer") or name == "start_kyc_verification"


async def test_example_mutations_answer_alike(
    twins: Pair, clock: Clock, idp: IdentityProvider
) -> None:
    """Each mutation runs on both copies of the database, refused ones and ones that change
    it; both copies must answer alike, and read alike afterwards."""
    gql = BothClient(twins)
    seeded = await seed(gql, clock)
    started: list[str] = []  # the id of the verification that a case below starts

    def pending(status: str) -> Callable[[], dict[str, Any]]:
        return lambda: inputs(verificationId=started[0], status=status)

    verifications = seeded.verifications
    full = {**FULL, "email": "m1@example.com"}
    refused = {"email": "nope", "phone": "12", "country": "XX", "state": "ZZ", "zip": "1"}
    endpoint = global_id("WebhookEndpoint", 1)
    cases: list[tuple[str, dict[str, Any] | Callable[[], dict[str, Any]]]] = [
        ("create_customer", inputs(externalCustomerId="m-1", data=full)),
        ("create_customer", inputs(externalCustomerId="m-1", data=full)),  # id and e-mail taken
        ("create_customer", inputs(externalCustomerId="m-2", data=refused)),
        ("create_customer", inputs(externalCustomerId="m 3", data={"email": "m+3@mailinator.com"})),
        ("update_customer", inputs(externalCustomerId="c-2", data={"firstName": "Bo"})),
        ("update_customer", inputs(externalCustomerId="c-1", data={"phone": None})),
        ("update_customer", inputs(externalCustomerId="nobody", data={})),
        ("update_customer", inputs(externalCustomerId="c-1", data={"zip": "1"})),
        ("start_kyc_verification", inputs(externalCustomerId="c-1")),  # a new one
        ("start_kyc_verification", inputs(externalCustomerId="c-6")),  # the active one
        ("start_kyc_verification", inputs(externalCustomerId="C-5")),  # verified already
        ("start_kyc_verification", inputs(externalCustomerId="nobody")),
        ("record_kyc_result", pending("VERIFIED")),
        ("record_kyc_result", pending("REJECTED")),  # it is VERIFIED now
        ("record_kyc_result", inputs(verificationId=verifications[2], status="VERIFIED")),
        ("record_kyc_result", inputs(verificationId="bogus", status="VERIFIED")),
        ("record_kyc_result", inputs(verificationId=seeded.customers["c-1"], status="PENDING")),
        ("review_kyc_verification", inputs(verificationId=verifications[4], decision="APPROVE")),
        ("review_kyc_verification", inputs(verificationId=verifications[4], decision="REJECT")),
        ("review_kyc_verification", inputs(verificationId=seeded.deleted[1], decision="REJECT")),
        ("delete_customer", inputs(externalCustomerId="m-1")),
        ("delete_customer", inputs(externalCustomerId="m-1")),
        ("create_webhook_endpoint", inputs(url="https://example.com/hook")),
        ("create_webhook_endpoint", inputs(url="http://127.0.0.1/hook")),
        ("update_webhook_endpoint", inputs(id=endpoint, enabled=False)),
        ("delete_webhook_endpoint", inputs(id=endpoint)),
        ("delete_webhook_endpoint", inputs(id="bogus")),
        ("revoke_api_key", inputs(name="nobody")),
    ]
    # createApiKey answers a new random secret: no two copies can answer it alike
    # (tests/test_api_keys.py proves it).
    assert {name for name, _ in cases} == example_operations("mutation") - {"create_api_key"}
    listing = operation("customers")
    for name, case in cases:
        variables = case() if callable(case) else case
        before = twins.compiled.compiled_answers
        answer = await twins.compare(Request(operation(name), variables))
        if compiled_write(name, variables):
            assert twins.compiled.compiled_answers == before + 1, (name, variables)
        if name == "start_kyc_verification" and not started:
            started.append(answer.json()["data"]["startKycVerification"]["verification"]["id"])
        # Both copies still hold the same: every customer, and the event feed.
        for request in (
            Request(listing, {"first": 100, "withTotalCount": True}),
            Request(operation("customer_events"), {"first": 100}),
        ):
            await twins.compare(request)
        clock.advance(STEP)
    # A customer's token changes its own record alone; the narrow key may not even ask.
    own, _, _, narrow = credentials(idp)
    for credential, name, variables in [
        (own, "update_customer", inputs(externalCustomerId="c-1", data={"city": "Paris"})),
        (own, "update_customer", inputs(externalCustomerId="c-2", data={"city": "Paris"})),
        (own, "start_kyc_verification", inputs(externalCustomerId="c-1")),
        (own, "delete_customer", inputs(externalCustomerId="c-1")),
        (narrow, "record_kyc_result", inputs(verificationId="bogus", status="VERIFIED")),
    ]:
        await twins.compare(Request(operation(name), variables, credential=credential))
    await twins.compare(Request(listing, {"first": 100}))
    # A mutation over GET is refused alike.
    variables = inputs(externalCustomerId="c-1")
    mutation = Request(operation("delete_customer"), variables, method="GET")
    assert (await twins.compare(mutation)).status_code == 405


# Writes the compiled path answers, written every way a client may write them, and ones it
# must leave to graphql-core: (document, variables, whether the compiled path answers).
WRITES: list[tuple[str, dict[str, Any] | None, bool]] = [
    (  # a literal input with variables in it, aliases, fragments, __typename, conditions
        """
        mutation Made($email: String!, $city: String = "Oslo", $problems: Boolean!) {
          kind: __typename
          made: createCustomer(input: {externalCustomerId: "lit-1",
                                       data: {email: $email, city: $city, firstName: null}}) {
            __typename
            ...Made
            problems: userErrors @include(if: $problems) { __typename code field message }
          }
        }
        fragment Made on CreateCustomerPayload {
          customer { ... on Customer { id kycStatus data { email city firstName } } }
          again: customer @skip(if: $problems) { createdAt updatedAt externalCustomerId }
          warnings { code }
        }
        """,
        {"email": "lit-1@example.com", "problems": False},
        True,
    ),
    (  # the same id again: TAKEN, with the problems shown
        """
        mutation Made($email: String!, $problems: Boolean!) {
          createCustomer(input: {externalCustomerId: "lit-1", data: {email: $email}}) {
            customer { id }
            userErrors @include(if: $problems) { code field message }
          }
        }
        """,
        {"email": "LIT-1@example.com", "problems": True},
        True,
    ),
    (  # a literal patch: null clears, a variable not given leaves the field as it is
        """
        mutation Patch($id: String!, $city: String, $zip: String) {
          updateCustomer(input: {externalCustomerId: $id,
                                 data: {firstName: "Ann", city: $city, zip: $zip}}) {
            ... on UpdateCustomerPayload {
              __typename
              customer { kycStatus data { firstName city zip } updatedAt }
            }
            userErrors { field code }
          }
        }
        """,
        {"id": "c-1", "zip": None},
        True,
    ),
    (  # a patch refused by a rule, through the variables
        operation("update_customer"),
        inputs(externalCustomerId="c-2", data={"email": "not an e-mail", "country": "XX"}),
        True,
    ),
    (  # a delete, literal, aliased, and one of nobody
        """
        mutation Gone($id: String!) {
          gone: deleteCustomer(input: {externalCustomerId: $id}) {
            __typename id: deletedExternalCustomerId userErrors { code message field }
          }
        }
        """,
        {"id": "lit-1"},
        True,
    ),
    (
        """mutation { deleteCustomer(input: {externalCustomerId: "lit-1"}) {
          deletedExternalCustomerId userErrors { code } } }""",
        None,
        True,
    ),
    # graphql-core's: inputs it refuses, two writes, a written customer's verifications.
    (
        operation("create_customer"),
        inputs(externalCustomerId="x-1", data={"email": "x@example.com", "nickname": "X"}),
        False,
    ),
    (operation("create_customer"), inputs(externalCustomerId="x-1", data={"email": 7}), False),
    (operation("create_customer"), inputs(externalCustomerId="x-1"), False),
    (operation("create_customer"), {"input": None}, False),
    (operation("update_customer"), inputs(externalCustomerId=None, data={}), False),
    (
        """
        mutation Two {
          a: createCustomer(input: {externalCustomerId: "two-1", data: {email: "t1@example.com"}}) {
            customer { id }
          }
          b: createCustomer(input: {externalCustomerId: "two-2", data: {email: "t2@example.com"}}) {
            customer { id }
          }
        }
        """,
        None,
        False,
    ),
    (
        """
        mutation { updateCustomer(input: {externalCustomerId: "c-5", data: {city: "Rome"}}) {
          customer { kycStatus kycVerifications { status } } } }
        """,
        None,
        False,
    ),
]


async def test_written_payloads_answer_alike(twins: Pair, clock: Clock) -> None:
    """Writes in literal and variable form, with every kind of selection, and inputs that
    graphql-core refuses: both copies answer alike and hold the same afterwards, and the
    compiled path answers exactly the writes it covers."""
    await seed(BothClient(twins), clock)
    for document, variables, compiled in WRITES:
        before = twins.compiled.compiled_answers
        await twins.compare(Request(document, variables))
        assert twins.compiled.compiled_answers == before + compiled, document
        await twins.compare(Request(operation("customers"), {"first": 100}))
        await twins.compare(Request(operation("customer_events"), {"first": 100}))
        clock.advance(STEP)


# Documents made up by hypothesis.


@dataclass
class Tally:
    """What the property test sent, for its report and its checks."""

    documents: int = 0
    clean: int = 0  # customer-only queries answered 200 without errors
    compiled: int = 0  # made-up writes the compiled path answered
    statuses: dict[int, int] = field(default_factory=dict)

    def count(self, request: Request, response: httpx.Response) -> None:
        self.documents += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        ok = response.status_code == 200 and b'"errors":' not in response.content
        if request.customer_only and ok:
            self.clean += 1


def test_made_up_documents_answer_alike(
    settings: Settings, clock: Clock, backend: str, idp: IdentityProvider, record_property: Any
) -> None:
    """Hypothesis makes up documents; both apps must answer each with the same bytes.

    How hypothesis and asyncio meet here: the test is synchronous and owns its event loop, an
    asyncio.Runner. On that loop it starts both apps and seeds the database, once. Then a
    synchronous @given function, made inside the test once the seeded ids and cursors are
    known, runs each example with `runner.run(...)` on the same loop, where the apps, their
    connection pools and the data live on between examples: an example costs two requests,
    and hypothesis shrinks a failure as usual (the examples only read, so reruns see the same
    data). An async test under @given, which pytest-asyncio runs example by example on its
    loop, would fix the number of examples at import (it differs per backend), could not
    build its strategy from the seeded data, and could not check the apps' counts after the
    last example.
    """
    tally = Tally()
    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        try:
            pair = runner.run(start_pair(stack, settings, clock))
            seeded = runner.run(seed(pair.general.setup, clock))
            catalog = runner.run(
                catalog_of(seeded, pair, (*credentials(idp), *mixed_credentials(idp)))
            )

            async def check(request: Request) -> None:
                tally.count(request, await pair.compare(request))

            @hypothesis_settings(
                max_examples=EXAMPLES[backend],
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],  # a busy machine is slow to make them
            )
            @given(request=requests(catalog))
            def answers_alike(request: Request) -> None:
                runner.run(check(request))

            answers_alike()
            compiled, general = pair.compiled.compiled_answers, pair.general.compiled_answers
        finally:
            runner.run(stack.aclose())
    report = (
        f"{backend}: the compiled path answered {compiled} of {tally.documents} documents; "
        f"{tally.clean} were customer-only queries answered without errors; statuses "
        f"{dict(sorted(tally.statuses.items()))}"
    )
    print(report)
    record_property("compiled_answers", compiled)
    record_property("clean_documents", tally.clean)
    record_property("documents", tally.documents)
    assert general == 0, "the app with COMPILED_PATH off answered from the compiled path"
    # The documents must mostly be ones the compiled path can take, or it is barely tested.
    assert tally.clean >= tally.documents // 4, report
    # Most customer-only documents it can answer are its to answer: node, customer and the
    # default order's pages (filters, other orders and last/before are graphql-core's).
    assert compiled * 3 >= tally.clean, f"the compiled path answered too few. {report}"


@pytest.mark.parametrize("environment", list(Environment), ids=[e.value for e in Environment])
def test_made_up_writes_answer_alike(
    settings: Settings,
    clock: Clock,
    backend: str,
    idp: IdentityProvider,
    twin_database_url: str,
    record_property: Any,
) -> None:
    """Hypothesis makes up customer writes (create, update, delete; the input literal or in
    variables, right or wrong; any selection of the payload), each sent to both apps over
    two copies of the database: the answers must be the same bytes, and the copies must read
    the same afterwards (the customers and the event feed). Run as the property test above
    is, on one event loop; a shrinking replay changes both copies alike too."""
    tally = Tally()
    listing = operation("customers")
    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        try:
            pair = runner.run(start_pair(stack, settings, clock, twin_database_url))
            seeded = runner.run(seed(BothClient(pair), clock))
            catalog = runner.run(
                catalog_of(seeded, pair, (*credentials(idp), *mixed_credentials(idp)))
            )

            async def check(request: Request) -> None:
                before = pair.compiled.compiled_answers
                tally.count(request, await pair.compare(request))
                tally.compiled += pair.compiled.compiled_answers - before
                await pair.compare(Request(listing, {"first": 100}))
                await pair.compare(Request(operation("customer_events"), {"first": 100}))
                clock.advance(STEP)

            @hypothesis_settings(
                max_examples=WRITE_EXAMPLES[backend],
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            )
            @given(request=writes(catalog))
            def answers_alike(request: Request) -> None:
                runner.run(check(request))

            answers_alike()
            general = pair.general.compiled_answers
        finally:
            runner.run(stack.aclose())
    report = (
        f"{backend}: the compiled path answered {tally.compiled} of {tally.documents} made-up "
        f"writes; statuses {dict(sorted(tally.statuses.items()))}"
    )
    print(report)
    record_property("compiled_writes", tally.compiled)
    assert general == 0, "the app with COMPILED_PATH off answered from the compiled path"
    # Writes it leaves to graphql-core: wrong inputs, a customer's verifications in the
    # payload, conditions it does not cover. Most others are its to answer.
    assert tally.compiled * 3 >= tally.documents, report
