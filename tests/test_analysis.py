"""The document analysis: one pass, memoised per fragment, cached per document; the scope
table covers every field; the cost is keyed by fields that exist. No database: the analysis
runs before anything does, so the built schema and its analyser prove it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from graphql import (
    GraphQLInterfaceType,
    GraphQLObjectType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    parse,
    visit,
)

from bench.stall import ABUSIVE
from db.keys import ALL_SCOPES, Scope
from schema import build_schema, schema
from schema.access import FIELD_SCOPES, OPEN_FIELDS
from schema.analysis import Analyser
from schema.limits import (
    ESTIMATED_LISTS,
    PAGED_FIELDS,
    REPRESENTATION_LISTS,
    ROW_FIELDS,
    TOO_COMPLEX,
    Limits,
)

READ = frozenset({Scope.CUSTOMERS_READ})
READ_OR_SELF = READ | {Scope.CUSTOMERS_SELF}
WRITE = frozenset({Scope.CUSTOMERS_WRITE})
PROVIDER = frozenset({Scope.KYC_PROVIDER})


def analyse(query: str, operation_name: str | None = None) -> Any:
    return schema.analyser.analyse(query, operation_name)


# -- the one table -----------------------------------------------------------------------------


def schema_fields() -> set[str]:
    return {
        f"{name}.{field}"
        for name, named in schema._schema.type_map.items()
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType) and not name.startswith("__")
        for field in named.fields
    }


def test_every_field_is_either_scoped_or_open() -> None:
    assert set(FIELD_SCOPES) | OPEN_FIELDS == schema_fields()
    assert set(FIELD_SCOPES) & OPEN_FIELDS == set()


def test_every_field_the_cost_names_exists() -> None:
    named = PAGED_FIELDS | ROW_FIELDS | ESTIMATED_LISTS | REPRESENTATION_LISTS
    assert named <= schema_fields()


def test_personal_data_needs_customers_read() -> None:
    personal = {"Customer.data", "Customer.kycVerifications", "Customer.kycStatus"}
    personal |= {f for f in schema_fields() if f.startswith("CustomerData.")}
    # The event feed and subscription need customers:read too (domain-rules.md, "Events").
    events = {"Query.customerEvents", "Subscription.customerEvents"}
    assert {f for f, scopes in FIELD_SCOPES.items() if Scope.CUSTOMERS_READ in scopes} == (
        personal | {f"Query.{name}" for name in ("node", "customer", "customers", "_entities")}
    ) | {"Query._service"} | events


# -- no document reads personal data without customers:read ------------------------------------

# Every way to reach a customer, with SELECTION where its selection goes.
REACHES = {
    "customer": 'query { customer(externalCustomerId: "c-1") SELECTION }',
    "list nodes": "query { customers { nodes SELECTION } }",
    "list edges": "query { customers { edges { node SELECTION } } }",
    "node": 'query { node(id: "x") { ... on Customer SELECTION } }',
    "_entities": (
        "query { _entities(representations: "
        '[{__typename: "Customer", externalCustomerId: "c-1"}]) { ... on Customer SELECTION } }'
    ),
    "createCustomer": (
        'mutation { createCustomer(input: {externalCustomerId: "c", data: {email: "a@b.co"}}) '
        "{ userErrors { code } customer SELECTION } }"
    ),
    "updateCustomer": (
        'mutation { updateCustomer(input: {externalCustomerId: "c-1", data: {}}) '
        "{ userErrors { code } customer SELECTION } }"
    ),
    "startKycVerification": (
        'mutation { startKycVerification(input: {externalCustomerId: "c-1"}) '
        "{ verification { status } customer SELECTION } }"
    ),
    "recordKycResult": (
        'mutation { recordKycResult(input: {verificationId: "x", status: VERIFIED}) '
        "{ verification { status } customer SELECTION } }"
    ),
}
PERSONAL = {
    "e-mail": "data { email }",
    "phone": "data { phone }",
    "verifications": "kycVerifications { status }",
    "status": "kycStatus",
}
# Ways to wrap the selection: as it is, aliased, in an inline fragment, in a named fragment,
# in a fragment spread twice through another, on the Node interface.
WRAPS = {
    "plain": ("{{ id {} }}", ""),
    "aliased": ("{{ id sneaky: {} }}", ""),
    "inline": ("{{ id ... on Customer {{ {} }} }}", ""),
    "untyped inline": ("{{ id ... @include(if: true) {{ {} }} }}", ""),
    "fragment": ("{{ id ...Personal }}", "fragment Personal on Customer {{ {} }}"),
    "nested fragments": (
        "{{ ...Outer }}",
        "fragment Outer on Customer {{ ...Inner ... on Node {{ ...Inner }} }} "
        "fragment Inner on Customer {{ {} }}",
    ),
}


def document(reach: str, personal: str, wrap: str) -> str:
    selection, fragments = WRAPS[wrap]
    return (
        REACHES[reach].replace("SELECTION", selection.format(PERSONAL[personal]))
        + " "
        + (fragments.format(PERSONAL[personal]))
    )


def coordinates_in(query: str) -> set[str]:
    """Every Type.field the document names, found by graphql-core's own TypeInfo."""
    info = TypeInfo(schema._schema)
    found: set[str] = set()

    class Collect(Visitor):
        def enter_field(self, *_: Any) -> None:
            parent, definition = info.get_parent_type(), info.get_field_def()
            if parent is not None and definition is not None:
                found.add(f"{parent.name}.{_[0].name.value}")

    visit(parse(query), TypeInfoVisitor(info, Collect()))
    return found


PERSONAL_FIELDS = {f for f, scopes in FIELD_SCOPES.items() if Scope.CUSTOMERS_READ in scopes} - {
    f"Query.{name}" for name in ("node", "customer", "customers", "_entities", "_service")
}


@pytest.mark.parametrize(
    ("reach", "personal", "wrap"), list(itertools.product(REACHES, PERSONAL, WRAPS))
)
def test_no_document_reads_personal_data_without_customers_read(
    reach: str, personal: str, wrap: str
) -> None:
    query = document(reach, personal, wrap)
    analysis = analyse(query)
    assert analysis.errors == (), analysis.errors
    named = coordinates_in(query) & PERSONAL_FIELDS
    assert named  # graphql-core's own walk finds the personal field ...
    # ... and a key with every scope but customers:read gets an error at each.
    others = ALL_SCOPES - READ
    refused = {use.coordinate for use in analysis.guarded if use.scopes.isdisjoint(others)}
    assert named <= refused
    messages = " ".join(error.message for error in analysis.forbidden(others))
    assert all(f"may not use {coordinate}:" in messages for coordinate in named)
    assert analysis.forbidden(ALL_SCOPES) == []


def test_a_write_key_may_see_what_its_mutation_did() -> None:
    query = (
        'mutation { updateCustomer(input: {externalCustomerId: "c-1", data: {city: "Oslo"}}) '
        "{ customer { id externalCustomerId createdAt updatedAt } userErrors { field code } "
        "warnings { code } } }"
    )
    assert analyse(query).forbidden(WRITE) == []


def test_forbidden_errors_name_the_field_its_scope_and_where_it_is() -> None:
    query = (
        'mutation { u: updateCustomer(input: {externalCustomerId: "c-1", data: {}}) '
        "{ customer { ...C } } } "
        "fragment C on Customer { id data { email } kycVerifications { status } }"
    )
    errors = analyse(query).forbidden(WRITE)
    assert [(e.path, e.message) for e in errors] == [
        (
            ["u", "customer", "data"],
            "Your API key or token may not use Customer.data: it needs the scope customers:read or "
            "customers:self.",
        ),
        (
            ["u", "customer", "data", "email"],
            "Your API key or token may not use CustomerData.email: it needs the scope "
            "customers:read or customers:self.",
        ),
        (
            ["u", "customer", "kycVerifications"],
            "Your API key or token may not use Customer.kycVerifications: it needs the scope "
            "customers:read or customers:self.",
        ),
    ]


# -- bounded work ------------------------------------------------------------------------------


def test_doubly_spread_fragments_are_measured_once_each() -> None:
    analysis = analyse(ABUSIVE["22 doubly-spread fragments"])
    assert analysis.errors == ()
    # 20 rows of (nodes + id + data + email), and customers itself: each fragment once.
    assert analysis.cost({}) == 1 + 20 * 4
    assert analysis.depth == 4
    assert analysis.required_scopes() == {
        "Query.customers": READ,
        "Customer.data": READ_OR_SELF,
        "CustomerData.email": READ_OR_SELF,
    }


def test_a_fragment_spread_in_two_places_counts_in_both() -> None:
    query = (
        "{ a: customers(first: 10) { nodes { ...C } } b: customers(first: 3) { nodes { ...C } } }"
        " fragment C on Customer { id kycVerifications { status } }"
    )
    # Each page: customers + rows * (nodes + id + kycVerifications + 5 * status).
    assert analyse(query).cost({}) == (1 + 10 * (1 + 1 + 1 + 5)) + (1 + 3 * (1 + 1 + 1 + 5))


def test_a_selection_repeated_490_times_is_refused_before_validation() -> None:
    analysis = analyse(ABUSIVE["490-fold repeated selection"])
    assert [(e.message, e.extensions) for e in analysis.errors] == [
        (
            "The document repeats fields so often that checking they can be merged would take "
            "about 479220 comparisons; at most 10000 are allowed. Most of them come from "
            "'customers', asked for 490 times in one selection set on Query (fragments "
            "included). Select each field once.",
            {"code": TOO_COMPLEX},
        )
    ]


def test_repeats_through_fragments_count() -> None:
    fragments = " ".join(
        f"fragment R{n} on Query {{ customers {{ totalCount }} }}" for n in range(150)
    )
    query = "{ " + " ".join(f"...R{n}" for n in range(150)) + " } " + fragments
    [error] = analyse(query).errors
    assert "'customers', asked for 150 times in one selection set on Query" in error.message


@pytest.mark.parametrize(("outer", "inner", "refused"), [(5, 5, False), (20, 20, True)])
def test_repeats_below_repeats_multiply(outer: int, inner: int, refused: bool) -> None:
    # Each pair of the outer fields compares every pair of the inner ones: 20 x 20 copies
    # would take graphql-core's overlap check most of a second.
    query = "{ " + ("customers { nodes { " + "data { email } " * inner + "} } ") * outer + "}"
    errors = analyse(query).errors
    assert bool(errors) is refused
    assert all("comparisons" in error.message for error in errors)


def chain(length: int) -> str:
    fragments = " ".join(f"fragment F{n} on Query {{ ...F{n + 1} }}" for n in range(length))
    return f"{{ ...F0 }} {fragments} fragment F{length} on Query {{ __typename }}"


def test_a_long_chain_of_fragments_does_not_exhaust_the_stack() -> None:
    assert analyse(chain(60)).errors == ()
    # graphql-core's rules give up on a far longer one; the refusal says what to do.
    assert [e.message for e in analyse(chain(600)).errors] == [
        "The document is too large or repetitive to validate; send a smaller one."
    ]


def test_fragments_on_a_cycle_are_bounded_before_validation() -> None:
    query = (
        "{ ...A } fragment A on Query { ...B " + "customers { nodes { id } } " * 490 + "} "
        "fragment B on Query { ...A }"
    )
    [error] = analyse(query).errors
    assert "'customers', asked for 490 times" in error.message


def test_cyclic_fragments_are_refused_by_validation() -> None:
    query = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A __typename }"
    assert [e.message for e in analyse(query).errors] == [
        "Cannot spread fragment 'A' within itself via 'B'."
    ]


def test_says_what_to_do_when_validation_gives_up() -> None:
    query = "{ " + " ".join(f"f{n}" for n in range(120)) + " }"
    errors = analyse(query).errors
    assert len(errors) == 101
    assert errors[-1].message == (
        "The document is too large or repetitive to validate; send a smaller one."
    )


# -- the cost as a function of the variables ----------------------------------------------------

PAGE = "query Page($n: Int{}) {{ customers(first: $n) {{ nodes {{ id }} }} }}"


@pytest.mark.parametrize(
    ("default", "variables", "cost"),
    [
        ("", {}, 1 + 20 * 2),  # no value: the default page
        ("", {"n": 100}, 1 + 100 * 2),
        (" = 100", {}, 1 + 100 * 2),  # a default is priced like an explicit value
        (" = 100", {"n": 5}, 1 + 5 * 2),
        (" = 100", {"n": None}, 1 + 20 * 2),  # an explicit null overrides the default
    ],
)
def test_variables_and_their_defaults_are_priced(
    default: str, variables: dict[str, Any], cost: int
) -> None:
    analysis = analyse(PAGE.format(default), "Page")
    assert analysis.cost(variables) == cost


@pytest.mark.parametrize(
    ("query", "priced"),
    [
        ("query($id: String!) { customer(externalCustomerId: $id) { id } }", False),
        (
            "query($id: String!) { customers(first: 3) { nodes { id } } "
            "a: customer(externalCustomerId: $id) { id } }",
            False,
        ),
        (PAGE.format(""), True),
        ("query($n: Int) { customers(last: $n) { nodes { id } } }", True),
        ("query($n: Int) { ...F } fragment F on Query { customers(first: $n) { nodes { id } } }",
         True),
        ("query($r: [_Any!]!) { _entities(representations: $r) { ... on Customer { id } } }", True),
        ("query($c: _Any!) { _entities(representations: [$c]) { ... on Customer { id } } }", True),
    ],
)  # fmt: skip
def test_a_cost_no_variable_can_change_is_worked_out_once(query: str, priced: bool) -> None:
    """The plan keeps its cost as a constant when no variable reaches what the cost reads;
    then any variables give the same cost as the full evaluation."""
    analysis = analyse(query)
    assert analysis.plan is not None
    assert (analysis.plan.constant is None) is priced


def test_entities_cost_once_per_representation() -> None:
    query = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Customer { id } } }"
    representations = [{"__typename": "Customer", "id": str(n)} for n in range(7)]
    assert analyse(query).cost({"r": representations}) == 1 + 7 * 1


def test_refusals_put_scopes_before_cost() -> None:
    query = "{ a: customers(first: 100) { nodes { data { email } kycVerifications { status } } } }"
    analysis = Analyser(schema._schema, Limits(max_cost=100)).analyse(query, None)
    assert [(e.extensions or {})["code"] for e in analysis.refusals(WRITE, {})] == ["FORBIDDEN"] * 4
    [too_costly] = analysis.refusals(READ, {})
    assert too_costly.message.startswith("The query would cost 901; at most 100 is allowed.")
    assert Analyser(schema._schema, Limits()).analyse(query, None).refusals(READ, {}) == []


# -- the cache ---------------------------------------------------------------------------------


def test_the_cache_keeps_one_analysis_per_text_and_operation() -> None:
    analyser = Analyser(schema._schema, Limits(), entries=2)
    first = analyser.analyse("query A { __typename } query B { __typename }", "A")
    assert analyser.analyse("query A { __typename } query B { __typename }", "A") is first
    assert analyser.analyse("query A { __typename } query B { __typename }", "B") is not first
    analyser.analyse("{ __typename }", None)  # a third: the least recently used goes
    assert analyser.analyse("query A { __typename } query B { __typename }", "A") is not first


def test_the_cache_is_bounded_by_characters() -> None:
    analyser = Analyser(schema._schema, Limits(), characters=100)
    texts = [f"{{ __typename {'  ' * 20}}} # {n}" for n in range(5)]
    analyses = [analyser.analyse(text, None) for text in texts]
    assert analyser.analyse(texts[-1], None) is analyses[-1]
    assert analyser.analyse(texts[0], None) is not analyses[0]


def test_introspection_off_is_a_validation_rule() -> None:
    closed = build_schema(introspection=False).analyser
    errors = closed.analyse("{ __schema { queryType { name } } }", None).errors
    assert errors[0].message == (
        "GraphQL introspection has been disabled, but the requested query contained the "
        "field '__schema'."
    )
    assert closed.analyse("{ __typename }", None).errors == ()
