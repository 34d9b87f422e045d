"""Each field of the customer and event types has one definition (schema/fields.py), and both
executors are made from it: every Strawberry resolver of those types is the one `fields.field`
makes from its definition, and the compiled path builds exactly the fields defined there. A
field of those types left undefined is one the compiled path declines by a decision written
down in test_compiled_coverage.py (`CustomerEvent.customer`). What the definitions do is
proven on both executors by the behaviour tests (test_kyc.py's expiry, test_customers_api.py's
sandbox warnings, test_events.py's feed, test_compiled.py's byte-identity twins)."""

from __future__ import annotations

from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLOutputType
from strawberry.utils.str_converters import to_camel_case

from schema import schema
from schema.access import PERSONAL_FIELDS
from schema.compiled.plan import COVERED
from schema.fields import CLASSES, FIELDS, OWNERS, Need
from tests.test_compiled_coverage import FALLS_BACK


def graphql_type(type_name: str) -> GraphQLObjectType:
    found = schema._schema.get_type(type_name)
    assert isinstance(found, GraphQLObjectType), type_name
    return found


def named(output: GraphQLOutputType) -> str:
    while isinstance(output, GraphQLNonNull | GraphQLList):
        output = output.of_type
    return str(output.name)


def undefined(type_name: str) -> set[str]:
    """The fields of a defined type that the compiled path leaves to a resolver of their own."""
    return {
        coordinate.split(".")[1]
        for coordinate in FALLS_BACK
        if coordinate.split(".")[0] == type_name
    }


def test_every_field_of_a_defined_type_is_defined_once() -> None:
    assert "CustomerEvent" in FIELDS
    for type_name, definitions in FIELDS.items():
        in_schema = set(graphql_type(type_name).fields)
        assert in_schema - undefined(type_name) == set(definitions), type_name


def test_only_the_event_s_customer_is_left_undefined() -> None:
    assert {type_name: undefined(type_name) for type_name in FIELDS if undefined(type_name)} == {
        "CustomerEvent": {"customer"}
    }


def test_every_resolver_of_a_defined_type_is_made_from_its_definition() -> None:
    assert set(CLASSES) == set(FIELDS)
    for type_name, cls in CLASSES.items():
        in_schema = set(graphql_type(type_name).fields) - undefined(type_name)
        resolved = {}
        for field in cls.__strawberry_definition__.fields:
            name = field.graphql_name or to_camel_case(field.python_name)
            if name not in in_schema:
                continue  # the private source
            assert field.base_resolver is not None, f"{type_name}.{name} has no resolver"
            resolved[name] = getattr(field.base_resolver.wrapped_func, "coordinate", None)
        assert resolved == {name: f"{type_name}.{name}" for name in in_schema}


def test_object_fields_name_the_type_they_show() -> None:
    for type_name, definitions in FIELDS.items():
        fields = graphql_type(type_name).fields
        for name, definition in definitions.items():
            output = named(fields[name].type)
            shows_object = isinstance(schema._schema.get_type(output), GraphQLObjectType)
            assert definition.of == (output if shows_object else None), f"{type_name}.{name}"
            if definition.reads is not None:
                assert definition.reads in definition.needs


def test_personal_fields_are_guarded_by_their_owner() -> None:
    for coordinate in PERSONAL_FIELDS:
        type_name, name = coordinate.split(".")
        assert name in FIELDS[type_name], coordinate
        assert type_name in OWNERS, coordinate


def test_the_compiled_path_builds_the_defined_fields() -> None:
    for type_name, definitions in FIELDS.items():
        assert COVERED[type_name] == set(definitions), type_name


def test_only_the_verifications_and_the_cursors_are_read_beside_a_row() -> None:
    """Each is read by both executors, their own way: a new one needs a reader in
    `fields.field` and a `Source` of the compiled path's that holds it."""
    needs = {
        f"{type_name}.{name}": set(definition.needs)
        for type_name, definitions in FIELDS.items()
        for name, definition in definitions.items()
        if definition.needs
    }
    assert needs == {
        "Customer.kycVerifications": {Need.VERIFICATIONS},
        "PageInfo.startCursor": {Need.CURSORS},
        "PageInfo.endCursor": {Need.CURSORS},
        "CustomerEvent.cursor": {Need.EVENT_CURSOR},
        "CustomerEvent.verification": {Need.EVENT_VERIFICATION},
    }
