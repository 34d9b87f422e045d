"""A document's operation compiled into a plan: what to read, and code that builds the answer.

The plan covers queries whose root fields are `customer(externalCustomerId:)`, `node(id:)`,
`customers` (every argument), `customerEvents` (every argument) and `__typename`, selecting
anything of Customer, CustomerData, KycVerification, the connections, their edges and page
info, and of CustomerEvent all but its `customer`; and mutations of one customer or KYC
write (beside any `__typename`), their payloads selecting anything but the customer's
`kycVerifications`.
All with aliases, fragments, inline fragments, and `@skip`/`@include` on literals or Boolean
variables.
Anything else raises `Unsupported` and graphql-core answers.

For each set of values of the condition variables, the collected selection is turned into
the source of one Python function per root field, a nested dict display in response-key
order, so building an answer is one call per customer rather than one resolver per field.
Each field's value is generated from its one definition in schema/fields.py, from which the
Strawberry resolvers are made too: a column becomes an attribute access, a function is
called from the code's namespace, and the field's GraphQL type says how the value is shown
(an enum by its name, a DateTime as text, an object or a list built in turn).
No field the plan covers can fail or be null where the schema says non-null, so the
specification's null propagation has nothing to do here; a database failure abandons the
plan and graphql-core answers (and reports) the request.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    IntValueNode,
    NamedTypeNode,
    NonNullTypeNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from strawberry.utils.str_converters import to_camel_case

from db.rules import DATA_FIELDS
from schema import ids
from schema.access import PERSONAL_FIELDS
from schema.compiled.inputs import ABSENT, coerce_input, from_literal
from schema.compiled.selection import Collector, Fields, Unsupported, condition_variables
from schema.fields import FIELDS, MAKERS, Need, PageEnds, maker_name
from schema.scalars import serialize as datetime_text

DATA_COLUMNS = {to_camel_case(name): name for name in DATA_FIELDS}  # a write input's data fields
BUILDS = 16  # sets of condition values whose builders a plan keeps

# An ID variable is taken as a string only (graphql-core also turns an integer into one).
_SCALARS = {"String": str, "ID": str, "Int": int, "Boolean": bool}
MISSING = object()  # a variable neither given nor defaulted


@dataclass(frozen=True)
class Variable:
    """A variable the operation declares, maybe with a default: a String, Int or Boolean, an
    input object (`input_type`: a mutation's input, a list's filter or order), or of another
    type (`kind` None) that the plan takes only when it is null or absent."""

    name: str
    kind: type | None
    non_null: bool
    default: Any = MISSING
    input_type: GraphQLInputObjectType | None = None

    def coerce(self, given: Mapping[str, Any], into: dict[str, Any]) -> None:
        """Sets the coerced value in `into` (left out when absent, as graphql-core does);
        Unsupported where graphql-core would refuse the value (its error is the answer)."""
        if self.name not in given:
            if self.default is not MISSING:
                into[self.name] = self.default
            elif self.non_null:
                raise Unsupported("a required variable is missing")
            return
        value = given[self.name]
        if value is None:
            if self.non_null:
                raise Unsupported("a required variable is null")
        elif self.input_type is not None:
            value = coerce_input(value, self.input_type)
        elif type(value) is not self.kind or (
            isinstance(value, int) and not -(2**31) <= value < 2**31
        ):
            raise Unsupported("a variable graphql-core would coerce or refuse")
        into[self.name] = value


@dataclass(frozen=True)
class Root:
    """A root field: its response key, what it reads (`kind`), its arguments' sources."""

    key: str
    kind: str  # "customer", "customers", "node", a WRITES mutation, or "__typename"
    arguments: Mapping[str, ValueNode]
    node: FieldNode  # where an error of the field points


@dataclass
class Built:
    """The plan for one set of condition values: per root field, its builder and needs."""

    roots: list[tuple[Root, Callable[..., Any], Needs]]


@dataclass
class Plan:
    schema: GraphQLSchema
    operation: OperationDefinitionNode
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: tuple[Variable, ...]
    conditions: tuple[str, ...]  # the variables @skip and @include read
    built: dict[tuple[Any, ...], Built | None] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return self.operation.operation is OperationType.MUTATION

    def coerce(self, given: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for variable in self.variables:
            variable.coerce(given, values)
        return values

    def for_conditions(self, values: Mapping[str, Any]) -> Built:
        """The builders for these values of the condition variables; Unsupported, remembered
        too, when the plan cannot cover them. At most BUILDS sets are kept: n conditions
        have 3^n, and each set's builders are compiled code."""
        key = tuple(values.get(name) for name in self.conditions)
        if key not in self.built:
            if len(self.built) >= BUILDS:  # a client varying many conditions: oldest goes
                del self.built[next(iter(self.built))]
            try:
                self.built[key] = _build(self, Collector(self.schema, self.fragments, values))
            except Unsupported:
                self.built[key] = None
        built = self.built[key]
        if built is None:
            raise Unsupported("a selection the plan does not cover")
        return built


def compile_plan(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None) -> Plan:
    """The plan of the operation `operation_name` runs; Unsupported when there is none."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        if len(operations) != 1:
            raise Unsupported("no single operation")
        (operation,) = operations
    else:
        named = [o for o in operations if o.name and o.name.value == operation_name]
        if len(named) != 1:
            raise Unsupported("no operation of that name")
        (operation,) = named
    if operation.operation is OperationType.SUBSCRIPTION or operation.directives:
        raise Unsupported("not a plain query or mutation")
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    variables = tuple(
        _variable(schema, definition) for definition in operation.variable_definitions or ()
    )
    conditions = condition_variables(
        [operation.selection_set, *(f.selection_set for f in fragments.values())]
    )
    return Plan(schema, operation, fragments, variables, tuple(sorted(conditions)))


def _variable(schema: GraphQLSchema, definition: Any) -> Variable:
    type_node, non_null = definition.type, False
    if isinstance(type_node, NonNullTypeNode):
        type_node, non_null = type_node.type, True
    kind, input_type = None, None
    if isinstance(type_node, NamedTypeNode):
        kind = _SCALARS.get(type_node.name.value)
        named = schema.get_type(type_node.name.value)
        if isinstance(named, GraphQLInputObjectType) and named.name in _INPUTS:
            input_type = named
    if kind is None and input_type is None and non_null:
        raise Unsupported("a required variable of a type the plan does not take")
    default: Any = MISSING
    if definition.default_value is not None:
        if input_type is not None:
            raise Unsupported("an input object variable with a default")
        default = _literal(definition.default_value, kind)
    return Variable(definition.variable.name.value, kind, non_null, default, input_type)


def _literal(node: ValueNode, kind: type | None) -> Any:
    if isinstance(node, NullValueNode):
        return None
    if kind is str and isinstance(node, StringValueNode):
        return node.value
    if kind is int and isinstance(node, IntValueNode):
        return int(node.value)
    if kind is bool and isinstance(node, BooleanValueNode):
        return node.value
    raise Unsupported("a literal of another type")


def argument(node: ValueNode, variables: Mapping[str, Any], kind: type | None) -> Any:
    """An argument's value: a literal, or a variable's coerced value (`MISSING` when absent)."""
    if isinstance(node, VariableNode):
        return variables.get(node.name.value, MISSING)
    return _literal(node, kind)


def input_argument(
    schema: GraphQLSchema, mutation: str, node: ValueNode, variables: Mapping[str, Any]
) -> dict[str, Any]:
    """A write's `input`, coerced to its type: from a variable (coerced with the others) or a
    literal; Unsupported where graphql-core would refuse it."""
    if isinstance(node, VariableNode):
        value = variables.get(node.name.value, MISSING)
    else:
        literal = from_literal(node, variables, MISSING)
        value = MISSING if literal is ABSENT else literal
    if value is MISSING or value is None:
        raise Unsupported("no input")  # graphql-core's error
    input_type = schema.get_type(_WRITES[mutation][0])
    assert isinstance(input_type, GraphQLInputObjectType)
    coerced: dict[str, Any] = coerce_input(value, input_type)
    return coerced


# The input object arguments of the lists, by root field and argument.
_ARGUMENT_INPUTS = {
    ("customers", "filter"): "CustomerFilter",
    ("customers", "orderBy"): "CustomerOrder",
    ("customerEvents", "filter"): "CustomerEventFilter",
}


def input_value(
    schema: GraphQLSchema, field: str, name: str, node: ValueNode, variables: Mapping[str, Any]
) -> Any:
    """An input object argument of a list (`_ARGUMENT_INPUTS`), coerced to its type as a
    dict, None, or `MISSING` (a variable not given); Unsupported where graphql-core would
    refuse it."""
    if isinstance(node, VariableNode):
        return variables.get(node.name.value, MISSING)  # coerced with the others
    literal = from_literal(node, variables, MISSING)
    if literal is ABSENT:
        return MISSING
    input_type = schema.get_type(_ARGUMENT_INPUTS[(field, name)])
    assert isinstance(input_type, GraphQLInputObjectType)
    return coerce_input(literal, input_type)


# -- code generation ---------------------------------------------------------------------------

# The mutations the plan covers: the type of their `input`, and of their payload.
_WRITES = {
    "createCustomer": ("CreateCustomerInput", "CreateCustomerPayload"),
    "updateCustomer": ("UpdateCustomerInput", "UpdateCustomerPayload"),
    "deleteCustomer": ("DeleteCustomerInput", "DeleteCustomerPayload"),
    "startKycVerification": ("StartKycVerificationInput", "KycVerificationPayload"),
    "recordKycResult": ("RecordKycResultInput", "KycVerificationPayload"),
    "reviewKycVerification": ("ReviewKycVerificationInput", "KycVerificationPayload"),
}
# The input objects a variable may hold: a write's input, and the lists' filters and orders.
_INPUTS = {
    *(input_type for input_type, _ in _WRITES.values()),
    "CustomerFilter",
    "CustomerOrder",
    "CustomerEventFilter",
}
ROOT_ARGUMENTS = {
    "customer": {"externalCustomerId"},
    "customers": {"first", "after", "last", "before", "filter", "orderBy"},
    "customerEvents": {"first", "after", "filter"},
    "node": {"id"},
    **{mutation: {"input"} for mutation in _WRITES},
}
# Root arguments taken only as null (or a variable that is null or absent): none now.
NULL_ONLY_ARGUMENTS: dict[str, tuple[str, ...]] = {}
# The generated code's namespace: a global id, how a DateTime is shown, a page's ends, and
# the function of every field made by one (schema/fields.py).
_HELPERS: dict[str, Any] = {
    "_id": ids.encode,
    "_at": datetime_text,
    "_ends": PageEnds,
    **MAKERS,
}


def _build(plan: Plan, collector: Collector) -> Built:
    roots: list[tuple[Root, Callable[..., Any], Needs]] = []
    root_type = "Mutation" if plan.writes else "Query"
    fields = collector.fields(root_type, [plan.operation.selection_set])
    writes = [nodes[0].name.value for nodes in fields.values() if nodes[0].name.value in _WRITES]
    if plan.writes and len(writes) != 1:
        # Exactly one write: the compiled path falls back to graphql-core on a failure, which
        # must never run a write that an earlier root field of the request had committed.
        raise Unsupported("a mutation with other than one write")
    for key, nodes in fields.items():
        name = nodes[0].name.value
        if name == "__typename":
            root = Root(key, name, {}, nodes[0])
            roots.append((root, _constant(root_type), _Code(collector)))
            continue
        if name not in ROOT_ARGUMENTS or (name in _WRITES) is not plan.writes:
            raise Unsupported(f"the root field {name}")
        if plan.writes and _nullable_write(plan.schema, name):
            # A failed write's answer (CompiledPath.answer) nulls `data` for its payload.
            raise Unsupported("a write whose payload may be null")
        arguments = {a.name.value: a.value for a in nodes[0].arguments or ()}
        if not set(arguments) <= ROOT_ARGUMENTS[name]:
            raise Unsupported("arguments the plan does not take")
        code = _Code(collector)
        if name == "customer":
            body = code.customer(collector.subfields("Customer", nodes), "c")
            source = f"def build(c, now, ttl):\n    return {body}\n"
        elif name in _WRITES:
            payload = _WRITES[name][1]
            body = code.payload(payload, collector.subfields(payload, nodes))
            source = f"def build(o, now, ttl):\n    return {body}\n"
        elif name == "node":
            # The object's type is known once it is read: a builder for each type it can be.
            customer = code.customer(collector.subfields("Customer", nodes), "c")
            verification = code.verification(collector.subfields("KycVerification", nodes))
            source = (
                "def build(c, v, now, ttl):\n"
                f"    return {customer} if c is not None else {verification}\n"
            )
        elif name == "customerEvents":
            body = code.events(collector.subfields("CustomerEventConnection", nodes))
            source = f"def build(page, end, total, now, ttl):\n    return {body}\n"
        else:
            body = code.connection(collector.subfields("CustomerConnection", nodes))
            source = f"def build(page, end, total, now, ttl):\n    return {body}\n"
        namespace = dict(_HELPERS)
        # The source is ours: expressions of this module and response keys, which are GraphQL
        # names (letters, digits, underscores; the parser checked them) written with repr().
        exec(compile(source, f"<plan {key}>", "exec"), namespace)
        root = Root(key, name, arguments, nodes[0])
        roots.append((root, namespace["build"], code))
    return Built(roots)


def _nullable_write(schema: GraphQLSchema, name: str) -> bool:
    mutation = schema.mutation_type
    return mutation is None or not isinstance(mutation.fields[name].type, GraphQLNonNull)


def _constant(value: Any) -> Callable[..., Any]:
    return lambda *_args: value


class Needs:
    """What a root field's builder reads besides the customers' columns."""

    verifications: bool  # each customer's verifications
    event_verifications: bool  # each event's verification, as it is now
    cursors: bool  # the page's cursors
    total: bool  # the count of every match
    personal: bool  # a customer's personal fields (access.PERSONAL_FIELDS)


class Source(NamedTuple):
    """Where generated code finds a field's source: an expression for it, and one for each
    thing read with it (schema/fields.py's `Need`s: a customer's verifications, an event's
    cursor and verification), where it was read."""

    row: str
    beside: Mapping[Need, str] = {}


class _Code(Needs):
    """Python expressions for selections, generated from schema/fields.py's definitions;
    notes what they need (`Needs`)."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.verifications = False
        self.event_verifications = False
        self.cursors = False
        self.total = False
        self.personal = False
        self.names = itertools.count()

    def _object(
        self, type_name: str, fields: Fields, value_of: Callable[[str, list[FieldNode]], str | None]
    ) -> str:
        """A dict display of `fields` in order: each key's value is `value_of` its field."""
        entries = []
        for key, nodes in fields.items():
            name = nodes[0].name.value
            if name == "__typename":
                value: str | None = repr(type_name)
            elif name in COVERED[type_name]:
                value = value_of(name, nodes)
            else:
                value = None
            self.personal = self.personal or f"{type_name}.{name}" in PERSONAL_FIELDS
            if value is None:
                raise Unsupported(f"{type_name}.{name}")
            entries.append(f"{key!r}: {value}")
        return "{" + ", ".join(entries) + "}"

    def _sub(self, type_name: str, nodes: list[FieldNode]) -> Fields:
        return self.collector.subfields(type_name, nodes)

    def _name(self) -> str:
        return f"_{next(self.names)}"

    def defined(self, type_name: str, fields: Fields, source: Source) -> str:
        """An object of `type_name` (a type of schema/fields.py's FIELDS) from `source`."""
        graphql_type = self.collector.schema.get_type(type_name)
        assert isinstance(graphql_type, GraphQLObjectType)
        definitions = FIELDS[type_name]

        def value_of(name: str, nodes: list[FieldNode]) -> str:
            definition = definitions[name]
            needs = definition.needs
            self.verifications = self.verifications or Need.VERIFICATIONS in needs
            self.event_verifications = self.event_verifications or Need.EVENT_VERIFICATION in needs
            self.cursors = self.cursors or bool({Need.CURSORS, Need.EVENT_CURSOR} & needs)
            output = graphql_type.fields[name].type
            if definition.reads is not None:
                read = source.beside.get(definition.reads)
                if read is None:
                    raise Unsupported(f"{type_name}.{name} not read here")  # another read
                return self._shown(read, output, nodes, simple=True)
            if definition.column is not None:
                return self._shown(f"{source.row}.{definition.column}", output, nodes, simple=True)
            if definition.node is not None:
                return f"_id({definition.node!r}, {source.row}.id)"
            if definition.make is not None:
                made = f"{maker_name(f'{type_name}.{name}')}({source.row}, now, ttl)"
                return self._shown(made, output, nodes, simple=False)
            # The source itself, seen as another type (Customer.data).
            of = _named(output)
            return self.defined(of.name, self._sub(of.name, nodes), source)

        return self._object(type_name, fields, value_of)

    def _shown(
        self, raw: str, output: GraphQLOutputType, nodes: list[FieldNode], simple: bool
    ) -> str:
        """The JSON value of `raw`, a value of the GraphQL type `output` in the db layer's
        terms: an enum by its name, a DateTime as text, an object or list built in turn.
        `raw` is evaluated once unless `simple` (a name or an attribute)."""
        nullable = not isinstance(output, GraphQLNonNull)
        inner = output.of_type if isinstance(output, GraphQLNonNull) else output
        uses = 1
        template: Callable[[str], str]
        if isinstance(inner, GraphQLList):
            item = self._name()
            each = self._shown(item, inner.of_type, nodes, simple=True)
            if each == item:  # a list of scalars shown as they are
                return raw
            template = lambda value: f"[{each} for {item} in {value}]"  # noqa: E731
        elif isinstance(inner, GraphQLObjectType):
            uses = 2
            template = lambda value: self.defined(  # noqa: E731
                inner.name, self._sub(inner.name, nodes), Source(value)
            )
        elif isinstance(inner, GraphQLEnumType):  # db enums mirror the GraphQL ones by name
            template = lambda value: f"{value}.name"  # noqa: E731
        elif isinstance(inner, GraphQLScalarType) and inner.name == "DateTime":
            template = lambda value: f"_at({value})"  # noqa: E731
        else:  # String, ID, Boolean, Int: as they are, null as null
            return raw
        if not nullable and (simple or uses == 1):
            return template(raw)
        if simple:
            return f"(None if {raw} is None else {template(raw)})"
        name = self._name()
        return f"(None if ({name} := {raw}) is None else {template(name)})"

    def customer(self, fields: Fields, c: str) -> str:
        """A customer `c` (a CustomerRow)."""
        beside = {Need.VERIFICATIONS: f"{c}.verifications"}
        return self.defined("Customer", fields, Source(f"{c}.row", beside))

    def verification(self, fields: Fields) -> str:
        """A verification `v`."""
        return self.defined("KycVerification", fields, Source("v"))

    def connection(self, fields: Fields) -> str:
        def value_of(name: str, nodes: list[FieldNode]) -> str | None:
            if name == "nodes":
                return f"[{self.customer(self._sub('Customer', nodes), 'c')} for c in page.rows]"
            if name == "edges":
                edge = self._object("CustomerEdge", self._sub("CustomerEdge", nodes), edges)
                return f"[{edge} for c, cursor in zip(page.rows, page.cursors or page.rows)]"
            if name == "pageInfo":
                return self.page_info("CustomerConnection", nodes)
            if name == "totalCount":
                self.total = True
                return "total"
            return None

        def edges(name: str, nodes: list[FieldNode]) -> str | None:
            if name == "node":
                return self.customer(self._sub("Customer", nodes), "c")
            if name == "cursor":
                self.cursors = True
                return "cursor"
            return None

        return self._object("CustomerConnection", fields, value_of)

    def events(self, fields: Fields) -> str:
        """A page of the feed: each event `e` (an EventRow) with its cursor, and `v`, its
        verification as it is now (None for none, or once deleted)."""
        self.cursors = True  # each event shows its own cursor: made whatever is selected
        rows = "for e, cursor in zip(page.rows, page.cursors) for v in (e.verification,)"
        source = Source("e.row", {Need.EVENT_CURSOR: "cursor", Need.EVENT_VERIFICATION: "v"})

        def event(nodes: list[FieldNode]) -> str:
            return self.defined("CustomerEvent", self._sub("CustomerEvent", nodes), source)

        def edges(name: str, nodes: list[FieldNode]) -> str | None:
            if name == "node":
                return event(nodes)
            return "cursor" if name == "cursor" else None

        def value_of(name: str, nodes: list[FieldNode]) -> str | None:
            if name == "nodes":
                return f"[{event(nodes)} {rows}]"
            if name == "edges":
                edge = self._object(
                    "CustomerEventEdge", self._sub("CustomerEventEdge", nodes), edges
                )
                return f"[{edge} {rows}]"
            if name == "pageInfo":
                return self.page_info("CustomerEventConnection", nodes)
            return None

        return self._object("CustomerEventConnection", fields, value_of)

    def page_info(self, connection: str, nodes: list[FieldNode]) -> str:
        """A page's `page` PageInfo, as customer_list.page_info makes it: an empty page ends
        at `end` (the events' after; None for customers)."""
        ends = "_ends(page.has_next, page.has_previous, page.cursors, end)"
        output = self.collector.schema.get_type(connection)
        assert isinstance(output, GraphQLObjectType)
        return self._shown(ends, output.fields["pageInfo"].type, nodes, simple=False)

    def payload(self, type_name: str, fields: Fields) -> str:
        """A write's payload, from its outcome `o` (schema/fields.py says which: a customer
        write's `CustomerOutcome`, a delete's `Deleted`, a KYC write's `VerificationOutcome`)."""
        return self.defined(type_name, fields, Source("o"))


def _named(output: GraphQLOutputType) -> GraphQLObjectType:
    named = output.of_type if isinstance(output, GraphQLNonNull) else output
    assert isinstance(named, GraphQLObjectType)
    return named


# Every `Type.field` a plan builds, by type: `_Code._object` declines any other, and the
# document falls back to graphql-core (tests/test_compiled_coverage.py writes them down).
# Each field of schema/fields.py's table is built from its definition; the connection and its
# edges are built here.
COVERED: dict[str, frozenset[str]] = {
    "Query": frozenset(name for name in ROOT_ARGUMENTS if name not in _WRITES),
    "Mutation": frozenset(_WRITES),
    **{type_name: frozenset(definitions) for type_name, definitions in FIELDS.items()},
    "CustomerConnection": frozenset({"nodes", "edges", "pageInfo", "totalCount"}),
    "CustomerEdge": frozenset({"node", "cursor"}),
    "CustomerEventConnection": frozenset({"nodes", "edges", "pageInfo"}),
    "CustomerEventEdge": frozenset({"node", "cursor"}),
}


def covered_fields(schema: GraphQLSchema) -> set[str]:
    """The `Type.field`s of `schema` a plan builds."""
    covered = set()
    for type_name, names in COVERED.items():
        graphql_type = schema.get_type(type_name)
        fields = getattr(graphql_type, "fields", {})
        covered |= {f"{type_name}.{name}" for name in names if name in fields}
    return covered
