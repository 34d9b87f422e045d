"""domain-rules.md row by row through the API, on both executors and both backends.

tests/test_rules.py proves each customer rule on the pure functions; this module proves that
every rule also holds through HTTP, answered by the compiled path and by graphql-core, on SQLite
and on PostgreSQL, for the rows no other two-executor test covered. Each test walks a table
of cases in one app (one request per case, no sleeps), so a mismatch names its case.

Where each rule of ../shared/domain-rules.md is proven through the API on both executors
(A = tests/test_customers_api.py, K = tests/test_kyc.py, E = tests/test_events.py,
R = tests/test_write_races.py (PostgreSQL alone: SQLite writers take the lock before they
check), T = tests/test_tokens.py and S = tests/test_access.py (SQLite alone: scopes and actors
do not depend on the engine), W = tests/test_subscriptions.py (WebSocket, which the compiled
path never answers), here = this module; "new" marks what had no two-executor test before):

Customer
    externalCustomerId REQUIRED, TOO_LONG ("" / blank / 256)      here: REFUSED (new)
    externalCustomerId INVALID (white space, control, format)     A every_problem ("bad id");
                                                                  here: REFUSED (tab, DEL,
                                                                  zero-width, no-break space)
    externalCustomerId trimmed, 255 accepted                      here: ACCEPTED (new)
    externalCustomerId case-sensitive, unique (TAKEN)             A duplicate_id_is_taken,
                                                                  customer_id_is_exact...;
                                                                  here: UNIQUE (trimmed id is
                                                                  TAKEN, other case is not: new)
    externalCustomerId never changes                              A external_id_cannot_be_changed
    email REQUIRED                                                A update_email_cannot_be_cleared
                                                                  (null); here: REFUSED (""/blank
                                                                  on create and update: new)
    email trimmed, domain lower-case                              A create_normalises_and_reads...,
                                                                  update_email_changes_domain_case;
                                                                  here: ACCEPTED (trimmed: new)
    email INVALID_EMAIL                                           A refused_write_writes_nothing;
                                                                  here: REFUSED
    email unique ignoring case (TAKEN)                            A duplicate_email_in_another_case,
                                                                  update_to_another_customers_email;
                                                                  here: UNIQUE (non-ASCII case,
                                                                  padded: new)
    email DISPOSABLE_EMAIL, parent domain too                     A every_problem; here: REFUSED
                                                                  (parent domain: new)
    email EMAIL_PLUS_SUFFIX                                       A every_problem; here: REFUSED
    phone optional, E.164, punctuation ignored, US reading        A create_normalises ("(201)
                                                                  555-0123"); here: ACCEPTED
                                                                  (2015550123, 1 201 555 0123,
                                                                  +44 7400 123456, CA: new)
    phone fewer than 10 digits without + is INVALID_PHONE         here: REFUSED (new)
    phone +15551234567 is INVALID_PHONE                           A every_problem, sandbox;
                                                                  here: REFUSED
    phone PHONE_NOT_MOBILE (fixed, VoIP, toll-free, premium...)   A failing_update_changes_nothing
                                                                  (fixed line); here: REFUSED
                                                                  (VoIP, toll-free, premium: new)
    country INVALID_COUNTRY; stored upper-case                    here: REFUSED (new); A (upper)
    state INVALID_STATE (US or no country), stored upper-case     A every_problem (with US);
                                                                  here: REFUSED (no country,
                                                                  long: new), ACCEPTED (other
                                                                  country: new)
    zip INVALID_ZIP (US: 5 or ZIP+4; others up to 10)             A every_problem,
                                                                  update_checks_the_merged_record;
                                                                  here: REFUSED (11 for GB: new)
    firstName/lastName/city TOO_LONG, INVALID; trimmed            A every_problem (firstName long);
                                                                  here: REFUSED (each field, control
                                                                  characters: new),
                                                                  ACCEPTED (at the limit: new)
    street/street2 TOO_LONG, INVALID                              here: REFUSED, ACCEPTED (new)
    id, firstName, lastName at the limit, folding longer ("ß")    here: FOLDS_LONGER (new; was a
                                                                  server error on PostgreSQL
                                                                  until migration 0011)
    every problem reported together; any error writes nothing     A every_problem,
                                                                  refused_write_writes_nothing;
                                                                  here: each REFUSED case on create
                                                                  and on update (new for update)
    optional blank stored as null                                 A update_blank_clears_field;
                                                                  here: ACCEPTED (on create: new)
    both taken reported                                           A both_taken_are_reported;
                                                                  here: UNIQUE
    TAKEN under races, never a server error                       A concurrent_creates_*;
                                                                  R (PostgreSQL, held row)
    sandbox: disposable / + become warnings, rest applies         A sandbox_creates_with_warnings;
                                                                  here: sandbox test (parent
                                                                  domain, update: new)
KYC
    (none) / REJECTED / EXPIRED / REJECTED_MANUALLY -> PENDING    K start_with_no_history,
                                                                  start_after_a_failed_one
    PENDING / UNDER_REVIEW exists: start returns the active one   K start_returns_the_active_one
    VERIFIED / VERIFIED_MANUALLY: start is INVALID_TRANSITION     K start_when_verified_is_...
    recordKycResult PENDING -> VERIFIED, REJECTED, UNDER_REVIEW   K test_record_result
    reviewKycVerification UNDER_REVIEW -> *_MANUALLY              K test_review
    PENDING past the TTL -> EXPIRED (shown at once, swept once)   K reads_apply_the_ttl...,
                                                                  sweep_expires_old_pending...,
                                                                  two_sweeps_at_once; here: in a
                                                                  page of customers (new)
    anything else INVALID_TRANSITION, changes nothing             K (6 cells); here: every other
                                                                  cell of both mutations, no event
                                                                  (new)
    a transition and its read in one transaction                  K concurrent_results_move_...,
                                                                  concurrent_starts_...
Events
    one event per change, its type and extra fields               E every_change_is_one_event;
                                                                  here: each change (verification
                                                                  shown while it exists: new)
    a mutation that changes nothing writes none                   E (taken, equal patch, active
                                                                  start, refused record); here:
                                                                  every kind of no-op (new:
                                                                  normalised-equal patch, empty
                                                                  patch, NOT_FOUND, refused start,
                                                                  refused review, bad input)
    changedFields in contract order                               E (phone, city); here: all ten,
                                                                  sent in reverse (new)
    actor: key, token subject, system for the expiry              E key:tests, system:expiry-sweep;
                                                                  T token:<issuer>#<sub>
    expiry's occurredAt = createdAt + TTL, written once           E expiry_is_one_event_by_system
    scopes: customerEvents needs customers:read                   S each_scope_allows_its_operations
                                                                  (also webhooks:manage); W (4403)
    beyond this list: no personal data in events                  E every_change (scans the feed)
    one order, never behind a cursor                              E readers_never_see_an_event...
                                                                  (the db layer: no executor)
    retention: an old cursor must resync                          E a_cursor_older_than_retention

The actor is written `key:<name>`, `token:<issuer>#<sub>` and `system:expiry-sweep`, a
documented decision (docs/events-and-webhooks.md) beside the rules' plain "name, subject or
system"; the tests hold the documented form. Likewise a NUL character (a control character
the rules would call INVALID) never reaches the rules: any string holding one is refused
before anything runs, as a BAD_USER_INPUT error naming its place (docs/security.md,
tests/test_hostile_input.py), so the tables here use other control characters.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select
from starlette.applications import Starlette

from db import models
from db.engine import Database
from db.rules import Environment
from server import Settings, expire_kyc
from tests.support.clock import Clock
from tests.support.graphql_client import GraphQLClient, operation

pytestmark = pytest.mark.both_executors

TTL = timedelta(hours=24)
# CustomerData's fields in the contract's order.
CONTRACT_ORDER = [
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
]
Problems = list[tuple[list[str], str]]


def path(name: str) -> list[str]:
    """The input path of a user error about this field."""
    return ["input", name] if name == "externalCustomerId" else ["input", "data", name]


def problems(payload: dict[str, Any]) -> Problems:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


def column(name: str) -> str:
    """The customer table's column for a CustomerData field (firstName -> first_name)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


async def counts(db: Database) -> tuple[int, int]:
    """How many customers and events the database holds."""
    async with db.read() as session:
        customers = await session.scalar(select(func.count()).select_from(models.Customer))
        events = await session.scalar(select(func.count()).select_from(models.CustomerEvent))
    return customers or 0, events or 0


async def stored(db: Database) -> dict[str, dict[str, Any]]:
    """Every customer's stored data (by GraphQL field name) and updatedAt, by its id."""
    async with db.read() as session:
        rows = list(await session.scalars(select(models.Customer)))
    return {
        row.external_customer_id: {
            **{name: getattr(row, column(name)) for name in CONTRACT_ORDER},
            "updated_at": row.updated_at,
        }
        for row in rows
    }


@pytest.fixture(autouse=True)
async def compiled_answers_every_write(
    app: Starlette, http: httpx.AsyncClient, compiled_path: bool
) -> AsyncIterator[None]:
    """With the compiled path on, it answered every request of the test (the event feed's
    too): so each case here ran on both executors, not on graphql-core twice."""
    sent: list[bytes] = []

    async def count(outgoing: httpx.Request) -> None:
        sent.append(outgoing.content)

    http.event_hooks["request"].append(count)
    yield
    answered: int = app.state.view.compiled_answers
    assert answered == (len(sent) if compiled_path else 0)


# -- customer rules: refused -------------------------------------------------------------------

# (case, the input's fields beyond a fresh id and e-mail, the user errors: field and code). The
# data cases run through createCustomer and again through updateCustomer of a stored customer
# with no optional field set; the id cases through createCustomer only.
REFUSED: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("id empty", {"externalCustomerId": ""}, [("externalCustomerId", "REQUIRED")]),
    ("id blank", {"externalCustomerId": " \t "}, [("externalCustomerId", "REQUIRED")]),
    ("id 256", {"externalCustomerId": "x" * 256}, [("externalCustomerId", "TOO_LONG")]),
    ("id tab", {"externalCustomerId": "a\tb"}, [("externalCustomerId", "INVALID")]),
    ("id DEL", {"externalCustomerId": "a\x7fb"}, [("externalCustomerId", "INVALID")]),
    ("id zero-width", {"externalCustomerId": "a\u200bb"}, [("externalCustomerId", "INVALID")]),
    ("id no-break", {"externalCustomerId": "a\u00a0b"}, [("externalCustomerId", "INVALID")]),
    ("email empty", {"email": ""}, [("email", "REQUIRED")]),
    ("email blank", {"email": "   "}, [("email", "REQUIRED")]),
    ("email syntax", {"email": "ann@@example.com"}, [("email", "INVALID_EMAIL")]),
    ("email no dot", {"email": "ann@localhost"}, [("email", "INVALID_EMAIL")]),
    ("disposable", {"email": "ann@mailinator.com"}, [("email", "DISPOSABLE_EMAIL")]),
    ("disposable parent", {"email": "ann@eu.MAILINATOR.com"}, [("email", "DISPOSABLE_EMAIL")]),
    ("plus", {"email": "ann+news@example.com"}, [("email", "EMAIL_PLUS_SUFFIX")]),
    ("phone 555", {"phone": "+15551234567"}, [("phone", "INVALID_PHONE")]),
    ("phone short", {"phone": "555 0123"}, [("phone", "INVALID_PHONE")]),
    ("phone 9 digits", {"phone": "201555012"}, [("phone", "INVALID_PHONE")]),
    ("phone letters", {"phone": "201-555-CALL"}, [("phone", "INVALID_PHONE")]),
    ("phone fixed", {"phone": "+44 121 234 5678"}, [("phone", "PHONE_NOT_MOBILE")]),
    ("phone VoIP", {"phone": "+445612345678"}, [("phone", "PHONE_NOT_MOBILE")]),
    ("phone toll-free", {"phone": "(800) 234-5678"}, [("phone", "PHONE_NOT_MOBILE")]),
    ("phone premium", {"phone": "+19002345678"}, [("phone", "PHONE_NOT_MOBILE")]),
    ("phone pager", {"phone": "+447640123456"}, [("phone", "PHONE_NOT_MOBILE")]),
    ("country 3", {"country": "USA"}, [("country", "INVALID_COUNTRY")]),
    ("country unassigned", {"country": "xx"}, [("country", "INVALID_COUNTRY")]),
    ("state, no country", {"state": "ON"}, [("state", "INVALID_STATE")]),
    ("state, US", {"state": "zz", "country": "us"}, [("state", "INVALID_STATE")]),
    ("state long", {"state": "ABC", "country": "CA"}, [("state", "INVALID_STATE")]),
    ("zip US 4", {"zip": "1000", "country": "US"}, [("zip", "INVALID_ZIP")]),
    ("zip US +2", {"zip": "10001-12", "country": "US"}, [("zip", "INVALID_ZIP")]),
    ("zip GB 11", {"zip": "12345678901", "country": "GB"}, [("zip", "INVALID_ZIP")]),
    ("firstName 101", {"firstName": "x" * 101}, [("firstName", "TOO_LONG")]),
    ("lastName 101", {"lastName": "x" * 101}, [("lastName", "TOO_LONG")]),
    ("city 101", {"city": "x" * 101}, [("city", "TOO_LONG")]),
    ("street 201", {"street": "x" * 201}, [("street", "TOO_LONG")]),
    ("street2 201", {"street2": "x" * 201}, [("street2", "TOO_LONG")]),
    ("firstName newline", {"firstName": "Ann\nLee"}, [("firstName", "INVALID")]),
    ("lastName SOH", {"lastName": "L\x01"}, [("lastName", "INVALID")]),
    ("city bell", {"city": "Oslo\x07"}, [("city", "INVALID")]),
    ("street DEL", {"street": "1 Main\x7f"}, [("street", "INVALID")]),
    ("street2 escape", {"street2": "\x1b[2J"}, [("street2", "INVALID")]),
    (
        "all at once",
        {"email": "a+b@mailinator.com", "phone": "555", "lastName": "\x01", "zip": "x"},
        [
            ("email", "DISPOSABLE_EMAIL"),
            ("email", "EMAIL_PLUS_SUFFIX"),
            ("phone", "INVALID_PHONE"),
            ("lastName", "INVALID"),
        ],
    ),
]


async def test_every_rule_refuses_through_create_and_update_and_writes_nothing(
    gql: GraphQLClient, db: Database, clock: Clock
) -> None:
    await gql.create("base", email="base@example.com")
    before = await stored(db)
    clock.advance(timedelta(seconds=1))  # a write now would show in updatedAt
    wrong: list[tuple[str, str, Any]] = []
    for n, (case, fields, expected) in enumerate(REFUSED):
        want = [(path(name), code) for name, code in expected]
        data = {"email": f"r-{n}@example.com", **fields}
        data.pop("externalCustomerId", None)
        external_id = fields.get("externalCustomerId", f"r-{n}")
        created = await gql.create(external_id, **data)
        if (problems(created), created["customer"]) != (want, None):
            wrong.append((case, "create", created))
        if not all(e["message"] and "Traceback" not in e["message"] for e in created["userErrors"]):
            wrong.append((case, "create message", created["userErrors"]))
        if "externalCustomerId" in fields:
            continue
        updated = await gql.update("base", **fields)
        if (problems(updated), updated["customer"]) != (want, None):
            wrong.append((case, "update", updated))
    assert wrong == []
    # Nothing was written: no customer but the first, unchanged, and its event alone.
    assert await stored(db) == before
    assert await counts(db) == (1, 1)


# -- customer rules: accepted, normalised, unique ----------------------------------------------

# (case, the data sent beside an e-mail, what is stored). Optional blanks are stored as null.
ACCEPTED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("email trimmed", {"email": "  Ann.Lee@Example.COM "}, {"email": "Ann.Lee@example.com"}),
    ("phone digits", {"phone": "2015550123"}, {"phone": "+12015550123"}),
    ("phone 1 first", {"phone": "1 201 555 0123"}, {"phone": "+12015550123"}),
    ("phone dots", {"phone": "201.555.0123"}, {"phone": "+12015550123"}),
    ("phone GB", {"phone": "+44 7400-123456"}, {"phone": "+447400123456"}),
    ("phone CA", {"phone": "+1 506 234 5678"}, {"phone": "+15062345678"}),
    ("country", {"country": " gb "}, {"country": "GB"}),
    ("state US", {"state": "pr", "country": "us"}, {"state": "PR", "country": "US"}),
    ("state no country", {"state": "dc"}, {"state": "DC"}),
    ("state CA", {"state": "on", "country": "CA"}, {"state": "ON", "country": "CA"}),
    ("zip+4", {"zip": "10001-1234", "country": "US"}, {"zip": "10001-1234", "country": "US"}),
    ("zip GB", {"zip": "SW1A 1AA", "country": "GB"}, {"zip": "SW1A 1AA", "country": "GB"}),
    ("zip 10", {"zip": "1234567890", "country": "DE"}, {"zip": "1234567890", "country": "DE"}),
    (
        "text at limits",
        {"firstName": " " + "é" * 100 + " ", "street": "s" * 200},
        {"firstName": "é" * 100, "street": "s" * 200},
    ),
    ("names joiners", {"lastName": "\u0645\u200c\u0646"}, {"lastName": "\u0645\u200c\u0646"}),
    (
        "blanks are null",
        dict.fromkeys(CONTRACT_ORDER[1:], " \t "),
        dict.fromkeys(CONTRACT_ORDER[1:]),
    ),
    (
        "empties are null",
        dict.fromkeys(CONTRACT_ORDER[1:], ""),
        dict.fromkeys(CONTRACT_ORDER[1:]),
    ),
]
# Beside "c-1" / "ann@example.com" and "u-2" / "ärger@example.com": (case, id, e-mail, errors).
UNIQUE: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("id trimmed", " c-1 ", "new-1@example.com", [("externalCustomerId", "TAKEN")]),
    ("id other case", "C-1", "new-2@example.com", []),
    ("email case", "u-3", "ANN@EXAMPLE.COM", [("email", "TAKEN")]),
    ("email padded", "u-4", " ann@example.com ", [("email", "TAKEN")]),
    ("email non-ASCII case", "u-5", "ÄRGER@example.com", [("email", "TAKEN")]),
    ("both", "c-1", "Ann@example.com", [("externalCustomerId", "TAKEN"), ("email", "TAKEN")]),
]


async def test_values_are_stored_normalised_and_unique(gql: GraphQLClient, db: Database) -> None:
    wrong: list[tuple[str, Any]] = []
    for n, (case, data, expected) in enumerate(ACCEPTED):
        payload = await gql.create(f"a-{n}", **{"email": f"a-{n}@example.com", **data})
        shown = (payload["customer"] or {}).get("data", {})
        if problems(payload) or {key: shown.get(key) for key in expected} != expected:
            wrong.append((case, payload))
    rows = await stored(db)
    for n, (case, _, expected) in enumerate(ACCEPTED):
        if {key: rows[f"a-{n}"][key] for key in expected} != expected:
            wrong.append((case, rows[f"a-{n}"]))
    # The id is trimmed and 255 characters fit.
    for external_id, kept in [("  t-1\u3000", "t-1"), ("x" * 255, "x" * 255)]:
        payload = await gql.create(external_id, email=f"{len(kept)}@example.com")
        if (problems(payload), payload["customer"]["externalCustomerId"]) != ([], kept):
            wrong.append((external_id, payload))

    await gql.create("c-1", email="ann@example.com")
    await gql.create("u-2", email="ärger@example.com")
    for case, external_id, email, taken in UNIQUE:
        before = await counts(db)
        payload = await gql.create(external_id, email=email)
        want = [(path(name), code) for name, code in taken]
        if problems(payload) != want:
            wrong.append((case, payload))
        if taken and await counts(db) != before:
            wrong.append((case, "written"))
    assert wrong == []


# Text at its length limit whose case-folded form is longer ("ß" folds to "ss", "ﬃ" to "ffi"):
# the search key stored beside the value must take the folded form too.
FOLDS_LONGER: list[tuple[str, str, dict[str, Any]]] = [
    ("create id", "ß" * 255, {}),
    ("create firstName", "f-1", {"firstName": "ß" * 100}),
    ("create lastName", "l-1", {"lastName": "ﬃ" * 100}),
]


async def test_text_at_its_limit_is_stored_whatever_it_folds_to(gql: GraphQLClient) -> None:
    """One request per case, read raw: a server error is a wrong answer here, not a crash."""

    async def payload(name: str, external_id: str, data: dict[str, Any]) -> Any:
        variables = {"input": {"externalCustomerId": external_id, "data": data}}
        body = (await gql.post(operation(name), variables)).json()
        return body.get("errors") or body["data"]

    wrong: list[tuple[str, Any]] = []
    for n, (case, external_id, data) in enumerate(FOLDS_LONGER):
        answer = await payload("create_customer", external_id, {"email": f"f-{n}@x.org", **data})
        if isinstance(answer, list) or answer["createCustomer"]["userErrors"]:
            wrong.append((case, answer))
    answer = await payload("update_customer", "f-1", {"lastName": "ß" * 100})
    if isinstance(answer, list) or answer["updateCustomer"]["userErrors"]:
        wrong.append(("update lastName", answer))
    assert wrong == []


@pytest.mark.parametrize("environment", [Environment.SANDBOX])
async def test_sandbox_warns_where_production_refuses_and_every_other_rule_holds(
    gql: GraphQLClient, db: Database
) -> None:
    def warned(payload: dict[str, Any]) -> Problems:
        return [(w["field"], w["code"]) for w in payload["warnings"]]

    email = ["input", "data", "email"]
    parent = await gql.create("s-1", email="ann@eu.mailinator.com")
    assert (problems(parent), warned(parent)) == ([], [(email, "DISPOSABLE_EMAIL")])
    assert parent["customer"]["data"]["email"] == "ann@eu.mailinator.com"
    plus = await gql.create("s-2", email="ann+news@example.com")
    assert (problems(plus), warned(plus)) == ([], [(email, "EMAIL_PLUS_SUFFIX")])
    # An update takes them too, with both warnings.
    updated = await gql.update("s-2", email="bob+x@MAILINATOR.com")
    assert problems(updated) == []
    assert warned(updated) == [(email, "DISPOSABLE_EMAIL"), (email, "EMAIL_PLUS_SUFFIX")]
    assert updated["customer"]["data"]["email"] == "bob+x@mailinator.com"
    # Every other rule still refuses, and the refused writes write nothing.
    before = await stored(db)
    refused = await gql.create("s-3", email="x+y@mailinator.com", country="XX")
    assert problems(refused) == [(["input", "data", "country"], "INVALID_COUNTRY")]
    refused = await gql.update("s-1", email="x+y@mailinator.com", phone="+15551234567")
    assert problems(refused) == [(["input", "data", "phone"], "INVALID_PHONE")]
    taken = await gql.create("s-4", email="BOB+X@mailinator.com")
    assert problems(taken) == [(email, "TAKEN")]
    assert await stored(db) == before


# -- KYC ---------------------------------------------------------------------------------------

STATUSES = [
    "PENDING",
    "UNDER_REVIEW",
    "VERIFIED",
    "REJECTED",
    "VERIFIED_MANUALLY",
    "REJECTED_MANUALLY",
    "EXPIRED",
]
# The moves each mutation may make (tests/test_kyc.py makes each through the API).
RECORD_ALLOWED = {("PENDING", "VERIFIED"), ("PENDING", "REJECTED"), ("PENDING", "UNDER_REVIEW")}
REVIEW_ALLOWED = {"UNDER_REVIEW"}
STEPS: dict[str, list[tuple[str, str]]] = {
    "PENDING": [],
    "UNDER_REVIEW": [("record", "UNDER_REVIEW")],
    "VERIFIED": [("record", "VERIFIED")],
    "REJECTED": [("record", "REJECTED")],
    "VERIFIED_MANUALLY": [("record", "UNDER_REVIEW"), ("review", "APPROVE")],
    "REJECTED_MANUALLY": [("record", "UNDER_REVIEW"), ("review", "REJECT")],
}


async def test_every_other_transition_is_refused_and_changes_nothing(
    gql: GraphQLClient, db: Database, clock: Clock, settings: Settings
) -> None:
    """Each cell of recordKycResult and reviewKycVerification that the table does not allow,
    from every status: INVALID_TRANSITION naming the current status, and no write, no event."""
    verifications: dict[str, str] = {}
    # EXPIRED first: the clock then moves past its time to live, and the sweep writes it down.
    for status in ["EXPIRED", *STEPS]:
        await gql.create(f"k-{status}")
        verifications[status] = (await gql.start_kyc(f"k-{status}"))["verification"]["id"]
        if status == "EXPIRED":
            clock.advance(TTL)
            assert await expire_kyc(db, settings, clock) == 1
        for kind, value in STEPS.get(status, []):
            if kind == "record":
                assert (await gql.record_kyc(verifications[status], value))["userErrors"] == []
            else:
                assert (await gql.review_kyc(verifications[status], value))["userErrors"] == []
    clock.advance(timedelta(seconds=1))
    before = await counts(db)
    refused = [("record", s, t) for s in STATUSES for t in STATUSES if (s, t) not in RECORD_ALLOWED]
    refused += [
        ("review", s, d) for s in STATUSES for d in ("APPROVE", "REJECT") if s not in REVIEW_ALLOWED
    ]
    wrong: list[tuple[str, str, str, Any]] = []
    for kind, status, target in refused:
        if kind == "record":
            payload = await gql.record_kyc(verifications[status], target)
        else:
            payload = await gql.review_kyc(verifications[status], target)
        if (
            problems(payload) != [(["input", "verificationId"], "INVALID_TRANSITION")]
            or status not in payload["userErrors"][0]["message"]
            or (payload["verification"], payload["customer"]) != (None, None)
        ):
            wrong.append((kind, status, target, payload))
    assert wrong == []
    assert await counts(db) == before
    assert await histories(gql) == {f"k-{status}": [status] for status in STATUSES}
    # Past its time to live, the PENDING one reads as EXPIRED before any sweep, in a page too.
    clock.advance(TTL)
    assert await histories(gql) == {
        f"k-{status}": ["EXPIRED" if status == "PENDING" else status] for status in STATUSES
    }


async def histories(gql: GraphQLClient) -> dict[str, list[str]]:
    """Each customer's verification statuses, oldest first, and its kycStatus the newest's."""
    page = (await gql.run("customers", first=100))["customers"]["edges"]
    found = {}
    for edge in page:
        customer = edge["node"]
        found[customer["externalCustomerId"]] = [v["status"] for v in customer["kycVerifications"]]
        assert customer["kycStatus"] == found[customer["externalCustomerId"]][-1]
    return found


# -- events ------------------------------------------------------------------------------------


async def events(gql: GraphQLClient) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = (await gql.run("customer_events", first=100))["customerEvents"][
        "nodes"
    ]
    return nodes


def summary(event: dict[str, Any]) -> tuple[Any, ...]:
    verification = event["verification"]
    return (
        event["type"],
        event["externalCustomerId"],
        event["changedFields"],
        event["previousStatus"],
        event["status"],
        verification and verification["id"],
        event["actor"],
    )


async def test_each_change_is_one_event_and_a_mutation_that_changes_nothing_writes_none(
    gql: GraphQLClient, db: Database, clock: Clock
) -> None:
    await gql.create("c-1", email="ann@example.com")
    # Every field at once, sent in the reverse of the contract's order.
    patch = {
        "country": "us",
        "zip": "10001",
        "city": "New York",
        "state": "ny",
        "street2": "Apt 2",
        "street": "1 Main St",
        "lastName": "Lee",
        "firstName": "Ann",
        "phone": "(201) 555-0123",
        "email": "Ann.Lee@Example.com",
    }
    assert (await gql.update("c-1", **patch))["userErrors"] == []
    assert (await gql.update("c-1", zip=None, city="Boston", firstName="Bea"))["userErrors"] == []
    started = (await gql.start_kyc("c-1"))["verification"]["id"]
    assert (await gql.record_kyc(started, "UNDER_REVIEW"))["userErrors"] == []
    assert (await gql.review_kyc(started, "REJECT"))["userErrors"] == []
    again = (await gql.start_kyc("c-1"))["verification"]["id"]
    await gql.create("c-2")
    verified = (await gql.start_kyc("c-2"))["verification"]["id"]
    assert (await gql.record_kyc(verified, "VERIFIED"))["userErrors"] == []
    key = "key:tests"
    assert [summary(e) for e in await events(gql)] == [
        ("CUSTOMER_CREATED", "c-1", [], None, None, None, key),
        ("CUSTOMER_UPDATED", "c-1", CONTRACT_ORDER, None, None, None, key),
        ("CUSTOMER_UPDATED", "c-1", ["firstName", "city", "zip"], None, None, None, key),
        ("KYC_VERIFICATION_STARTED", "c-1", [], None, "PENDING", started, key),
        (
            "KYC_VERIFICATION_STATUS_CHANGED",
            "c-1",
            [],
            "PENDING",
            "UNDER_REVIEW",
            started,
            key,
        ),
        (
            "KYC_VERIFICATION_STATUS_CHANGED",
            "c-1",
            [],
            "UNDER_REVIEW",
            "REJECTED_MANUALLY",
            started,
            key,
        ),
        ("KYC_VERIFICATION_STARTED", "c-1", [], None, "PENDING", again, key),
        ("CUSTOMER_CREATED", "c-2", [], None, None, None, key),
        ("KYC_VERIFICATION_STARTED", "c-2", [], None, "PENDING", verified, key),
        ("KYC_VERIFICATION_STATUS_CHANGED", "c-2", [], "PENDING", "VERIFIED", verified, key),
    ]

    # Mutations that change nothing: (case, operation, variables).
    def update(external_id: str, **data: Any) -> tuple[str, dict[str, Any]]:
        return "update_customer", {"input": {"externalCustomerId": external_id, "data": data}}

    same = {**patch, "zip": None, "city": " Boston ", "firstName": "Bea", "phone": "2015550123"}
    no_ops: list[tuple[str, tuple[str, dict[str, Any]]]] = [
        ("create taken", ("create_customer", {"input": {
            "externalCustomerId": "c-1", "data": {"email": "new@example.com"}}})),
        ("create refused", ("create_customer", {"input": {
            "externalCustomerId": "c-3", "data": {"email": "nope"}}})),
        ("update equal once normalised", update("c-1", **same)),
        ("update empty patch", update("c-1")),
        ("update blank on null", update("c-2", phone="  ", city=None)),
        ("update refused", update("c-1", city="Oslo", zip="x")),
        ("update unknown", update("nobody", city="Oslo")),
        ("delete unknown", ("delete_customer", {"input": {"externalCustomerId": "C-1"}})),
        ("start returns active", ("start_kyc_verification", {"input": {
            "externalCustomerId": "c-1"}})),
        ("start when verified", ("start_kyc_verification", {"input": {
            "externalCustomerId": "c-2"}})),
        ("start unknown", ("start_kyc_verification", {"input": {
            "externalCustomerId": "nobody"}})),
        ("record refused", ("record_kyc_result", {"input": {
            "verificationId": again, "status": "PENDING"}})),
        ("record unknown", ("record_kyc_result", {"input": {
            "verificationId": "S3ljVmVyaWZpY2F0aW9uOjk5", "status": "VERIFIED"}})),
        ("review refused", ("review_kyc_verification", {"input": {
            "verificationId": again, "decision": "APPROVE"}})),
    ]  # fmt: skip
    clock.advance(timedelta(seconds=1))  # a write now would show in updatedAt
    before = await stored(db)
    head = await counts(db)
    wrong = []
    for case, (name, variables) in no_ops:
        response = await gql.post(operation(name), variables)
        if "errors" in response.json() or await counts(db) != head:
            wrong.append((case, response.json()))
    assert wrong == []
    assert await stored(db) == before

    # Deleting is the last change: its event, and no verification left to show.
    await gql.run("delete_customer", input={"externalCustomerId": "c-2"})
    assert [summary(e) for e in (await events(gql))[-2:]] == [
        ("KYC_VERIFICATION_STATUS_CHANGED", "c-2", [], "PENDING", "VERIFIED", None, key),
        ("CUSTOMER_DELETED", "c-2", [], None, None, None, key),
    ]
