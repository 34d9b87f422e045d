"""Federated tracing (FTV1): a gateway's `apollo-federation-include-trace: ftv1` gets
`extensions.ftv1`, Apollo's Trace protobuf in base64, from either executor, and only for a
principal allowed to see timings (schema/ftv1)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from db.keys import Principal, Scope
from schema import build_schema
from schema.ftv1 import Policy, Recorder, TraceFields, permitted, recording
from schema.ftv1.reports_pb2 import Trace
from tests.support.graphql_client import GraphQLClient, operation
from tests.support.identity import IdentityProvider

pytestmark = pytest.mark.both_executors

ASK = {"apollo-federation-include-trace": "ftv1"}
Path = tuple[str | int, ...]

PAGE = """
query Page($first: Int, $withTotal: Boolean!) {
  customers(first: $first) {
    totalCount @include(if: $withTotal)
    edges {
      cursor
      node {
        __typename
        id
        ref: externalCustomerId
        data { email firstName }
        kycVerifications { id status }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
  one: customer(externalCustomerId: "c-1") { externalCustomerId kycStatus }
}
"""


@pytest.fixture
def setting_overrides(idp: IdentityProvider) -> dict[str, Any]:
    return idp.settings()  # tokens accepted too: they must get no trace


def decoded(body: dict[str, Any]) -> Trace:
    return Trace.FromString(base64.b64decode(body["extensions"]["ftv1"], validate=True))


def field_nodes(node: Trace.Node, path: Path = ()) -> Iterator[tuple[Path, Trace.Node]]:
    """Every node below `node` that stands for a field (index nodes have no type), by path."""
    for child in node.child:
        key: str | int = child.index if child.WhichOneof("id") == "index" else child.response_name
        if child.type:
            yield (*path, key), child
        yield from field_nodes(child, (*path, key))


def response_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    """The path of every field in a response's data."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from response_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from response_paths(item, (*path, index))


def assert_ordered(trace: Trace) -> None:
    """Times within the trace, each field ending after it starts and starting no earlier than
    the field above it; the wall clock's end not before its start."""
    assert trace.end_time.ToNanoseconds() >= trace.start_time.ToNanoseconds() > 0
    assert trace.duration_ns > 0
    nodes = dict(field_nodes(trace.root))
    for path, node in nodes.items():
        assert 0 < node.start_time <= node.end_time <= trace.duration_ns, path
        parent = next(
            (nodes[path[:n]] for n in range(len(path) - 1, 0, -1) if path[:n] in nodes), None
        )
        if parent is not None:
            assert node.start_time >= parent.start_time, path


async def seed(gql: GraphQLClient) -> None:
    await gql.create("c-1", firstName="Ann")
    await gql.create("c-2")
    await gql.start_kyc("c-1")


async def test_a_trace_has_a_node_per_field_on_its_path(
    http: httpx.AsyncClient, gql: GraphQLClient, app: Starlette, compiled_path: bool
) -> None:
    await seed(gql)
    before = app.state.view.compiled_answers
    body = {"query": PAGE, "variables": {"first": 5, "withTotal": True}}
    response = await http.post("/graphql", json=body, headers=ASK)
    answer = response.json()
    assert "errors" not in answer, answer
    # The compiled path traces its own answers; it does not hand them to graphql-core.
    assert app.state.view.compiled_answers == before + compiled_path
    trace = decoded(answer)

    nodes = dict(field_nodes(trace.root))
    assert set(nodes) == set(response_paths(answer["data"]))
    edge = ("customers", "edges", 0, "node")
    assert nodes[("customers",)].type == "CustomerConnection!"
    assert nodes[("customers",)].parent_type == "Query"
    assert nodes[("customers", "totalCount")].type == "Int!"
    assert nodes[(*edge, "ref")].original_field_name == "externalCustomerId"
    assert nodes[(*edge, "ref")].parent_type == "Customer"
    assert nodes[(*edge, "__typename")].type == "String!"
    assert nodes[(*edge, "data", "email")].parent_type == "CustomerData"
    assert nodes[("one", "kycStatus")].parent_type == "Customer"
    # c-2 is the newest, first; c-1 has the verification.
    assert nodes[("customers", "edges", 1, "node", "kycVerifications", 0, "status")].type
    assert nodes[("one",)].original_field_name == "customer"
    index = trace.root.child[0].child[1].child[0]  # customers.edges[0]
    assert (index.WhichOneof("id"), index.index, index.type) == ("index", 0, "")
    assert_ordered(trace)
    assert all(not node.error for node in nodes.values())
    # The rest of the answer is as without the header.
    plain = (await http.post("/graphql", json=body)).json()
    assert plain["data"] == answer["data"]
    assert answer["extensions"].keys() == {*plain["extensions"], "ftv1"}


async def test_a_mutation_and_a_node_are_traced(
    http: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    body = {
        "query": operation("create_customer"),
        "variables": {"input": {"externalCustomerId": "c-9", "data": {"email": "a@example.com"}}},
    }
    answer = (await http.post("/graphql", json=body, headers=ASK)).json()
    trace = decoded(answer)
    nodes = dict(field_nodes(trace.root))
    assert set(nodes) == set(response_paths(answer["data"]))
    assert nodes[("createCustomer",)].parent_type == "Mutation"
    assert_ordered(trace)

    global_id = answer["data"]["createCustomer"]["customer"]["id"]
    query = "query($id: ID!) { node(id: $id) { id ... on Customer { externalCustomerId } } }"
    body = {"query": query, "variables": {"id": global_id}}
    answer = (await http.post("/graphql", json=body, headers=ASK)).json()
    nodes = dict(field_nodes(decoded(answer).root))
    assert set(nodes) == {("node",), ("node", "id"), ("node", "externalCustomerId")}
    assert nodes[("node",)].type == "Node"
    assert nodes[("node", "externalCustomerId")].parent_type == "Customer"


async def test_errors_are_on_their_nodes_masked(
    http: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    await seed(gql)
    query = """
      { a: customer(externalCustomerId: "c-1") { id } b: customers(first: 100000) { totalCount } }
    """
    answer = (await http.post("/graphql", json={"query": query}, headers=ASK)).json()
    [error] = answer["errors"]
    assert error["path"] == ["b"]
    trace = decoded(answer)
    nodes = dict(field_nodes(trace.root))
    assert [len(nodes[("a",)].error), len(trace.root.error)] == [0, 0]
    [traced] = nodes[("b",)].error
    assert traced.message == "<masked>"  # a message may quote what was sent; the code says what
    assert [(loc.line, loc.column) for loc in traced.location] == [
        (loc["line"], loc["column"]) for loc in error["locations"]
    ]
    assert orjson.loads(traced.json) == {
        "message": "<masked>",
        "locations": error["locations"],
        "path": ["b"],
        "extensions": {"maskedBy": "ftv1", "code": error["extensions"]["code"]},
    }
    assert_ordered(trace)


async def test_a_refused_document_has_its_error_on_the_root(http: httpx.AsyncClient) -> None:
    answer = (await http.post("/graphql", json={"query": "{ nope }"}, headers=ASK)).json()
    trace = decoded(answer)
    assert list(field_nodes(trace.root)) == []
    [traced] = trace.root.error
    [error] = answer["errors"]  # a validation error: no code, and no path
    assert orjson.loads(traced.json) == {
        "message": "<masked>",
        "locations": error["locations"],
        "extensions": {"maskedBy": "ftv1"},
    }


async def test_no_trace_without_the_header_or_with_another_value(
    http: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    await seed(gql)
    body = {"query": PAGE, "variables": {"first": 5, "withTotal": False}}
    for headers in ({}, {"apollo-federation-include-trace": "FTV1"}):
        answer = (await http.post("/graphql", json=body, headers=headers)).json()
        assert "ftv1" not in answer["extensions"]


async def test_no_trace_for_an_identity_provider_token(
    anonymous: httpx.AsyncClient, idp: IdentityProvider, gql: GraphQLClient
) -> None:
    await seed(gql)
    token = idp.token(scope="customers:read")
    headers = {**ASK, "authorization": f"Bearer {token}"}
    body = {"query": PAGE, "variables": {"first": 5, "withTotal": True}}
    answer = (await anonymous.post("/graphql", json=body, headers=headers)).json()
    assert answer["data"]["customers"]["totalCount"] == 2
    assert "ftv1" not in answer["extensions"]


async def test_a_get_is_traced_too(http: httpx.AsyncClient, gql: GraphQLClient) -> None:
    await seed(gql)
    params = {"query": '{ customer(externalCustomerId: "c-1") { externalCustomerId } }'}
    answer = (await http.get("/graphql", params=params, headers=ASK)).json()
    nodes = dict(field_nodes(decoded(answer).root))
    assert set(nodes) == {("customer",), ("customer", "externalCustomerId")}


def test_only_a_traced_request_gets_the_per_field_hook() -> None:
    """Without a recorder, a request's extensions have no `resolve` hook, so graphql-core
    wraps no resolver: asking nothing costs nothing per field."""
    schema = build_schema()

    def hooks() -> list[type]:
        return [type(e) for e in schema.get_extensions() if e._implements_resolve()]

    assert hooks() == []
    with recording(Recorder()):
        assert hooks() == [TraceFields]
    with recording(None):
        assert hooks() == []


KEY = Principal("gateway", frozenset({Scope.CUSTOMERS_READ}))
TOKEN = Principal("ann", frozenset({Scope.CUSTOMERS_SELF}), customer="c-1", issuer="https://idp")


@pytest.mark.parametrize(
    ("policy", "principal", "allowed"),
    [
        ("api_keys", KEY, True),
        ("api_keys", TOKEN, False),
        ("all", KEY, True),
        ("all", TOKEN, True),
        ("off", KEY, False),
        ("off", TOKEN, False),
        ("all", None, False),
    ],
)
def test_who_may_have_timings(policy: Policy, principal: Principal | None, allowed: bool) -> None:
    assert permitted(policy, principal) is allowed
