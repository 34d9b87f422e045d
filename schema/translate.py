"""The one crossing between the db layer's names and the GraphQL ones.

`db/` names fields as its columns and write arguments (`first_name`, `verification_id`) and
has its own enums; GraphQL has input paths (`["input", "data", "firstName"]`) and enums of
its own, with descriptions. Problems and enum values cross here and nowhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypeVar

from strawberry.utils.str_converters import to_camel_case

from db import rules

E = TypeVar("E", bound=enum.Enum)

# Each GraphQL enum that mirrors a db enum, and that db enum: tests/test_schema.py holds
# every pair to the same members, so a value added on one side only fails a test, not a request.
MIRRORED: dict[type[enum.Enum], type[enum.Enum]] = {}


def mirrors(db_enum: type[enum.Enum]) -> Callable[[type[E]], type[E]]:
    """Declare a GraphQL enum the twin of `db_enum`: the same members, by name."""

    def register(graphql_enum: type[E]) -> type[E]:
        MIRRORED[graphql_enum] = db_enum
        return graphql_enum

    return register


def mirror(value: enum.Enum, into: type[E]) -> E:
    """`value`'s twin in the other layer's enum `into`: db to GraphQL, or back."""
    return into[value.name]


def input_path(field: str) -> list[str]:
    """Where a db field sits in a mutation's arguments: a customer's data fields under
    `input.data`, anything else (`external_customer_id`, `verification_id`) under `input`.
    Named as Strawberry names the inputs' attributes, which are the columns' names."""
    name = to_camel_case(field)
    return ["input", "data", name] if field in rules.DATA_FIELDS else ["input", name]


def changed_fields(columns: str) -> list[str]:
    """The contract's names of the data fields an event stored as changed (their columns,
    space-separated), in the contract's order."""
    changed = set(columns.split())
    return [to_camel_case(name) for name in rules.DATA_FIELDS if name in changed]
