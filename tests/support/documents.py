"""Made-up GraphQL requests over the customer types, for tests/test_compiled.py.

`requests(catalog)` is a hypothesis strategy of whole HTTP requests: a document of one to
three operations, its variables, an operation name, GET or POST, an Accept header. The
documents use what a client may write over the customer types: aliases (reused for the same
field and arguments, which merges, and now and then clashing), named and inline fragments,
@skip and @include with literals and with Boolean variables (given, omitted, null, or with a
default), repeated fields that merge, variables with defaults, arguments past the limits.
About a quarter of the documents may be wrong on purpose (unknown fields and arguments,
wrong variable types, clashing aliases, a missing operation name): the answer to a refused
document must be the same bytes too. The rest are valid but for what only the data decides
(a cursor that is not one, a page past the largest).

Every choice is drawn so that shrinking leads to the plain case: the first item of a list,
no alias, no directive, a literal rather than a variable.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from hypothesis import strategies as st
from strawberry.utils.str_converters import to_camel_case

from db.rules import DATA_FIELDS

T = TypeVar("T")


@dataclass(frozen=True)
class Catalog:
    """Values that mean something in the seeded database (and some that mean nothing)."""

    external_ids: tuple[str, ...]  # existing ones first, then missing, deleted, odd ones
    node_ids: tuple[str, ...]  # customers', verifications', a deleted one's, bogus ones
    emails: tuple[str, ...]
    cursors: tuple[str, ...]  # of the default order first, then of other orders
    instants: tuple[str, ...]  # DateTime values; the last two are not valid ones
    # Who else may send a request, besides the client's own key with every scope: (what it
    # is, its Authorization header). What each may read is checked by the same analysis.
    credentials: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class EnumValue:
    """An enum value: a bare name in a document, a string in the variables."""

    name: str


class Omitted:
    def __repr__(self) -> str:
        return "OMITTED"


OMITTED = Omitted()  # a variable left out of the variables, or a request without "variables"


def graphql_value(value: Any) -> str:
    """`value` written as a GraphQL literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        # JSON's escapes are GraphQL's; non-ASCII characters stay as they are.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(graphql_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {graphql_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no GraphQL literal for {value!r}")


def json_value(value: Any) -> Any:
    """`value` as it goes in the variables (enum values as their names)."""
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, list):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def global_id(type_name: str, key: int | str) -> str:
    """A global id as schema/ids.py makes them (written out here, to make odd ones too)."""
    return base64.urlsafe_b64encode(f"{type_name}:{key}".encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Request:
    """One GraphQL request over HTTP."""

    document: str
    variables: Any = OMITTED  # OMITTED: no "variables" entry at all
    operation_name: str | None = None
    method: str = "POST"  # or GET
    accept: str | None = None  # None: httpx's default, */*
    customer_only: bool = False  # only customer root fields (what the compiled path may cover)
    credential: tuple[str, str] | None = None  # None: the client's own key

    async def send(self, client: httpx.AsyncClient) -> httpx.Response:
        headers = {} if self.accept is None else {"accept": self.accept}
        if self.credential is not None:
            headers["authorization"] = self.credential[1]
        if self.method == "GET":
            params = {"query": self.document}
            if self.variables is not OMITTED:
                params["variables"] = json.dumps(self.variables, ensure_ascii=False)
            if self.operation_name is not None:
                params["operationName"] = self.operation_name
            return await client.get("/graphql", params=params, headers=headers)
        body: dict[str, Any] = {"query": self.document}
        if self.variables is not OMITTED:
            body["variables"] = self.variables
        if self.operation_name is not None:
            body["operationName"] = self.operation_name
        headers["content-type"] = "application/json"
        content = json.dumps(body, ensure_ascii=False).encode()
        return await client.post("/graphql", content=content, headers=headers)

    def __str__(self) -> str:
        variables = (
            "(no variables entry)"
            if self.variables is OMITTED
            else json.dumps(self.variables, ensure_ascii=False, indent=1)
        )
        sender = "the test key" if self.credential is None else self.credential[0]
        return (
            f"{self.method} /graphql, Accept: {self.accept or '*/*'}, "
            f"operationName: {self.operation_name!r}, sent with {sender}\n"
            f"--- document\n{self.document}\n--- variables\n{variables}"
        )


# The fields of each type: (name, the type of its selection set, or None for a leaf).
WRITTEN = (
    ("customer", "Customer"),
    ("userErrors", "UserError"),
    ("warnings", "UserWarning"),
    ("__typename", None),
)
PROBLEM = (("field", None), ("code", None), ("message", None), ("__typename", None))
FIELDS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "Customer": (
        ("id", None),
        ("externalCustomerId", None),
        ("data", "CustomerData"),
        ("kycStatus", None),
        ("kycVerifications", "KycVerification"),
        ("createdAt", None),
        ("updatedAt", None),
        ("__typename", None),
    ),
    "CustomerData": tuple(
        (name, None) for name in (*(to_camel_case(n) for n in DATA_FIELDS), "__typename")
    ),
    "KycVerification": (
        ("id", None),
        ("type", None),
        ("status", None),
        ("createdAt", None),
        ("updatedAt", None),
        ("__typename", None),
    ),
    "CustomerConnection": (
        ("edges", "CustomerEdge"),
        ("nodes", "Customer"),
        ("pageInfo", "PageInfo"),
        ("totalCount", None),
        ("__typename", None),
    ),
    "CustomerEdge": (("cursor", None), ("node", "Customer"), ("__typename", None)),
    "PageInfo": (
        ("hasNextPage", None),
        ("hasPreviousPage", None),
        ("startCursor", None),
        ("endCursor", None),
        ("__typename", None),
    ),
    "Node": (("id", None), ("__typename", None)),
    # The event feed.
    "CustomerEventConnection": (
        ("edges", "CustomerEventEdge"),
        ("nodes", "CustomerEvent"),
        ("pageInfo", "PageInfo"),
        ("__typename", None),
    ),
    "CustomerEventEdge": (("cursor", None), ("node", "CustomerEvent"), ("__typename", None)),
    "CustomerEvent": (
        ("id", None),
        ("cursor", None),
        ("type", None),
        ("externalCustomerId", None),
        ("status", None),
        ("previousStatus", None),
        ("changedFields", None),
        ("actor", None),
        ("occurredAt", None),
        ("verification", "KycVerification"),
        ("customer", "Customer"),  # graphql-core's to answer
        ("__typename", None),
    ),
    # The customer writes' payloads.
    **dict.fromkeys(("CreateCustomerPayload", "UpdateCustomerPayload"), WRITTEN),
    "DeleteCustomerPayload": (
        ("deletedExternalCustomerId", None),
        ("userErrors", "UserError"),
        ("__typename", None),
    ),
    **dict.fromkeys(("UserError", "UserWarning"), PROBLEM),
    "KycVerificationPayload": (
        ("verification", "KycVerification"),
        ("customer", "Customer"),
        ("userErrors", "UserError"),
        ("__typename", None),
    ),
}
# The type conditions of fragments inside each type: those that may apply, and those that
# never can (a validation error). Types not named here take only their own name.
CONDITIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Customer": (("Customer", "Node"), ("KycVerification",)),
    "KycVerification": (("KycVerification", "Node"), ("Customer",)),
    "Node": (("Customer", "KycVerification", "Node"), ()),
}
# Mistakes a client makes in a selection set of each type, answered with validation errors.
MISTAKES: dict[str, tuple[str, ...]] = {
    "Customer": (
        "emial",
        "data",
        "id { value }",
        "kycVerifications(first: 1) { id }",
        "customer { id }",
    ),
    "CustomerData": ("mail", "email(format: LOWER)"),
    "KycVerification": ("state", "customer { id }"),
    "CustomerConnection": ("edges", "count", "pageInfo { total }"),
    "CustomerEventConnection": ("events", "totalCount"),
    "CustomerEventEdge": ("event",),
    "CustomerEvent": ("kind", "changedFields { name }"),
    "CustomerEdge": ("node", "position"),
    "PageInfo": ("hasMore",),
    "Node": ("externalCustomerId", "status"),
    "CreateCustomerPayload": ("customers { id }", "errors"),
    "UpdateCustomerPayload": ("customer", "userErrors { path }"),
    "DeleteCustomerPayload": ("customer { id }", "deleted"),
    "UserError": ("path", "code { name }"),
    "UserWarning": ("severity",),
    "KycVerificationPayload": ("warnings { code }", "verification"),
}
# Root fields outside the customer types: the compiled path must leave these to graphql-core.
OTHER_ROOT_FIELDS = (
    '_entities(representations: [{__typename: "Customer", externalCustomerId: "c-1"}]) '
    "{ ... on Customer { id kycStatus } }",
    '__type(name: "Customer") { name kind }',
    "__schema { queryType { name } }",
    "webhookEndpoints { id url }",
)
KYC_STATUSES = tuple(
    EnumValue(name)
    for name in (
        "PENDING",
        "VERIFIED",
        "UNDER_REVIEW",
        "REJECTED",
        "EXPIRED",
        "VERIFIED_MANUALLY",
        "REJECTED_MANUALLY",
    )
)
ORDER_FIELDS = tuple(
    EnumValue(name) for name in ("CREATED_AT", "UPDATED_AT", "EXTERNAL_CUSTOMER_ID", "EMAIL")
)
DIRECTIONS = (EnumValue("DESC"), EnumValue("ASC"))
OPERATION_NAMES = ("Q", "Customers", "Lookup", "Other")
ACCEPTS = (
    None,
    "application/json",
    "application/graphql-response+json",
    "application/graphql-response+json, application/json;q=0.9",
)


INTEGERS: dict[tuple[int, int], st.SearchStrategy[int]] = {}


@dataclass
class Operation:
    """What one operation of the document being made has so far."""

    definitions: list[str] = field(default_factory=list)  # "$v1: Int = 3"
    booleans: list[str] = field(default_factory=list)  # its variables usable as an `if:`
    fragments: dict[str, list[str]] = field(default_factory=dict)  # type: names of fragments
    arguments: dict[str, str] = field(default_factory=dict)  # root response name: arguments


class Document:
    """Draws one document, operation by operation, keeping what the operations share."""

    def __init__(self, draw: st.DrawFn, catalog: Catalog) -> None:
        self.draw = draw
        self.catalog = catalog
        self.values: dict[str, Any] = {}  # the variables given, of every operation
        self.fragments: list[str] = []  # the definitions, in the order they were made
        self.building: set[str] = set()  # fragments whose bodies are being drawn
        self.variables = 0
        self.fragment_names = 0
        self.customer_only = True
        self.operation = Operation()
        self.wrong = self.chance(25)  # whether this document may hold mistakes
        self.strategies = strategies_for(catalog, self.wrong)

    # Choices, each shrinking to its plain side.

    # Every choice is a draw of an integer from a strategy made once (a document takes a
    # couple of hundred draws, and making strategies anew costs more than drawing).

    def count(self, low: int, high: int) -> int:
        strategy = INTEGERS.get((low, high))
        if strategy is None:
            strategy = INTEGERS[(low, high)] = st.integers(low, high)
        return self.draw(strategy)

    def chance(self, percent: int) -> bool:
        """True with this probability; shrinks to False."""
        return self.count(0, 99) >= 100 - percent

    def mistake(self, percent: int) -> bool:
        """Whether to make a mistake here: never in a document meant to be valid."""
        return self.wrong and self.chance(percent)

    def pick(self, options: Sequence[T]) -> T:
        """One of the options; shrinks to the first."""
        return options[self.count(0, len(options) - 1)]

    # Values: literals, or variables given, left out, null or of the wrong type.

    def value(
        self,
        type_: str,
        values: st.SearchStrategy[Any],
        wrong: st.SearchStrategy[Any],
    ) -> str:
        """An argument's value: a literal, or a new variable of type `type_`."""
        if not self.chance(40):
            return graphql_value(self.draw(wrong if self.mistake(5) else values))
        return self.variable(type_, values, wrong)

    def variable(
        self, type_: str, values: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]
    ) -> str:
        self.variables += 1
        name = f"v{self.variables}"
        definition = f"${name}: {type_}"
        if self.chance(20):
            definition += f" = {graphql_value(self.draw(values))}"
        self.operation.definitions.append(definition)
        required = type_.endswith("!") and "=" not in definition
        self.give(name, required, not type_.endswith("!"), values, wrong)
        return f"${name}"

    def give(
        self,
        name: str,
        required: bool,
        nullable: bool,
        values: st.SearchStrategy[Any],
        wrong: st.SearchStrategy[Any],
    ) -> None:
        """The variable's value: given, left out (its default, or null), null, or wrong.
        Leaving out a required one (Type!, no default) is a mistake, as is a null where the
        value must not be null (Type!, or an argument of type Type! even with a default),
        or a wrong one."""
        how = self.count(0, 99)
        if how >= 94 and self.wrong:
            self.values[name] = json_value(self.draw(wrong))
        elif how >= 87 and (nullable or self.wrong):
            self.values[name] = None
        elif how >= 75 and (not required or self.wrong):
            pass
        else:
            self.values[name] = json_value(self.draw(values))

    def condition(self) -> str:
        """The `if:` of @skip or @include."""
        if not self.chance(50):
            return self.pick(("true", "false"))
        if self.operation.booleans and self.chance(40):
            return self.pick(self.operation.booleans)
        # Boolean (no default) may not stand where Boolean! is expected: a validation error.
        type_ = self.pick(("Boolean!", "Boolean = true", "Boolean = false", "Boolean! = true"))
        if self.mistake(5):
            type_ = "Boolean"
        self.variables += 1
        name = f"v{self.variables}"
        self.operation.definitions.append(f"${name}: {type_}")
        wrong = st.sampled_from(["true", 1])
        self.give(name, type_ == "Boolean!", False, st.booleans(), wrong)
        self.operation.booleans.append(f"${name}")
        return f"${name}"

    def directives(self) -> str:
        if not self.chance(15):
            return ""
        used = self.pick((("include",), ("skip",), ("include", "skip")))
        if self.mistake(5):
            used = ("skip", "skip")  # twice in one place: a validation error
        return "".join(f" @{name}(if: {self.condition()})" for name in used)

    def alias(self, name: str) -> str:
        """No alias mostly; else one that always names the same field (so fields that share
        it merge), and now and then `clash`, which may name different fields: an error."""
        how = self.count(0, 99)
        if how < 80:
            return ""
        if self.mistake(10):
            return "clash: "
        return f"{name.strip('_')}_{self.count(1, 2)}: "

    # Selection sets.

    def selection_set(self, type_: str, depth: int, budget: int) -> str:
        most = 4 if depth < 3 else 2  # keeps documents small: each is validated twice
        items = [self.selection(type_, depth + 1, budget) for _ in range(self.count(1, most))]
        pad = "  " * depth
        return "{\n" + "".join(f"{pad}  {item}\n" for item in items) + pad + "}"

    def selection(self, type_: str, depth: int, budget: int) -> str:
        if type_ == "Query":
            return self.root_selection(depth, budget)
        how = self.count(0, 99)
        if how < 76 or budget <= 0:
            name, inner = self.pick(FIELDS[type_])
            text = f"{self.alias(name)}{name}{self.directives()}"
            if inner is None:
                return text
            return f"{text} {self.selection_set(inner, depth, budget - 1)}"
        if how < 87:
            return self.inline_fragment(type_, depth, budget)
        if how < 97 or not self.mistake(70):
            return self.fragment_spread(type_, budget)
        return self.pick(MISTAKES[type_])

    def condition_of(self, type_: str) -> str:
        """A type condition for a fragment in a selection set of `type_`."""
        fitting, never = CONDITIONS.get(type_, ((type_,), ()))
        return self.pick(never if never and self.mistake(5) else fitting)

    def inline_fragment(self, type_: str, depth: int, budget: int) -> str:
        if self.chance(25):
            head, inner = "...", type_
        else:
            inner = self.condition_of(type_)
            head = f"... on {inner}"
        directives = self.directives()
        return f"{head}{directives} {self.selection_set(inner, depth, budget - 1)}"

    def fragment_spread(self, type_: str, budget: int) -> str:
        condition = self.condition_of(type_)
        made = self.operation.fragments.setdefault(condition, [])
        reusable = [name for name in made if name not in self.building]
        if reusable and self.chance(50):
            name = self.pick(reusable)
        else:
            self.fragment_names += 1
            name = f"F{self.fragment_names}"
            self.building.add(name)
            body = self.selection_set(condition, 0, budget - 1)
            self.building.remove(name)
            self.fragments.append(f"fragment {name} on {condition} {body}")
            made.append(name)
        return f"...{name}{self.directives()}"

    def root_selection(self, depth: int, budget: int) -> str:
        how = self.count(0, 99)
        if how < 30:
            return self.root_field("customer", self.customer_arguments, "Customer", depth, budget)
        if how < 62 or (how < 96 and budget <= 0):
            connection = "CustomerConnection"
            return self.root_field("customers", self.customers_arguments, connection, depth, budget)
        if how < 76:
            return self.root_field("node", self.node_arguments, "Node", depth, budget)
        if how < 82:
            connection = "CustomerEventConnection"
            return self.root_field(
                "customerEvents", self.events_arguments, connection, depth, budget
            )
        if how < 90:
            return f"{self.alias('__typename')}__typename{self.directives()}"
        if how < 96:
            head = self.pick(("... on Query", "..."))
            directives = self.directives()
            return f"{head}{directives} {self.selection_set('Query', depth, budget - 1)}"
        if how < 99 or not self.mistake(70):
            self.customer_only = False  # graphql-core's to answer
            return self.pick(OTHER_ROOT_FIELDS)
        return self.pick(("customer { id }", "customers(limit: 5) { totalCount }", "customerz"))

    def root_field(
        self,
        name: str,
        make_arguments: Callable[[], str],
        type_: str,
        depth: int,
        budget: int,
    ) -> str:
        # A response name keeps the arguments it was first given, so the root fields under
        # one name merge (but now and then they differ: a validation error).
        arguments = self.operation.arguments
        alias = self.alias(name)
        response_name = alias.removesuffix(": ") or name
        if response_name in arguments and not self.mistake(10):
            given = arguments[response_name]
        else:
            given = make_arguments()
            arguments.setdefault(response_name, given)
        selection = self.selection_set(type_, depth, budget - 1)
        return f"{alias}{name}{given}{self.directives()} {selection}"

    # Arguments of the root fields.

    def customer_arguments(self) -> str:
        values = self.strategies
        return f"(externalCustomerId: {self.value('String!', values.external_ids, WRONG_TEXT)})"

    def node_arguments(self) -> str:
        ids = self.strategies.node_ids
        if self.chance(5):
            ids = st.just(1)  # an ID may be given as an integer
        return f"(id: {self.value('ID!', ids, WRONG_IDS)})"

    def customers_arguments(self) -> str:
        values = self.strategies
        given = []
        forward = self.chance(50)
        if forward:
            given.append(f"first: {self.value('Int', values.sizes, WRONG_SIZES)}")
        # A cursor is signed for one order: with orderBy, most are refused.
        ordered = self.chance(30)
        if self.chance(8 if ordered else 25):
            given.append(f"after: {self.value('String', values.cursors, WRONG_TEXT)}")
        if (not forward and self.chance(30)) or self.mistake(10):  # with first: an error
            given.append(f"last: {self.value('Int', values.sizes, WRONG_SIZES)}")
        if self.chance(4 if ordered else 12):
            given.append(f"before: {self.value('String', values.cursors, WRONG_TEXT)}")
        if self.chance(30):
            given.append(f"filter: {self.value('CustomerFilter', values.filters, BAD_FILTERS)}")
        if ordered:
            given.append(f"orderBy: {self.value('CustomerOrder', ORDERS, BAD_ORDERS)}")
        if self.mistake(4):
            given.append("limit: 5")
        if self.chance(20):
            given = self.draw(st.permutations(given))  # the order of arguments is free
        return f"({', '.join(given)})" if given else ""

    def events_arguments(self) -> str:
        values = self.strategies
        given = []
        if self.chance(50):
            given.append(f"first: {self.value('Int', values.sizes, WRONG_SIZES)}")
        if self.chance(20):  # a customer's cursor is refused: another ordering
            given.append(f"after: {self.value('String', values.cursors, WRONG_TEXT)}")
        if self.chance(40):
            filters = values.event_filters
            given.append(f"filter: {self.value('CustomerEventFilter', filters, BAD_FILTERS)}")
        if self.mistake(4):
            given.append("last: 5")
        return f"({', '.join(given)})" if given else ""


@dataclass(frozen=True)
class Strategies:
    """The values of the root fields' arguments, in a valid document or a wrong one."""

    external_ids: st.SearchStrategy[str]
    node_ids: st.SearchStrategy[Any]
    sizes: st.SearchStrategy[int | None]
    cursors: st.SearchStrategy[str]
    filters: st.SearchStrategy[dict[str, Any]]
    event_filters: st.SearchStrategy[dict[str, Any]]


@functools.cache
def strategies_for(catalog: Catalog, wrong: bool) -> Strategies:
    """Made once per catalog: a document draws from them a few times each."""
    ids = st.lists(st.sampled_from(catalog.external_ids), max_size=3)
    if wrong:
        ids |= st.just([f"c-{n}" for n in range(101)])  # more than 100
    # The last two instants are not ones.
    instants = st.sampled_from(catalog.instants if wrong else catalog.instants[:-2])
    optional: dict[str, st.SearchStrategy[Any]] = {
        "externalCustomerIds": ids | st.none(),
        "email": st.sampled_from(catalog.emails) | st.none(),
        "search": st.sampled_from(SEARCHES) | st.none(),
        "country": st.sampled_from(["US", "gb", "DE", "BR", "XX", ""]) | st.none(),
        "kycStatus": st.lists(st.sampled_from(KYC_STATUSES), max_size=3) | st.none(),
        "hasKycVerification": st.booleans() | st.none(),
        "createdAfter": instants | st.none(),
        "createdBefore": instants | st.none(),
    }
    # Past the limits (101, -1), or a cursor that is not one: refused by the resolver.
    sizes = [2, 3, 1, 0, 5, 20, 100, None, 101, *([-1] if wrong else [])]
    odd = ["bogus", "", "Y3Vy"] if wrong else ["bogus"]
    return Strategies(
        external_ids=st.sampled_from(catalog.external_ids),
        node_ids=st.sampled_from(catalog.node_ids),
        sizes=st.sampled_from(sizes),
        cursors=st.sampled_from([*catalog.cursors, *odd]),
        filters=st.fixed_dictionaries({}, optional=optional),
        event_filters=st.fixed_dictionaries(
            {},
            optional={
                "types": st.lists(st.sampled_from(EVENT_TYPES), max_size=2) | st.none(),
                "externalCustomerId": st.sampled_from(catalog.external_ids) | st.none(),
            },
        ),
    )


EVENT_TYPES = tuple(
    EnumValue(name)
    for name in (
        "CUSTOMER_CREATED",
        "CUSTOMER_UPDATED",
        "CUSTOMER_DELETED",
        "KYC_VERIFICATION_STARTED",
        "KYC_VERIFICATION_STATUS_CHANGED",
    )
)
SEARCHES = ["c", "ann", "", "Zo", "zoë", "ZOË", "😀", "%", "_", "c-1", "lee", "t-"]
ORDERS = st.fixed_dictionaries(
    {}, optional={"field": st.sampled_from(ORDER_FIELDS), "direction": st.sampled_from(DIRECTIONS)}
)
WRONG_TEXT = st.sampled_from([5, True, ["c-1"], {"id": "c-1"}])
WRONG_IDS = st.sampled_from([1.5, True, ["x"], None])
WRONG_SIZES = st.sampled_from(["3", 1.5, 2**31, True])
BAD_FILTERS = st.sampled_from([{"bogus": 1}, {"country": 5}, "US", {"kycStatus": ["DONE"]}])
BAD_ORDERS = st.sampled_from([{"field": "NAME"}, {"direction": "asc"}, {"field": None}, "ASC"])


@st.composite
def requests(draw: st.DrawFn, catalog: Catalog) -> Request:
    """One request: a document of one to three operations, and how it is sent."""
    document = Document(draw, catalog)
    how_many = draw(st.sampled_from([1, 1, 1, 1, 1, 1, 2, 2, 3]))
    operations: list[str] = []
    names: list[str | None] = []
    for n in range(how_many):
        document.operation = Operation()
        if how_many == 1 and not document.chance(50):
            name = None
        elif document.mistake(10):
            name = document.pick(OPERATION_NAMES)  # perhaps one that is taken: an error
        else:
            name = OPERATION_NAMES[n]
        body = document.selection_set("Query", 0, 3)
        definitions = document.operation.definitions
        if name is None and not definitions and document.chance(50):
            operations.append(body)  # the shorthand: a query without its keyword
        else:
            head = "query" + (f" {name}" if name else "")
            if definitions:
                head += f"({', '.join(definitions)})"
            operations.append(f"{head} {body}")
        names.append(name)
    if all(names) and document.chance(3):
        operations.append("mutation Change { __typename }")
        names.append("Change")
    if document.mistake(5):
        document.fragments.append("fragment Unused on Customer { id }")

    # The operation to run: the one there is, or one named; now and then a name that is
    # missing (with several operations) or wrong.
    if document.mistake(20):
        operation_name = document.pick((None, "Missing"))
    elif len(names) > 1:
        operation_name = document.pick(names)
    else:
        operation_name = names[0] if document.chance(30) else None
    if operation_name == "Change":
        document.customer_only = False

    variables: Any = dict(document.values)
    if variables and document.chance(5):
        variables["unused"] = "extra"  # a variable no operation defines: ignored
    if not variables:
        variables = draw(st.sampled_from([OMITTED, {}, None]))
    order = draw(st.sampled_from([0, 0, 0, 1]))  # fragments after the operations, or before
    parts = operations + document.fragments if order == 0 else document.fragments + operations
    return Request(
        document="\n\n".join(parts),
        variables=variables,
        operation_name=operation_name,
        method="GET" if document.chance(15) else "POST",
        accept=draw(st.sampled_from(ACCEPTS)),
        customer_only=document.customer_only,
        credential=(
            document.pick(catalog.credentials)
            if catalog.credentials and document.chance(20)
            else None
        ),
    )


# Writes: one customer mutation (what the compiled path may answer), its input literal or in
# variables, right or wrong, and any selection of its payload.

WRITES = (
    "createCustomer",
    "updateCustomer",
    "deleteCustomer",
    "startKycVerification",
    "recordKycResult",
    "reviewKycVerification",
)
PAYLOADS = {
    "createCustomer": "CreateCustomerPayload",
    "updateCustomer": "UpdateCustomerPayload",
    "deleteCustomer": "DeleteCustomerPayload",
}
INPUTS = {
    "createCustomer": "CreateCustomerInput",
    "updateCustomer": "UpdateCustomerInput",
    "deleteCustomer": "DeleteCustomerInput",
    "startKycVerification": "StartKycVerificationInput",
    "recordKycResult": "RecordKycResultInput",
    "reviewKycVerification": "ReviewKycVerificationInput",
}
# Data fields and values: valid ones, ones a rule refuses, and blanks.
DATA_VALUES: dict[str, tuple[str | None, ...]] = {
    "phone": ("+14155550123", "415-555-0123", "12", "+442071838750", None),
    "firstName": ("Ann", "Zoë", "  ", "x" * 101, None),
    "lastName": ("Lee", "O'Neil", None),
    "street": ("1 Main St", None),
    "street2": ("Apt 4", "", None),
    "state": ("CA", "ZZ", "ny", None),
    "city": ("Boston", "Paris", None),
    "zip": ("02139", "02139-1234", "1", None),
    "country": ("US", "gb", "XX", None),
}
NEW_EMAILS = ("w@example.com", "W@EXAMPLE.COM", "x+tag@example.com", "nope", "z@mailinator.com")
WRONG_INPUTS = st.sampled_from([5, "c-1", [], {"externalCustomerId": 5}])


@st.composite
def writes(draw: st.DrawFn, catalog: Catalog) -> Request:
    """A mutation of one customer write, sometimes beside __typename, sometimes sent with
    another of the catalog's credentials."""
    document = Document(draw, catalog)
    write = document.pick(WRITES)
    payload = PAYLOADS.get(write, "KycVerificationPayload")
    input_type = INPUTS[write]
    given = draw(_inputs(document, write))
    if document.chance(50):
        argument = document.variable(f"{input_type}!", st.just(given), WRONG_INPUTS)
    else:
        argument = graphql_value(given)
    selection = document.selection_set(payload, 1, 3)
    fields = [f"{document.alias(write)}{write}(input: {argument}) {selection}"]
    if document.chance(15):
        fields.insert(document.count(0, 1), f"{document.alias('__typename')}__typename")
    definitions = document.operation.definitions
    head = "mutation" + (" Write" if document.chance(50) else "")
    if definitions:
        head += f"({', '.join(definitions)})"
    body = "{\n  " + "\n  ".join(fields) + "\n}"
    variables: Any = dict(document.values) or draw(st.sampled_from([OMITTED, {}, None]))
    return Request(
        document="\n\n".join([f"{head} {body}", *document.fragments]),
        variables=variables,
        accept=draw(st.sampled_from(ACCEPTS)),
        customer_only=True,
        credential=(
            document.pick(catalog.credentials)
            if catalog.credentials and document.chance(30)
            else None
        ),
    )


def _inputs(document: Document, write: str) -> st.SearchStrategy[dict[str, Any]]:
    """The input of a write: an id, and data (a new customer's or a patch), sometimes wrong."""
    ids = st.sampled_from((*document.catalog.external_ids, "w-1", "w-2", "a b"))
    if write in ("deleteCustomer", "startKycVerification"):
        kind = {"type": st.just(EnumValue("PROOF_OF_ID"))} if write != "deleteCustomer" else {}
        return st.fixed_dictionaries({"externalCustomerId": ids}, optional=kind)
    if write in ("recordKycResult", "reviewKycVerification"):
        verifications = st.sampled_from(document.catalog.node_ids)
        if write == "recordKycResult":
            outcome = {"status": st.sampled_from(KYC_STATUSES)}
        else:
            outcome = {"decision": st.sampled_from((EnumValue("APPROVE"), EnumValue("REJECT")))}
        return st.fixed_dictionaries({"verificationId": verifications, **outcome})
    emails = st.sampled_from((*document.catalog.emails, *NEW_EMAILS))
    optional = {name: st.sampled_from(values) for name, values in DATA_VALUES.items()}
    if write == "createCustomer":
        data = st.fixed_dictionaries({"email": emails}, optional=optional)
    else:
        data = st.fixed_dictionaries({}, optional={"email": emails | st.none(), **optional})
    if document.mistake(30):
        # What graphql-core refuses: a field the type lacks, a number, a missing or null id.
        wrong: st.SearchStrategy[dict[str, Any]] = data.map(lambda d: {**d, "nickname": "X"})
        wrong |= data.map(lambda d: {**d, "city": 7})
        return st.fixed_dictionaries({"data": wrong}, optional={"externalCustomerId": st.none()})
    return st.fixed_dictionaries({"externalCustomerId": ids, "data": data})
