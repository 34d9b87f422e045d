"""Input objects for the compiled path, coerced as graphql-core coerces them, or refused.

A mutation's `input` arrives as a variable's JSON value or as a literal in the document.
graphql-core checks either against the input type: no field the type lacks, every non-null
field present and not null, a default for what is absent where the type has one, and a
String only from a string. Here the same rules give the input as a dict by GraphQL field
names (absent fields left out), an enum by its value's name and an ID as a string; anything
they refuse, and any other type, raises `Unsupported`, so that graphql-core answers with its
own error.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from graphql import (
    BooleanValueNode,
    EnumValueNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLID,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLString,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    StringValueNode,
    Undefined,
    ValueNode,
    VariableNode,
)

from schema.compiled.selection import Unsupported

ABSENT = object()  # a literal's field whose variable was not given: as if it were left out


class EnumName(str):
    """An enum value written in a document (a bare name); a string there is refused."""

    @property
    def name(self) -> str:
        return str(self)


def coerce_input(value: Any, type_: GraphQLInputType) -> Any:
    """`value` (JSON, or a literal made into it by `from_literal`) coerced to `type_`."""
    if isinstance(type_, GraphQLNonNull):
        if value is None:
            raise Unsupported("null for a non-null input")
        return coerce_input(value, type_.of_type)
    if value is None:
        return None
    if type_ is GraphQLString:
        if type(value) is not str:
            raise Unsupported("a String that is not a string")
        return value
    if type_ is GraphQLID:  # a string, or an integer written as one
        if type(value) is int:
            return str(value)
        if type(value) is not str:
            raise Unsupported("an ID that is neither a string nor an integer")
        return value
    if type_ is GraphQLBoolean:
        if type(value) is not bool:
            raise Unsupported("a Boolean that is not a boolean")
        return value
    if isinstance(type_, GraphQLList):  # a single value stands for a list of one
        items = value if isinstance(value, list) else [value]
        if any(item is ABSENT for item in items):
            raise Unsupported("a list item whose variable was not given")
        return [coerce_input(item, type_.of_type) for item in items]
    if isinstance(type_, GraphQLScalarType) and type_.name == "DateTime":
        try:  # the scalar's own parse (schema/scalars.py), as graphql-core calls it
            return type_.parse_value(value)
        except (GraphQLError, ValueError, TypeError):
            raise Unsupported("a DateTime the scalar refuses") from None
    if isinstance(type_, GraphQLEnumType):
        if isinstance(value, EnumName):
            value = value.name
        elif type(value) is not str:  # a variable's enum value is a string
            raise Unsupported("an enum value that is not a name")
        if value not in type_.values:
            raise Unsupported("a name the enum lacks")
        return value
    if not isinstance(type_, GraphQLInputObjectType) or type_.is_one_of:
        raise Unsupported(f"an input of type {type_}")
    if not isinstance(value, dict) or not set(value) <= set(type_.fields):
        raise Unsupported("an input object with fields its type lacks")
    coerced: dict[str, Any] = {}
    for name, field in type_.fields.items():
        given = value.get(name, ABSENT)
        if given is not ABSENT:
            coerced[name] = coerce_input(given, field.type)
        elif field.default_value is not Undefined:
            default = field.default_value  # an enum's is its Python member: named as the rest
            coerced[name] = default.name if isinstance(default, enum.Enum) else default
        elif isinstance(field.type, GraphQLNonNull):
            raise Unsupported("a required input field is missing")
    return coerced


def from_literal(node: ValueNode, variables: Mapping[str, Any], missing: object) -> Any:
    """A literal input value with its variables' values in place: JSON-like, for
    `coerce_input`. An object field whose variable was not given (`missing`) is left out,
    as graphql-core's value_from_ast leaves it."""
    if isinstance(node, VariableNode):
        value = variables.get(node.name.value, missing)
        return ABSENT if value is missing else value
    if isinstance(node, NullValueNode):
        return None
    if isinstance(node, StringValueNode):
        return node.value
    if isinstance(node, EnumValueNode):
        return EnumName(node.value)
    if isinstance(node, IntValueNode):
        return int(node.value)  # an ID's; an Int where a String stands is refused
    if isinstance(node, BooleanValueNode):
        return node.value
    if isinstance(node, ListValueNode):
        return [from_literal(item, variables, missing) for item in node.values]
    if isinstance(node, ObjectValueNode):
        fields = {f.name.value: from_literal(f.value, variables, missing) for f in node.fields}
        return {name: value for name, value in fields.items() if value is not ABSENT}
    raise Unsupported("a literal of a type the compiled inputs do not take")
