"""The HTTP wiring: bad requests get clear 4xx answers or GraphQL errors, never a 500."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import httpx
import pytest
from starlette.applications import Starlette

import web.body
import web.view
from db import customers
from db.customer_rows import CustomerReads
from tests.support.graphql_client import GraphQLClient, operation, without_throttle_status
from tests.support.refusals import refused
from web.body import parse_json

# What this module tests does not depend on the database engine: SQLite proves it.
pytestmark = pytest.mark.sqlite_only


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{bad json", "application/json"),
        (b'"just a string"', "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"query=1", "text/plain"),
    ],
)
async def test_malformed_bodies_get_4xx(
    http: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    response = await http.post("/graphql", content=body, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500
    assert "Traceback" not in response.text


async def test_missing_query_gets_4xx(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", json={"variables": {}})
    assert response.status_code == 400
    assert "Traceback" not in response.text


async def test_wrong_variable_type_is_a_graphql_error(gql: GraphQLClient) -> None:
    response = await gql.post(operation("customer"), {"externalCustomerId": 42})
    assert response.status_code in (200, 400)
    body = response.json()
    assert "data" not in body or body["data"] is None
    [error] = body["errors"]
    assert "externalCustomerId" in error["message"]
    assert "String" in error["message"]


async def test_missing_required_input_field_is_a_graphql_error(gql: GraphQLClient) -> None:
    response = await gql.post(operation("create_customer"), {"input": {"externalCustomerId": "c"}})
    body = response.json()
    assert "data" not in body or body["data"] is None
    assert "required field 'data'" in body["errors"][0]["message"]


async def test_syntax_error_is_readable(gql: GraphQLClient) -> None:
    body = (await gql.post("query { customer(")).json()
    assert body["errors"][0]["message"].startswith("Syntax Error")


async def test_unknown_field_is_readable(gql: GraphQLClient) -> None:
    body = (await gql.post('{ customer(externalCustomerId: "x") { nope } }')).json()
    assert "Cannot query field 'nope'" in body["errors"][0]["message"]


async def test_unexpected_error_is_masked_with_an_id_in_the_log(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("SELECT secret FROM customer /home/app/db.py ann@example.com")

    # Both paths fail: the compiled path's failure hands the request to graphql-core, whose
    # failure is the one masked and logged.
    monkeypatch.setattr(customers, "get_customer", broken)
    monkeypatch.setattr(CustomerReads, "by_external_id", broken)
    with caplog.at_level(logging.ERROR, logger="customer_api.errors"):
        response = await gql.post(operation("customer"), {"externalCustomerId": "c-1"})
    assert response.status_code == 200
    [error] = response.json()["errors"]
    error_id = error["extensions"]["errorId"]
    assert error["message"] == f"Internal server error (error id {error_id})."
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret" not in response.text
    assert "db.py" not in response.text
    [logged] = [r.getMessage() for r in caplog.records if error_id in r.getMessage()]
    assert "RuntimeError" in logged
    assert "test_http.py" in logged  # where it was raised, for whoever debugs it
    assert "ann@example.com" not in logged  # but not the message, which may quote data
    assert "Traceback" not in response.text


async def test_browser_get_serves_graphiql(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_root_redirects_to_graphql(http: httpx.AsyncClient) -> None:
    response = await http.get("/")
    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/graphql"


async def test_query_over_get(http: httpx.AsyncClient) -> None:
    response = await http.get(
        "/graphql", params={"query": '{ customer(externalCustomerId: "x") { id } }'}
    )
    assert response.status_code == 200
    assert response.json() == {
        "data": {"customer": None},
        "extensions": {
            "cost": {
                "requestedQueryCost": 2,
                "actualQueryCost": 2,
                "throttleStatus": {
                    "maximumAvailable": 1_000_000_000,  # tests/conftest.py's
                    "currentlyAvailable": 1_000_000_000 - 2,
                    "restoreRate": 500.0,
                },
            }
        },
    }


# -- GraphQL over HTTP: application/graphql-response+json ---------------------------------------

GRAPHQL_RESPONSE = "application/graphql-response+json"


async def post_accepting(
    http: httpx.AsyncClient, accept: str, body: Mapping[str, object]
) -> httpx.Response:
    return await http.post("/graphql", json=body, headers={"accept": accept})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": "{ customer("}, "Syntax Error"),
        ({"query": "{ nope }"}, "Cannot query field 'nope'"),
        ({"query": operation("customer"), "variables": {"externalCustomerId": 1}}, "String"),
        ({"query": operation("customer"), "variables": {}}, "to be provided"),
    ],
    ids=["parse", "validate", "coerce", "missing variable"],
)
async def test_refused_requests_are_400_without_data(
    http: httpx.AsyncClient, body: dict[str, object], message: str
) -> None:
    response = await post_accepting(http, GRAPHQL_RESPONSE, body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    payload = response.json()
    assert "data" not in payload
    assert message in payload["errors"][0]["message"]
    # Older clients asking for application/json keep a 200 with the same errors.
    legacy = await post_accepting(http, "application/json", body)
    assert legacy.status_code == 200
    assert legacy.headers["content-type"].startswith("application/json")
    assert legacy.json()["errors"] == payload["errors"]


async def test_a_request_that_ran_is_200_even_with_field_errors(http: httpx.AsyncClient) -> None:
    body = {"query": "{ customers(first: 1000) { nodes { id } } }"}
    response = await post_accepting(http, f"{GRAPHQL_RESPONSE}, application/json;q=0.9", body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    payload = response.json()
    assert payload["data"] is None
    assert payload["errors"][0]["path"] == ["customers"]


@pytest.mark.both_executors
async def test_graphql_response_with_q_zero_is_not_chosen(http: httpx.AsyncClient) -> None:
    body = {"query": "{ __typename }"}
    response = await post_accepting(http, f"{GRAPHQL_RESPONSE};q=0, application/json", body)
    assert response.headers["content-type"].startswith("application/json")


async def test_mutation_over_get_is_405(http: httpx.AsyncClient) -> None:
    query = 'mutation { deleteCustomer(input: {externalCustomerId: "x"}) { userErrors { code } } }'
    response = await http.get("/graphql", params={"query": query})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


# -- abusive documents, with the default limits -------------------------------------------------


def fragment_chain(length: int) -> str:
    """Fragments spreading each other `length` deep through introspection's recursive types."""
    fragments = [
        f"fragment F{n} on __Type {{ fields {{ type {{ ...F{n + 1} }} }} }}" for n in range(length)
    ]
    fragments.append(f"fragment F{length} on __Type {{ name }}")
    return '{ __type(name: "Customer") { ...F0 } } ' + " ".join(fragments)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ " + " ".join(f"a{n}: __typename" for n in range(500)) + " }", "500 aliases"),
        (fragment_chain(50), "fields deep"),
        ("{ " + "a " * 100_000 + "}", "more than 5000 tokens"),
        ("{ " + " ".join("__typename @skip(if: false)" for _ in range(60)) + " }", "directives"),
        ("{ " + "__typename " * 2_000 + "}", "'__typename', asked for 2000 times"),
    ],
    ids=[
        "500 aliases",
        "50-deep fragment chain",
        "100,000 tokens",
        "60 directives",
        "2,000 fields",
    ],
)
async def test_abusive_documents_are_refused(gql: GraphQLClient, query: str, message: str) -> None:
    response = await gql.http.post(
        "/graphql", json={"query": query}, headers={"accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert message in body["errors"][0]["message"]


async def test_a_body_over_one_mebibyte_is_413(http: httpx.AsyncClient) -> None:
    padding = "x" * (5 * 1024 * 1024)
    response = await http.post(
        "/graphql",
        content=json.dumps({"query": "{ __typename }", "variables": {"pad": padding}}),
        headers={"content-type": "application/json"},
    )
    # the route's limit (MAX_BODY_BYTES)
    assert "MAX_BODY_BYTES" in refused(response, 413, "PAYLOAD_TOO_LARGE")


async def test_batched_requests_are_refused(http: httpx.AsyncClient) -> None:
    batch = [{"query": "{ __typename }"}, {"query": "{ __typename }"}]
    response = await http.post("/graphql", json=batch)
    assert "one operation a request" in refused(response, 400, "BATCHING_DISABLED")


async def test_suggestions_are_given_while_introspection_is_on(gql: GraphQLClient) -> None:
    body = (await gql.post('{ custmer(externalCustomerId: "x") { id } }')).json()
    assert "Did you mean 'customer'" in body["errors"][0]["message"]


@pytest.mark.parametrize("name", [{"a": 1}, ["a"], 3])
async def test_an_operation_name_that_is_not_a_string_is_400(
    http: httpx.AsyncClient, name: object
) -> None:
    # The document analysis, cached by name, leaves such a name to Strawberry.
    body = {"query": "query a { __typename }", "operationName": name}
    response = await post_accepting(http, "application/json", body)
    assert refused(response, 400, "BAD_REQUEST").startswith("Unknown operation named")


@pytest.mark.one_executor("about the compiled path itself")
async def test_a_compiled_read_that_fails_is_answered_by_graphql_core(
    gql: GraphQLClient,
    app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await gql.create("c-1", email="c1@example.com")
    expected = await gql.post(operation("customer"), {"externalCustomerId": "c-1"})

    async def broken(*_args: object) -> None:
        raise RuntimeError("the compiled path's statement failed")

    monkeypatch.setattr(CustomerReads, "by_external_id", broken)
    answered = app.state.view.compiled_answers
    response = await gql.post(operation("customer"), {"externalCustomerId": "c-1"})
    # The same answer, but for the bucket, which each request drew from.
    assert without_throttle_status(response) == without_throttle_status(expected)
    assert app.state.view.compiled_answers == answered  # graphql-core answered it
    # The gate logs the fault the fallback hides: its type and place, never its message.
    (logged,) = [r.getMessage() for r in caplog.records if "compiled path failed" in r.getMessage()]
    assert logged.startswith("the compiled path failed (RuntimeError at ")
    assert "statement failed" not in logged


@pytest.mark.one_executor("about the compiled path itself")
async def test_an_accept_that_offers_streaming_media_types_is_still_compiled(
    gql: GraphQLClient, http: httpx.AsyncClient, app: Starlette
) -> None:
    """The gate declines a request that wants one of Strawberry's HTTP streaming transports;
    this server enables none (subscriptions go over graphql-transport-ws), so an Accept that
    offers their media types (Apollo Client offers multipart/mixed on every query) is
    answered by the compiled path, with the same bytes."""
    await gql.create("c-1", email="c1@example.com")
    body = {"query": operation("customer"), "variables": {"externalCustomerId": "c-1"}}
    expected = await http.post("/graphql", json=body)
    for accept in (
        "multipart/mixed;deferSpec=20220824, application/json",
        "multipart/mixed;subscriptionSpec=1.0, application/json",
        "text/event-stream, application/json",
    ):
        answered = app.state.view.compiled_answers
        response = await http.post("/graphql", json=body, headers={"accept": accept})
        # The same answer, but for the bucket, which each request drew from.
        assert response.status_code == 200, accept
        assert without_throttle_status(response) == without_throttle_status(expected), accept
        assert app.state.view.compiled_answers == answered + 1, accept


async def test_get_takes_null_variables_and_names_a_bad_parameter(http: httpx.AsyncClient) -> None:
    query = '{ customer(externalCustomerId: "x") { id } }'
    response = await http.get("/graphql", params={"query": query, "variables": "null"})
    assert response.status_code == 200
    assert response.json()["data"] == {"customer": None}
    for given, said in (("[1]", "must be a JSON object or null"), ("{", "is not JSON")):
        response = await http.get("/graphql", params={"query": query, "variables": given})
        message = refused(response, 400, "BAD_REQUEST")
        assert "The variables parameter" in message
        assert said in message


@pytest.mark.one_executor("about the compiled path itself")
async def test_a_body_is_parsed_once_whichever_path_answers(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled path parses a POST's JSON to see whether it is its to answer; when
    graphql-core answers instead, Strawberry reuses that parse rather than make another."""
    parses: list[object] = []

    def counting(data: str | bytes) -> object:
        parses.append(data)
        return parse_json(data)

    # The body's own parse (web.body.Body.json) and any other of the view's.
    monkeypatch.setattr(web.body, "parse_json", counting)
    monkeypatch.setattr(web.view, "parse_json", counting)
    events = await gql.post("{ customerEvents(first: 1) { nodes { id } } }")  # graphql-core's
    assert events.status_code == 200
    assert "errors" not in events.json()
    found = await gql.post(operation("customer"), {"externalCustomerId": "c-1"})  # compiled
    assert found.json()["data"] == {"customer": None}
    refused = await gql.post("{ nope }")  # graphql-core's error
    assert refused.json()["errors"]
    assert len(parses) == 3
