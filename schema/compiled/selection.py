"""Field collection as the GraphQL specification defines it (CollectFields), for the compiler.

graphql-core runs this per object at execution time; the compiler runs it once per document
and per set of values of the variables its `@skip`/`@include` directives read, and compiles
what it collects. The order of response keys, which fields merge under one key, which
fragment is visited once, and which type conditions apply follow graphql-core's
`collect_fields` exactly (the byte-identity tests compare the two).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import (
    BooleanValueNode,
    DirectiveNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
    VariableNode,
    is_abstract_type,
)

Fields = dict[str, list[FieldNode]]  # response key -> the field nodes merged under it


class Unsupported(Exception):
    """The compiled path does not cover this document or request: graphql-core answers it."""


def condition_variables(
    selection_sets: Iterable[SelectionSetNode],
) -> set[str]:
    """The variables that `@skip(if:)` and `@include(if:)` read anywhere below."""
    found: set[str] = set()
    stack = list(selection_sets)
    while stack:
        selection_set = stack.pop()
        for selection in selection_set.selections:
            for directive in selection.directives or ():
                for argument in directive.arguments or ():
                    if isinstance(argument.value, VariableNode):
                        found.add(argument.value.name.value)
            child = getattr(selection, "selection_set", None)
            if child is not None:
                stack.append(child)
    return found


class Collector:
    """Collects the fields of selection sets for one document and one set of condition values."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        conditions: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.conditions = conditions

    def fields(self, type_name: str, selection_sets: Iterable[SelectionSetNode]) -> Fields:
        """The fields of these selection sets (those of one response key's field nodes) on an
        object of `type_name`: one visit of each fragment across all of them."""
        fields: Fields = {}
        visited: set[str] = set()
        for selection_set in selection_sets:
            self._collect(type_name, selection_set, fields, visited)
        return fields

    def subfields(self, type_name: str, nodes: list[FieldNode]) -> Fields:
        return self.fields(type_name, [n.selection_set for n in nodes if n.selection_set])

    def _collect(
        self, type_name: str, selection_set: SelectionSetNode, fields: Fields, visited: set[str]
    ) -> None:
        for selection in selection_set.selections:
            if not self._included(selection.directives or ()):
                continue
            if isinstance(selection, FieldNode):
                key = (selection.alias or selection.name).value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or self._applies(condition.name.value, type_name):
                    self._collect(type_name, selection.selection_set, fields, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = self.fragments.get(name)
                if fragment is None or not self._applies(
                    fragment.type_condition.name.value, type_name
                ):
                    continue
                self._collect(type_name, fragment.selection_set, fields, visited)

    def _included(self, directives: Iterable[DirectiveNode]) -> bool:
        # Every condition is read before any decides, as graphql-core reads @skip and then
        # @include: a condition it could not read must not go unnoticed here.
        flags = [(d.name.value, self._flag(d)) for d in directives]
        return not any((name == "skip") is flag for name, flag in flags)

    def _flag(self, directive: DirectiveNode) -> bool:
        name = directive.name.value
        if name not in ("skip", "include"):
            raise Unsupported(f"the @{name} directive")
        (argument,) = directive.arguments or ()  # validation: exactly `if`
        value = argument.value
        if isinstance(value, VariableNode):
            flag = self.conditions.get(value.name.value)
        elif isinstance(value, BooleanValueNode):
            flag = value.value
        else:
            raise Unsupported("a condition that is not a Boolean")
        if not isinstance(flag, bool):
            raise Unsupported("a condition variable without a Boolean value")
        return flag

    def _applies(self, condition: str, type_name: str) -> bool:
        """Whether a fragment on `condition` applies to an object of `type_name`."""
        if condition == type_name:
            return True
        abstract = self.schema.get_type(condition)
        concrete = self.schema.get_type(type_name)
        return (
            abstract is not None
            and is_abstract_type(abstract)
            and self.schema.is_sub_type(abstract, concrete)  # type: ignore[arg-type]
        )
