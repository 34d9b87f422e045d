"""Input no database can take, or that names what cannot exist, is the client's error:
BAD_USER_INPUT saying what is wrong, before any SQL runs, on both backends, and nothing
logged at ERROR."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlmodel import func, select

from db.engine import Database
from db.models import Customer, utc_now
from schema import ids
from schema.text_input import variable_errors
from server import Settings, cursor_secret
from tests.support.graphql_client import GraphQLClient, operation
from tests.support.statements import counting_statements
from tests.test_pages import signed

# Bad input is refused alike by both executors: the compiled path hands every request that
# graphql-core refuses to graphql-core, so the run with it on proves the refusal and that its
# gate runs no SQL first (its customers, made beforehand, are its own to answer).
pytestmark = pytest.mark.one_executor("the compiled path hands bad input to graphql-core")

NUL, SURROGATE = "\x00", "\ud800"
HUGE_CUSTOMER = ids.encode("Customer", 2**31)
HUGE_VERIFICATION = ids.encode("KycVerification", 10**30)
NUL_SAYS = "holds a NUL character (U+0000), which no text may hold."
SURROGATE_SAYS = "holds a lone surrogate (U+D800); text must be valid Unicode."
OUT_OF_RANGE = (
    "The id names a key past 2147483647, the largest there can be: it is not an id this API "
    "gave out."
)

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("lookup nul", "customer", {"externalCustomerId": f"c{NUL}"},
     f"The value at $externalCustomerId {NUL_SAYS}"),
    ("lookup surrogate", "customer", {"externalCustomerId": SURROGATE},
     f"The value at $externalCustomerId {SURROGATE_SAYS}"),
    ("filter email", "customers", {"filter": {"email": f"a{NUL}@example.com"}},
     f"The value at $filter.email {NUL_SAYS}"),
    ("filter search", "customers", {"filter": {"search": SURROGATE}},
     f"The value at $filter.search {SURROGATE_SAYS}"),
    ("filter country", "customers", {"filter": {"country": NUL}},
     f"The value at $filter.country {NUL_SAYS}"),
    ("filter ids", "customers", {"filter": {"externalCustomerIds": ["ok", SURROGATE]}},
     f"The value at $filter.externalCustomerIds[1] {SURROGATE_SAYS}"),
    ("cursor", "customers", {"after": NUL}, f"The value at $after {NUL_SAYS}"),
    ("create field", "create_customer",
     {"input": {"externalCustomerId": "c-1", "data": {"email": "a@example.com",
                                                        "city": f"X{SURROGATE}"}}},
     f"The value at $input.data.city {SURROGATE_SAYS}"),
    ("create id", "create_customer",
     {"input": {"externalCustomerId": NUL, "data": {"email": "a@example.com"}}},
     f"The value at $input.externalCustomerId {NUL_SAYS}"),
    ("update field", "update_customer",
     {"input": {"externalCustomerId": "c-0", "data": {"street": f"1{NUL}"}}},
     f"The value at $input.data.street {NUL_SAYS}"),
    ("update lookup", "update_customer",
     {"input": {"externalCustomerId": SURROGATE, "data": {}}},
     f"The value at $input.externalCustomerId {SURROGATE_SAYS}"),
    ("delete", "delete_customer", {"input": {"externalCustomerId": NUL}},
     f"The value at $input.externalCustomerId {NUL_SAYS}"),
    ("start kyc", "start_kyc_verification", {"input": {"externalCustomerId": SURROGATE}},
     f"The value at $input.externalCustomerId {SURROGATE_SAYS}"),
    ("entity key", "entities",
     {"representations": [{"__typename": "Customer", "externalCustomerId": NUL}]},
     f"The value at $representations[0].externalCustomerId {NUL_SAYS}"),
    ("node id", "node", {"id": HUGE_CUSTOMER}, OUT_OF_RANGE),
    ("entity id", "entities",
     {"representations": [{"__typename": "Customer", "id": HUGE_CUSTOMER}]}, OUT_OF_RANGE),
    ("record kyc id", "record_kyc_result",
     {"input": {"verificationId": HUGE_VERIFICATION, "status": "VERIFIED"}}, OUT_OF_RANGE),
    ("review kyc id", "review_kyc_verification",
     {"input": {"verificationId": HUGE_VERIFICATION, "decision": "APPROVE"}}, OUT_OF_RANGE),
    ("unknown typename", "entities",
     {"representations": [{"__typename": "Customer", "id": "x"},
                          {"__typename": "Nope", "id": "x"}]},
     "representations[1].__typename must be one of: Customer."),
    ("no typename", "entities", {"representations": [{"externalCustomerId": "c-0"}]},
     "representations[0] has no __typename; it must be one of: Customer."),
    ("key of the wrong type", "entities",
     {"representations": [{"__typename": "Customer", "externalCustomerId": 7}]},
     "representations[0].externalCustomerId must be a string."),
    ("id of the wrong type", "entities",
     {"representations": [{"__typename": "Customer", "id": ["x"]}]},
     "representations[0].id must be a string."),
    ("no key", "entities", {"representations": [{"__typename": "Customer", "email": "x"}]},
     "representations[0] must hold a key of Customer: externalCustomerId or id, and nothing "
     "else."),
    ("not an object", "entities", {"representations": ["Customer:1"]},
     "representations[0] must be an object with __typename and a key."),
]  # fmt: skip


async def count(db: Database) -> int:
    async with db.read() as session:
        return (await session.execute(select(func.count()).select_from(Customer))).scalar_one()


@pytest.mark.parametrize(
    ("name", "variables", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_input_is_refused_before_any_sql(
    gql: GraphQLClient,
    db: Database,
    caplog: pytest.LogCaptureFixture,
    name: str,
    variables: dict[str, Any],
    message: str,
) -> None:
    await gql.create("c-0")
    with caplog.at_level(logging.INFO), counting_statements(db) as statements:
        # json.dumps writes a lone surrogate as the escape \ud800, as an attacker would send it.
        body = json.dumps({"query": operation(name), "variables": variables})
        response = await gql.http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["message"] == message
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert statements == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await count(db) == 1  # nothing written


async def test_literals_in_the_document_are_checked_too(gql: GraphQLClient) -> None:
    body = (await gql.post('{ customer(externalCustomerId: "a\\u0000") { id } }')).json()
    assert body["errors"] == [
        {
            "message": f"A string in the document {NUL_SAYS}",
            "locations": [{"line": 1, "column": 32}],
            "extensions": {"code": "BAD_USER_INPUT"},
        }
    ]


def test_every_unstorable_string_is_named_by_its_path() -> None:
    found = variable_errors({"a": [{"b": NUL, SURROGATE: "ok"}], "c": "fine"})
    assert [e.message for e in found] == [
        f"The value at $a[0].b {NUL_SAYS}",
        f"A field name in $a[0] {SURROGATE_SAYS}",
    ]


@pytest.mark.parametrize(
    "values",
    [["0001-01-01T00:00:00+05:00", 1], ["2025-06-05T04:57:11Z", 2**31], ["naive", 1]],
    ids=["date before year 1", "id past 2^31-1", "not a date"],
)
async def test_signed_cursors_with_impossible_values_are_bad_input(
    gql: GraphQLClient,
    db: Database,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    values: list[Any],
) -> None:
    """Even with the server's own secret (as if it leaked), a cursor's values are checked."""
    await gql.create("c-0")
    secret = await cursor_secret(db, settings, utc_now)
    with caplog.at_level(logging.INFO), counting_statements(db) as statements:
        response = await gql.post(operation("customers"), {"after": signed(values, secret=secret)})
    [error] = response.json()["errors"]
    assert error["message"] == "The cursor is not valid; use a cursor from a page of this list."
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert statements == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("document", "column"),
    [
        ("{ customers(first: " + "9" * 5000 + ") { totalCount } }", 20),
        ("query($n: Int = " + "9" * 5000 + ") { customers(first: $n) { totalCount } }", 17),
    ],
    ids=["argument", "variable default"],
)
async def test_a_5000_digit_number_in_the_document_is_bad_input(
    gql: GraphQLClient, caplog: pytest.LogCaptureFixture, document: str, column: int
) -> None:
    with caplog.at_level(logging.INFO):
        body = (await gql.post(document)).json()
    assert body["errors"] == [
        {
            "message": "A number in the document is too long to read; at most 4300 digits.",
            "locations": [{"line": 1, "column": column}],
            "extensions": {"code": "BAD_USER_INPUT"},
        }
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
