"""Limits on what one request may ask for, all checked before any resolver runs.

Tokens bound the parser's work; depth, aliases and directives are validation rules; the cost
is computed from the document and its variables (page sizes multiply what they contain) just
before execution, and reported in `extensions.cost` of every response that ran.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
    DirectiveNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    value_from_ast_untyped,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    SchemaExtension,
)

from schema.customer_list import DEFAULT_PAGE, MAX_PAGE
from schema.documents import fragments_of, operations_of

TOO_COMPLEX = "QUERY_TOO_COMPLEX"


@dataclass(frozen=True)
class Limits:
    """Each a setting; the defaults leave room for every real client, GraphiQL included."""

    max_depth: int = 15  # GraphiQL's introspection query is 13 deep
    max_aliases: int = 30
    max_directives: int = 50
    max_tokens: int = 5_000
    max_cost: int = 10_000  # a page of 100 customers with their verifications costs ~2,300
    list_estimate: int = 5  # how many verifications a customer is assumed to have


def extensions(limits: Limits) -> list[Any]:
    """The schema extensions that enforce `limits`."""
    rules = [depth_rule(limits.max_depth), directives_rule(limits.max_directives)]
    return [
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: MaxAliasesLimiter(max_alias_count=limits.max_aliases),
        lambda: AddValidationRules(rules),
        lambda: CostLimiter(limits),
    ]


def _too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": TOO_COMPLEX})


def depth_rule(max_depth: int) -> type[ASTValidationRule]:
    """Fields nested at most `max_depth` deep, through fragments, introspection included."""

    class MaxDepth(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fragments = fragments_of(context.document)
            for definition in context.document.definitions:
                if isinstance(definition, OperationDefinitionNode):
                    depth = _depth(definition.selection_set, fragments, frozenset())
                    if depth > max_depth:
                        context.report_error(
                            _too_complex(
                                f"The query is {depth} fields deep; at most {max_depth} are "
                                "allowed."
                            )
                        )

    return MaxDepth


def _depth(
    selections: SelectionSetNode | None,
    fragments: Mapping[str, SelectionSetNode],
    seen: frozenset[str],
) -> int:
    if selections is None:
        return 0
    deepest = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            below = 1 + _depth(selection.selection_set, fragments, seen)
        elif isinstance(selection, InlineFragmentNode):
            below = _depth(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            # A cycle is refused by the standard rules; here it just stops the walk.
            below = 0 if name in seen else _depth(fragments.get(name), fragments, seen | {name})
        else:
            below = 0
        deepest = max(deepest, below)
    return deepest


def directives_rule(max_directives: int) -> type[ASTValidationRule]:
    """At most `max_directives` directive uses in a document."""

    class MaxDirectives(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.count = 0

        def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
            self.count += 1
            if self.count == max_directives + 1:
                self.report_error(
                    _too_complex(f"The document uses more than {max_directives} directives.")
                )

    return MaxDirectives


# Fields that return a list of many: what multiplies the cost of what is inside them.
PAGED_FIELDS = frozenset({"customers"})
ESTIMATED_LISTS = frozenset({"kycVerifications"})


class CostLimiter(SchemaExtension):
    """Refuse an operation whose estimated cost exceeds the limit; report every cost.

    A field costs 1 for each time it will be resolved: a page of `first: 100` customers makes
    everything inside it count 100 times, a customer's verifications `list_estimate` times,
    `_entities` once per representation. Introspection is priced like any other field.
    """

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits
        self.cost: int | None = None

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            fragments = fragments_of(document)
            operations = operations_of(document, context.operation_name)
            variables = context.variables or {}
            self.cost = sum(
                self._cost(op.selection_set, fragments, variables, 1, frozenset())
                for op in operations
            )
            if self.cost > self.limits.max_cost:
                context.result = GraphQLExecutionResult(
                    data=None,
                    errors=[
                        _too_complex(
                            f"The query would cost {self.cost}; at most {self.limits.max_cost} "
                            "is allowed. Ask for smaller pages or fewer fields."
                        )
                    ],
                )
        yield

    def get_results(self) -> dict[str, Any]:
        if self.cost is None:
            return {}
        return {"cost": {"requested": self.cost, "maximum": self.limits.max_cost}}

    def _cost(
        self,
        selections: SelectionSetNode | None,
        fragments: Mapping[str, SelectionSetNode],
        variables: Mapping[str, Any],
        times: int,
        seen: frozenset[str],
        page: int | None = None,
    ) -> int:
        """The cost of a selection set resolved `times` times. In a connection's selection
        set (`page` given) its `edges` and `nodes` come `page` times, the rest once."""
        if selections is None:
            return 0
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                here = times * page if page is not None and name in ("edges", "nodes") else times
                inner, child_page = here * self._multiplier(selection, variables), None
                if name in PAGED_FIELDS:
                    inner, child_page = here, self._page_size(selection, variables)
                below = self._cost(
                    selection.selection_set, fragments, variables, inner, seen, child_page
                )
                total += here + below
            elif isinstance(selection, InlineFragmentNode):
                total += self._cost(
                    selection.selection_set, fragments, variables, times, seen, page
                )
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                name = selection.name.value
                total += self._cost(
                    fragments.get(name), fragments, variables, times, seen | {name}, page
                )
        return total

    def _page_size(self, field: FieldNode, variables: Mapping[str, Any]) -> int:
        arguments = _arguments(field, variables)
        size = arguments.get("first") or arguments.get("last")
        if not isinstance(size, int):
            return DEFAULT_PAGE
        # A page over the maximum is refused by the field itself, with its own message.
        return min(max(1, size), MAX_PAGE)

    def _multiplier(self, field: FieldNode, variables: Mapping[str, Any]) -> int:
        """How many of what is inside a field there are, for a list field that is not paged."""
        name = field.name.value
        if name in ESTIMATED_LISTS:
            return self.limits.list_estimate
        if name == "_entities":
            representations = _arguments(field, variables).get("representations")
            return max(1, len(representations)) if isinstance(representations, list) else 1
        return 1


def _arguments(field: FieldNode, variables: Mapping[str, Any]) -> dict[str, Any]:
    return {
        argument.name.value: value_from_ast_untyped(argument.value, dict(variables))
        for argument in field.arguments or ()
    }
