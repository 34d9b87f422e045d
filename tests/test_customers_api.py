"""The customer mutations and queries through HTTP, on a real SQLite file."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from db import models
from db.engine import Database
from db.rules import Environment
from tests.support.clock import Clock
from tests.support.graphql_client import GraphQLClient, operation
from tests.support.statements import counting_statements

pytestmark = pytest.mark.both_executors

FULL = {
    "email": "Ann.Lee@Example.COM",
    "phone": "(201) 555-0123",
    "firstName": " Ann ",
    "lastName": "Lee",
    "street": "1 Main St",
    "street2": "Apt 2",
    "state": "ny",
    "city": "New York",
    "zip": "10001",
    "country": "us",
}
STORED = {
    "email": "Ann.Lee@example.com",
    "phone": "+12015550123",
    "firstName": "Ann",
    "lastName": "Lee",
    "street": "1 Main St",
    "street2": "Apt 2",
    "state": "NY",
    "city": "New York",
    "zip": "10001",
    "country": "US",
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def count_customers(db: Database) -> int:
    async with db.read() as session:
        return (
            await session.execute(select(func.count()).select_from(models.Customer))
        ).scalar_one()


def errors(payload: dict[str, Any]) -> list[tuple[list[str], str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def test_create_normalises_and_reads_back(gql: GraphQLClient) -> None:
    payload = await gql.create("c-1", **FULL)
    assert payload["userErrors"] == []
    assert payload["warnings"] == []
    customer = payload["customer"]
    assert customer["externalCustomerId"] == "c-1"
    assert customer["data"] == STORED
    assert customer["kycStatus"] is None
    assert TIMESTAMP.fullmatch(customer["createdAt"])
    assert customer["createdAt"] == customer["updatedAt"]
    assert "c-1" not in customer["id"]  # opaque

    read = await gql.customer("c-1")
    assert read is not None
    assert read["id"] == customer["id"]
    assert read["data"] == STORED
    assert read["kycVerifications"] == []
    assert (read["createdAt"], read["updatedAt"]) == (customer["createdAt"], customer["updatedAt"])


async def test_customer_id_is_exact_and_case_sensitive(gql: GraphQLClient) -> None:
    await gql.create("AbC")
    assert await gql.customer("abc") is None
    assert await gql.customer("AbC") is not None


async def test_node_finds_customer_by_global_id(gql: GraphQLClient) -> None:
    created = (await gql.create("c-1"))["customer"]
    node = (await gql.run("node", id=created["id"]))["node"]
    assert node == {
        "__typename": "Customer",
        "id": created["id"],
        "externalCustomerId": "c-1",
        "data": {"email": "c-1@example.com"},
    }


async def test_a_deleted_customers_ids_are_never_given_again(gql: GraphQLClient) -> None:
    """A global id names one customer (and one verification) for good: after the newest is
    deleted, the next one gets a new id, and the old id finds nothing (on SQLite too)."""
    await gql.create("c-1")
    gone = await gql.create("c-2")
    started = await gql.start_kyc("c-2")
    await gql.run("delete_customer", input={"externalCustomerId": "c-2"})
    made = await gql.create("c-3")
    again = await gql.start_kyc("c-3")
    assert made["customer"]["id"] != gone["customer"]["id"]
    assert again["verification"]["id"] != started["verification"]["id"]
    assert (await gql.run("node", id=gone["customer"]["id"]))["node"] is None
    assert (await gql.run("node", id=started["verification"]["id"]))["node"] is None


@pytest.mark.parametrize(
    "bad_id", ["", "nope", "Q3VzdG9tZXI6OTk5", "Rm9vOjE", "%%%", "Q3VzdG9tZXI6"]
)
async def test_node_with_unknown_or_malformed_id_is_null(gql: GraphQLClient, bad_id: str) -> None:
    await gql.create("c-1")
    assert (await gql.run("node", id=bad_id))["node"] is None


async def test_every_problem_reported_together_and_nothing_written(
    gql: GraphQLClient, db: Database
) -> None:
    payload = await gql.create(
        "bad id",
        email="a+b@mailinator.com",
        phone="+15551234567",
        firstName="x" * 101,
        state="ZZ",
        zip="1",
        country="US",
    )
    assert payload["customer"] is None
    assert errors(payload) == [
        (["input", "externalCustomerId"], "INVALID"),
        (["input", "data", "email"], "DISPOSABLE_EMAIL"),
        (["input", "data", "email"], "EMAIL_PLUS_SUFFIX"),
        (["input", "data", "phone"], "INVALID_PHONE"),
        (["input", "data", "firstName"], "TOO_LONG"),
        (["input", "data", "state"], "INVALID_STATE"),
        (["input", "data", "zip"], "INVALID_ZIP"),
    ]
    assert all(e["message"] for e in payload["userErrors"])
    assert await count_customers(db) == 0


# A write: a statement's own, or each of its WITH's (PostgreSQL's counter statement moves the
# counter, writes the first event and notifies: db/events.py).
WRITE = re.compile(r'(?:^|\bAS\s*\()\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+"?(\w+)', re.IGNORECASE)


def tables_written(statements: list[str]) -> list[str]:
    """The table each write writes, in order."""
    return [found[1] for statement in statements for found in WRITE.finditer(statement)]


async def test_a_refused_write_writes_nothing_and_an_accepted_one_writes_once(
    gql: GraphQLClient, db: Database
) -> None:
    """Counted on every way a statement reaches the database (the writes run theirs on the
    transaction's driver connection): a write's checks come before anything it writes."""
    with counting_statements(db) as accepted:
        assert (await gql.create("c-1", **FULL))["userErrors"] == []
    assert tables_written(accepted) == ["customer", "event_counter", "customer_event"]
    with counting_statements(db) as refused_create:
        payload = await gql.create("c-2", email="nope", country="US", zip="1")
    assert errors(payload) == [
        (["input", "data", "email"], "INVALID_EMAIL"),
        (["input", "data", "zip"], "INVALID_ZIP"),
    ]
    with counting_statements(db) as refused_update:
        payload = await gql.update("c-1", zip="x")
    assert errors(payload) == [(["input", "data", "zip"], "INVALID_ZIP")]
    assert (tables_written(refused_create), tables_written(refused_update)) == ([], [])
    assert refused_create  # it looked whether the id or the e-mail is taken
    assert refused_update  # it read the stored record


async def test_duplicate_id_is_taken(gql: GraphQLClient, db: Database) -> None:
    await gql.create("c-1", email="one@example.com")
    payload = await gql.create("c-1", email="two@example.com")
    assert errors(payload) == [(["input", "externalCustomerId"], "TAKEN")]
    assert await count_customers(db) == 1
    assert await gql.customer("c-1") is not None


async def test_duplicate_email_in_another_case_is_taken(gql: GraphQLClient, db: Database) -> None:
    await gql.create("c-1", email="ann@example.com")
    payload = await gql.create("c-2", email="ANN@EXAMPLE.COM")
    assert errors(payload) == [(["input", "data", "email"], "TAKEN")]
    assert await gql.customer("c-2") is None
    assert await count_customers(db) == 1


async def test_both_taken_are_reported(gql: GraphQLClient) -> None:
    await gql.create("c-1", email="ann@example.com")
    payload = await gql.create("c-1", email="Ann@example.com")
    assert errors(payload) == [
        (["input", "externalCustomerId"], "TAKEN"),
        (["input", "data", "email"], "TAKEN"),
    ]


@pytest.mark.parametrize("environment", [Environment.SANDBOX])
async def test_sandbox_creates_with_warnings(gql: GraphQLClient) -> None:
    payload = await gql.create("c-1", email="a+b@mailinator.com")
    assert payload["userErrors"] == []
    assert payload["customer"]["data"]["email"] == "a+b@mailinator.com"
    assert [(w["field"], w["code"]) for w in payload["warnings"]] == [
        (["input", "data", "email"], "DISPOSABLE_EMAIL"),
        (["input", "data", "email"], "EMAIL_PLUS_SUFFIX"),
    ]
    # Every other rule still applies in the sandbox.
    refused = await gql.create("c-2", email="c@mailinator.com", phone="+15551234567")
    assert errors(refused) == [(["input", "data", "phone"], "INVALID_PHONE")]


@pytest.mark.parametrize("environment", [Environment.SANDBOX])
async def test_sandbox_updates_with_warnings(gql: GraphQLClient) -> None:
    await gql.create("c-1")
    payload = await gql.update("c-1", email="a+b@example.com")
    assert payload["userErrors"] == []
    assert payload["customer"]["data"]["email"] == "a+b@example.com"
    assert [(w["field"], w["code"]) for w in payload["warnings"]] == [
        (["input", "data", "email"], "EMAIL_PLUS_SUFFIX"),
    ]
    # The merged record is checked whole: the stored address is warned about again.
    again = await gql.update("c-1", city="Boston")
    assert [(w["field"], w["code"]) for w in again["warnings"]] == [
        (["input", "data", "email"], "EMAIL_PLUS_SUFFIX"),
    ]


# -- update ------------------------------------------------------------------------------------

CLEARABLE = {
    "phone": ("+447400123456", "+447400123456"),
    "firstName": (" Bea ", "Bea"),
    "lastName": ("Ng", "Ng"),
    "street": ("2 High St", "2 High St"),
    "street2": ("Floor 3", "Floor 3"),
    "state": ("ca", "CA"),
    "city": ("Boston", "Boston"),
    "zip": ("02134-1234", "02134-1234"),
    "country": ("us", "US"),
}


@pytest.mark.parametrize("name", CLEARABLE)
async def test_update_omitted_field_is_unchanged(gql: GraphQLClient, name: str) -> None:
    await gql.create("c-1", **FULL)
    other = "lastName" if name != "lastName" else "firstName"
    payload = await gql.update("c-1", **{other: "Changed"})
    assert payload["userErrors"] == []
    assert payload["customer"]["data"][name] == STORED[name]
    assert (await gql.customer("c-1") or {})["data"][name] == STORED[name]


@pytest.mark.parametrize("name", CLEARABLE)
async def test_update_null_clears_field(gql: GraphQLClient, name: str) -> None:
    await gql.create("c-1", **FULL)
    payload = await gql.update("c-1", **{name: None})
    assert payload["userErrors"] == []
    assert payload["customer"]["data"] == {**STORED, name: None}
    assert (await gql.customer("c-1") or {})["data"] == {**STORED, name: None}


@pytest.mark.parametrize("name", CLEARABLE)
async def test_update_value_sets_field_normalised(gql: GraphQLClient, name: str) -> None:
    await gql.create("c-1", **FULL)
    raw, stored = CLEARABLE[name]
    payload = await gql.update("c-1", **{name: raw})
    assert payload["userErrors"] == []
    assert payload["customer"]["data"] == {**STORED, name: stored}
    assert (await gql.customer("c-1") or {})["data"] == {**STORED, name: stored}


@pytest.mark.parametrize("name", CLEARABLE)
async def test_update_blank_clears_field(gql: GraphQLClient, name: str) -> None:
    await gql.create("c-1", **FULL)
    payload = await gql.update("c-1", **{name: "   "})
    assert payload["userErrors"] == []
    assert payload["customer"]["data"] == {**STORED, name: None}
    assert (await gql.customer("c-1") or {})["data"] == {**STORED, name: None}


async def test_update_email_cannot_be_cleared(gql: GraphQLClient) -> None:
    await gql.create("c-1", **FULL)
    payload = await gql.update("c-1", email=None)
    assert errors(payload) == [(["input", "data", "email"], "REQUIRED")]
    assert (await gql.customer("c-1") or {})["data"] == STORED


async def test_update_email_changes_domain_case(gql: GraphQLClient) -> None:
    await gql.create("c-1", **FULL)
    payload = await gql.update("c-1", email="New@EXAMPLE.org")
    assert payload["customer"]["data"]["email"] == "New@example.org"


async def test_update_to_another_customers_email_is_taken(gql: GraphQLClient) -> None:
    await gql.create("c-1", email="one@example.com")
    await gql.create("c-2", email="two@example.com")
    payload = await gql.update("c-2", email="ONE@example.com")
    assert errors(payload) == [(["input", "data", "email"], "TAKEN")]
    # Its own e-mail in another case is no conflict.
    assert (await gql.update("c-2", email="TWO@example.com"))["userErrors"] == []


async def test_update_checks_the_merged_record(gql: GraphQLClient) -> None:
    await gql.create("c-1", **FULL)  # country US
    payload = await gql.update("c-1", zip="ABC")
    assert errors(payload) == [(["input", "data", "zip"], "INVALID_ZIP")]
    # Leaving the US lifts the ZIP rule; coming back with a non-US ZIP is refused.
    assert (await gql.update("c-1", country="GB", zip="SW1A 1AA"))["userErrors"] == []
    payload = await gql.update("c-1", country="US")
    assert errors(payload) == [(["input", "data", "zip"], "INVALID_ZIP")]


async def test_failing_update_changes_nothing(gql: GraphQLClient, clock: Clock) -> None:
    created = (await gql.create("c-1", **FULL))["customer"]
    clock.advance(timedelta(seconds=1))  # a write now would show in updatedAt
    payload = await gql.update("c-1", firstName="Bea", phone="+441212345678", zip="x")
    assert errors(payload) == [
        (["input", "data", "phone"], "PHONE_NOT_MOBILE"),
        (["input", "data", "zip"], "INVALID_ZIP"),
    ]
    assert payload["customer"] is None
    after = await gql.customer("c-1") or {}
    assert after["data"] == STORED
    assert after["updatedAt"] == created["updatedAt"]


async def test_update_moves_updated_at_only_on_change(gql: GraphQLClient, clock: Clock) -> None:
    created = (await gql.create("c-1", **FULL))["customer"]
    assert created["updatedAt"] == "2025-06-05T04:57:11.151Z"
    clock.advance(timedelta(seconds=1))
    same = (await gql.update("c-1", firstName="Ann", state="NY"))["customer"]
    assert same["updatedAt"] == created["updatedAt"]
    clock.advance(timedelta(seconds=1))
    changed = (await gql.update("c-1", firstName="Bea"))["customer"]
    assert changed["updatedAt"] == "2025-06-05T04:57:13.151Z"  # the clock of the change
    assert changed["createdAt"] == created["createdAt"]
    assert changed["data"] == {**STORED, "firstName": "Bea"}
    assert (await gql.customer("c-1") or {})["updatedAt"] == changed["updatedAt"]


async def test_update_unknown_customer_is_not_found(gql: GraphQLClient) -> None:
    payload = await gql.update("nobody", firstName="X")
    assert payload["customer"] is None
    assert errors(payload) == [(["input", "externalCustomerId"], "NOT_FOUND")]


# -- delete ------------------------------------------------------------------------------------


async def test_delete_removes_customer_and_verifications(gql: GraphQLClient, db: Database) -> None:
    await gql.create("c-1")
    await gql.create("c-2")
    async with db.write() as session:
        customer = await session.scalar(
            select(models.Customer).where(models.Customer.external_customer_id == "c-1")
        )
        assert customer is not None
        assert customer.id is not None
        now = models.utc_now()
        session.add(
            models.KycVerification(
                customer_id=customer.id,
                type=models.KycType.PROOF_OF_ID,
                status=models.KycStatus.PENDING,
                created_at=now,
                updated_at=now,
            )
        )
    result = await gql.run("delete_customer", input={"externalCustomerId": "c-1"})
    assert result["deleteCustomer"] == {"deletedExternalCustomerId": "c-1", "userErrors": []}
    assert await gql.customer("c-1") is None
    assert await gql.customer("c-2") is not None
    async with db.read() as session:
        left = await session.scalars(select(models.KycVerification))
        assert list(left) == []


async def test_delete_unknown_customer_is_not_found(gql: GraphQLClient, db: Database) -> None:
    await gql.create("c-1")
    result = await gql.run("delete_customer", input={"externalCustomerId": "C-1"})
    assert result["deleteCustomer"]["deletedExternalCustomerId"] is None
    assert errors(result["deleteCustomer"]) == [(["input", "externalCustomerId"], "NOT_FOUND")]
    assert await count_customers(db) == 1


# -- concurrency -------------------------------------------------------------------------------


async def test_concurrent_creates_of_one_id_make_one_customer(
    gql: GraphQLClient, db: Database
) -> None:
    payloads = await asyncio.gather(
        *(gql.create("same", email=f"user{i}@example.com") for i in range(8))
    )
    assert sum(p["customer"] is not None for p in payloads) == 1
    taken = [errors(p) for p in payloads if p["customer"] is None]
    assert taken == [[(["input", "externalCustomerId"], "TAKEN")]] * 7
    assert await count_customers(db) == 1


async def test_concurrent_creates_of_one_email_make_one_customer(
    gql: GraphQLClient, db: Database
) -> None:
    payloads = await asyncio.gather(
        *(gql.create(f"c-{i}", email=f"{'ANN' if i % 2 else 'ann'}@example.com") for i in range(8))
    )
    assert sum(p["customer"] is not None for p in payloads) == 1
    taken = [errors(p) for p in payloads if p["customer"] is None]
    assert taken == [[(["input", "data", "email"], "TAKEN")]] * 7
    assert await count_customers(db) == 1


async def test_concurrent_updates_of_different_fields_all_apply(gql: GraphQLClient) -> None:
    await gql.create("c-1", email="ann@example.com")
    payloads = await asyncio.gather(
        *(gql.update("c-1", **{name: raw}) for name, (raw, _) in CLEARABLE.items())
    )
    assert [p["userErrors"] for p in payloads] == [[]] * len(CLEARABLE)
    data = (await gql.customer("c-1") or {})["data"]
    assert data == {"email": "ann@example.com", **{k: v for k, (_, v) in CLEARABLE.items()}}


async def test_external_id_cannot_be_changed_by_an_update(gql: GraphQLClient) -> None:
    """domain-rules.md: the id never changes after creation; the patch type has no field for it."""
    await gql.create("c-1")
    response = await gql.post(
        operation("update_customer"),
        {"input": {"externalCustomerId": "c-1", "data": {"externalCustomerId": "c-2"}}},
    )
    assert "errors" in response.json()
    assert await gql.customer("c-1") is not None
    assert await gql.customer("c-2") is None
