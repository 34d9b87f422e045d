"""What a document asks for, worked out once per document and kept in a bounded cache.

`Analyser.analyse(text, operation_name)` parses the text, measures it in one pass over the
syntax tree (depth, aliases, directives, how many fields of a selection set share a response
name, which fields need which scopes, and a cost plan), refuses it before validation when it
is past a limit, validates it otherwise, and keeps the outcome, an `Analysis`, in an LRU cache
keyed by the text and the operation name. Each fragment is measured once, however often it is
spread, so the work is linear in the size of the document: a document of fragments that each
spread the next twice costs what its text costs, not 2^n.

Per request, what depends on the key and the variables is cheap: `Analysis.refusals(granted,
variables)` gives the FORBIDDEN errors (fields the key may not read) or else the
QUERY_TOO_COMPLEX error of a cost past the limit, and `Analysis.cost(variables)` the cost.
`ApplyAnalysis` does this for Strawberry's pipeline; any other execution path takes the same
`Analysis` from `schema.analyser` and applies the same limits, scopes and cost.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLCompositeType,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    NameNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    is_composite_type,
    parse,
    specified_rules,
    validate,
    value_from_ast_untyped,
)
from graphql import (
    ExecutionResult as GraphQLExecutionResult,
)
from graphql.type import SchemaMetaFieldDef, TypeMetaFieldDef, TypeNameMetaFieldDef
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from db.keys import Scope
from schema import access
from schema.customer_list import DEFAULT_PAGE, MAX_PAGE
from schema.errors import refuse, unreadable_number
from schema.limits import (
    ESTIMATED_LISTS,
    PAGED_FIELDS,
    REPRESENTATION_LISTS,
    ROW_FIELDS,
    Limits,
    aliases_error,
    cost_error,
    depth_error,
    directives_error,
    repeats_error,
)
from schema.text_input import literal_errors, variable_errors

# Bounds of the cache: entries, and characters of document text in all. A syntax tree takes
# about 100 bytes per character of its text, and every full pass of Python's garbage
# collector visits every node of every cached tree: 100,000 characters keep the cache near
# 10 MB and such a pass near 30 ms. A refused document keeps no tree (see _outline).
CACHE_ENTRIES = 256
CACHE_CHARACTERS = 100_000


@dataclass(frozen=True)
class Guarded:
    """A field the operation may resolve that needs a scope: the first place it occurs."""

    coordinate: str  # Type.field
    scopes: frozenset[Scope]  # any one of them allows it; empty: no key may read it
    node: FieldNode
    path: tuple[str, ...]  # response keys from the operation's root (lists have no index)


@dataclass(frozen=True)
class Analysis:
    """One document with one operation name, as far as running it goes.

    `errors` refuse it whatever the key and variables (syntax, a limit, validation); when
    there are none, `document` is what to execute and `refusals` says whether this request
    may run it. A refused document keeps only its operations' names and types.
    """

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    limits: Limits
    depth: int = 0
    aliases: int = 0
    directives: int = 0
    guarded: tuple[Guarded, ...] = ()
    plan: CostPlan | None = None
    # A string literal no column can store (NUL, a lone surrogate): refused when it would run.
    unstorable: tuple[GraphQLError, ...] = ()
    # What another step works out once from this document and keeps with it, so that it is
    # evicted with it and the cache's bounds hold for it too (the compiled path's plan).
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    _allowed: dict[frozenset[Scope], bool] = field(default_factory=dict, compare=False, repr=False)

    def required_scopes(self) -> dict[str, frozenset[Scope]]:
        """The scopes each guarded field needs (any one of them), by schema coordinate."""
        return {use.coordinate: use.scopes for use in self.guarded}

    def forbidden(self, granted: Collection[Scope]) -> list[GraphQLError]:
        """A FORBIDDEN error for each field that a key with `granted` may not read."""
        return [
            access.forbidden(use.coordinate, use.scopes, use.node, use.path)
            for use in self.guarded
            if use.scopes.isdisjoint(granted)
        ]

    def _allows(self, granted: Collection[Scope]) -> bool:
        """Whether a key with `granted` may read every field (`forbidden` is empty): kept
        with the analysis for each principal's scopes, which are few."""
        if not isinstance(granted, frozenset):
            return not self.forbidden(granted)
        allowed = self._allowed.get(granted)
        if allowed is None:
            allowed = not self.forbidden(granted)
            if len(self._allowed) < 16:  # tokens may carry scopes of any spelling: bounded
                self._allowed[granted] = allowed
        return allowed

    def cost(self, variables: Mapping[str, Any] | None) -> int:
        """The estimated cost with these variables (defaults apply where one is not given)."""
        return 0 if self.plan is None else self.plan.cost(variables or {}, self.limits)

    def refusals(
        self, granted: Collection[Scope], variables: Mapping[str, Any] | None
    ) -> list[GraphQLError]:
        """Why this request may not run: validation errors, else fields its key may not read,
        else a cost past the limit; empty when it may run."""
        if self.errors:
            return [_detached(error) for error in self.errors]
        if forbidden := self.forbidden(granted):
            return forbidden
        cost = self.cost(variables)
        return [cost_error(cost, self.limits)] if cost > self.limits.max_cost else []

    def admitted_cost(
        self, granted: Collection[Scope], variables: Mapping[str, Any] | None
    ) -> int | None:
        """The request's cost when it may run (`refusals` would be empty), else None: the
        cost is worked out once for both the check and the response's extensions."""
        if self.errors or not self._allows(granted):
            return None
        cost = self.cost(variables)
        return cost if cost <= self.limits.max_cost else None


class Admission(NamedTuple):
    """A request's operation as the analysis admits it, worked out once per request: the
    rate limit draws its cost, and the executor that answers runs it (web/view.py)."""

    text: str
    name: str | None
    variables: Mapping[str, Any] | None
    analysis: Analysis
    cost: int | None  # `admitted_cost`: None when it may not run (refused, or no document)


def admission(
    analyser: Analyser,
    granted: Collection[Scope],
    text: object,
    name: object,
    variables: object,
) -> Admission | None:
    """The admission of what a request sends, or None when it is not an operation the
    executors could run (no text, a name or variables of the wrong type: refused by them)."""
    if not isinstance(text, str) or not isinstance(name, str | None):
        return None
    if not isinstance(variables, dict | None):
        return None
    analysis = analyser.analyse(text, name)
    cost = None if analysis.document is None else analysis.admitted_cost(granted, variables)
    return Admission(text, name, variables, analysis, cost)


class Analyser:
    """Analyses documents against one schema and its limits, and remembers the outcomes."""

    def __init__(
        self,
        schema: GraphQLSchema,
        limits: Limits,
        *,
        rules: Sequence[type[ASTValidationRule]] = (),
        entries: int = CACHE_ENTRIES,
        characters: int = CACHE_CHARACTERS,
    ) -> None:
        self.schema = schema
        self.entries = entries
        self.characters = characters
        self.limits = limits
        # graphql-core's rules, `rules` (introspection off, say), and Strawberry's own (Maybe
        # inputs, @oneOf), which its validation step adds.
        self.rules = (
            *specified_rules,
            *rules,
            MaybeNullValidationRule,
            OneOfInputValidationRule,
        )
        self._cache: OrderedDict[tuple[str, str | None], Analysis] = OrderedDict()
        self._characters = 0
        # Persisted documents' analyses, made when each is registered and kept outside the
        # cache's bounds until it is unpinned: their store (web/persisted.py) bounds them.
        self._pinned: dict[tuple[str, str | None], Analysis] = {}

    def analyse(self, text: str, operation_name: str | None) -> Analysis:
        """The analysis of `text` run as `operation_name`, from the cache when it is there."""
        key = (text, operation_name)
        found = self._pinned.get(key)
        if found is not None:
            return found
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        analysis = self._analyse(text, operation_name)
        self._cache[key] = analysis
        self._characters += len(text)
        while len(self._cache) > self.entries or (
            self._characters > self.characters and len(self._cache) > 1
        ):
            (old_text, _), _ = self._cache.popitem(last=False)
            self._characters -= len(old_text)
        return analysis

    def pin(self, text: str, operation_name: str | None) -> Analysis:
        """The analysis of `text` run as `operation_name`, made now (or taken from the cache)
        and kept until `unpin`, whatever the cache's bounds."""
        key = (text, operation_name)
        found = self._pinned.get(key) or self._cache.get(key)
        if found is None:
            found = self._analyse(text, operation_name)
        self._pinned[key] = found
        return found

    def pinned(self, text: str, operation_name: str | None) -> Analysis | None:
        """The pinned analysis of `text` run as `operation_name`, if there is one."""
        return self._pinned.get((text, operation_name))

    def unpin(self, text: str, operation_names: Collection[str | None]) -> None:
        """Let the analyses of `text` go (the cache may still hold them)."""
        for name in operation_names:
            self._pinned.pop((text, name), None)

    def _analyse(self, text: str, operation_name: str | None) -> Analysis:
        limits = self.limits
        try:
            document = parse(text, max_tokens=limits.max_tokens)
        except GraphQLError as error:
            return Analysis(document=None, errors=(error,), limits=limits)
        walk = _Walk(self.schema, document, limits)
        errors = walk.limit_errors()
        if not errors:
            errors = [_explained(error) for error in validate(self.schema, document, self.rules)]
        if errors:
            # A refused document is kept small: any node of its tree holds every token.
            detached = tuple(_detached(error) for error in errors)
            return Analysis(document=_outline(document), errors=detached, limits=limits)
        guarded, plan = walk.operation(operation_name)
        unstorable = tuple(_detached(error) for error in literal_errors(document))
        return Analysis(
            document=document,
            errors=(),
            limits=limits,
            depth=walk.depth,
            aliases=walk.aliases,
            directives=walk.directives,
            guarded=guarded,
            plan=plan,
            unstorable=unstorable,
        )


# -- the cost plan: the document reduced to what multiplies what ------------------------------


@dataclass(frozen=True)
class _CostField:
    row: bool  # one of a connection's rows: counts once per row of the page
    coordinate: str | None
    arguments: Mapping[str, ValueNode]
    child: _CostSet | None


@dataclass
class _CostSet:
    fields: list[_CostField] = field(default_factory=list)
    spreads: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CostPlan:
    """The cost of the operation as a function of its variables.

    A field costs 1 each time it will resolve: a page of `first: 100` customers makes what
    is inside it count 100 times, a customer's verifications `list_estimate` times,
    `_entities` once per representation; introspection is priced like any other field.
    """

    roots: tuple[_CostSet, ...]
    fragments: Mapping[str, _CostSet]
    order: tuple[str, ...]  # fragments, each after those it spreads
    defaults: Mapping[str, Any]  # the variables' default values
    constant: int | None  # the cost, when no variable can change it

    def cost(self, variables: Mapping[str, Any], limits: Limits) -> int:
        if self.constant is not None:
            return self.constant
        return _evaluate(self, {**self.defaults, **variables}, limits)


def _evaluate(plan: CostPlan, values: Mapping[str, Any], limits: Limits) -> int:
    # Each selection set costs a + b * rows: b counts what repeats once per row of a page.
    # Fragments are evaluated once each, those spread first, so nothing recurses along a
    # chain of fragments and nothing is counted twice.
    units: dict[str, tuple[int, int]] = {}

    def unit(selections: _CostSet) -> tuple[int, int]:
        once = per_row = 0
        for item in selections.fields:
            cost = 1
            if item.child is not None:
                below, below_per_row = unit(item.child)
                if item.coordinate in PAGED_FIELDS:
                    cost += below + below_per_row * _page_size(item.arguments, values, limits)
                else:
                    cost += _multiplier(item, values, limits) * (below + below_per_row)
            if item.row:
                per_row += cost
            else:
                once += cost
        for name in selections.spreads:
            spread_once, spread_per_row = units.get(name, (0, 0))
            once += spread_once
            per_row += spread_per_row
        return once, per_row

    for name in plan.order:
        units[name] = unit(plan.fragments[name])
    return sum(sum(unit(root)) for root in plan.roots)


def _page_size(
    arguments: Mapping[str, ValueNode], values: Mapping[str, Any], limits: Limits
) -> int:
    size = None
    for name in ("first", "last"):
        if name in arguments:
            size = value_from_ast_untyped(arguments[name], dict(values))
            if size:
                break
    if not isinstance(size, int):
        return DEFAULT_PAGE
    # A page over the maximum is refused by the field itself, with its own message.
    return min(max(1, size), MAX_PAGE)


def _priced_variables(plan: CostPlan) -> bool:
    """Whether a variable is given to an argument the cost reads (a page's size, or
    `_entities`' representations): else the cost is the same whatever the variables."""
    sets = [*plan.roots, *plan.fragments.values()]
    while sets:
        for item in sets.pop().fields:
            if item.coordinate in PAGED_FIELDS:
                read = [item.arguments[n] for n in ("first", "last") if n in item.arguments]
            elif item.coordinate in REPRESENTATION_LISTS:
                read = [item.arguments[n] for n in ("representations",) if n in item.arguments]
            else:
                read = []
            if any(_holds_variable(node) for node in read):
                return True
            if item.child is not None:
                sets.append(item.child)
    return False


def _holds_variable(node: ValueNode) -> bool:
    if isinstance(node, VariableNode):
        return True
    if isinstance(node, ListValueNode):
        return any(_holds_variable(value) for value in node.values)
    if isinstance(node, ObjectValueNode):
        return any(_holds_variable(field.value) for field in node.fields)
    return False


def _multiplier(item: _CostField, values: Mapping[str, Any], limits: Limits) -> int:
    """How many of what is inside a field there are, for a list field that is not paged."""
    if item.coordinate in ESTIMATED_LISTS:
        return limits.list_estimate
    if item.coordinate in REPRESENTATION_LISTS and "representations" in item.arguments:
        representations = value_from_ast_untyped(item.arguments["representations"], dict(values))
        return max(1, len(representations)) if isinstance(representations, list) else 1
    return 1


# -- the one pass over the syntax tree ---------------------------------------------------------


@dataclass
class _Facts:
    """What one selection set holds, its inline fragments and spread fragments included."""

    depth: int = 0
    names: Counter[str] = field(default_factory=Counter)  # response names at this level
    # By response name, what comparing those fields with others costs graphql-core's check
    # that fields sharing a response name can merge (see _Walk.comparisons).
    weights: Counter[str] = field(default_factory=Counter)
    cost: _CostSet = field(default_factory=_CostSet)


@dataclass
class _Found:
    """What a walk from one root (an operation or a fragment) found below it."""

    guarded: list[Guarded] = field(default_factory=list)
    spreads: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # name, path


class _Walk:
    """Measures a document: every operation and every fragment once."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, limits: Limits) -> None:
        self.schema = schema
        self.limits = limits
        self.depth = self.aliases = self.directives = 0
        # graphql-core's overlap check compares every pair of fields sharing a response name
        # in a selection set, and, for a pair with selections, every pair below them that
        # shares one: quadratic at each level, multiplied down the levels. `comparisons`
        # estimates that work before it starts; `worst` is its largest part.
        self.comparisons = 0
        self.worst: tuple[int, str, int, str] = (0, "", 0, "")  # part, name, repeats, parent
        self.definitions = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.fragments: dict[str, tuple[_Facts, _Found]] = {}
        self.order = _fragment_order(self.definitions)
        # Fragments on a cycle come last, so that their own fields are measured too (the
        # spreads that close the cycle are not followed); validation refuses them.
        cyclic = [name for name in self.definitions if name not in self.order]
        for name in (*self.order, *cyclic):
            definition = self.definitions[name]
            self.directives += len(definition.directives or ())
            parent = self.schema.get_type(definition.type_condition.name.value)
            found = _Found()
            facts = self._selection_set(definition.selection_set, _composite(parent), (), found)
            self.fragments[name] = (facts, found)
        self.operations: list[tuple[OperationDefinitionNode, _Facts, _Found]] = []
        for operation in document.definitions:
            if isinstance(operation, OperationDefinitionNode):
                self.directives += len(operation.directives or ())
                for variable in operation.variable_definitions or ():
                    self.directives += len(variable.directives or ())
                found = _Found()
                root = self.schema.get_root_type(operation.operation)
                facts = self._selection_set(operation.selection_set, root, (), found)
                self.depth = max(self.depth, facts.depth)
                self.operations.append((operation, facts, found))

    def limit_errors(self) -> list[GraphQLError]:
        """Limits the document is past, checked before validation (which they bound)."""
        limits, errors = self.limits, []
        if self.depth > limits.max_depth:
            errors.append(depth_error(self.depth, limits))
        if self.aliases > limits.max_aliases:
            errors.append(aliases_error(self.aliases, limits))
        if self.directives > limits.max_directives:
            errors.append(directives_error(self.directives, limits))
        if self.comparisons > limits.max_comparisons:
            _, name, repeats, parent = self.worst
            errors.append(repeats_error(self.comparisons, name, repeats, parent, limits))
        return errors

    def operation(self, name: str | None) -> tuple[tuple[Guarded, ...], CostPlan]:
        """The guarded fields and the cost plan of the operations that run as `name`."""
        chosen = [
            (definition, facts, found)
            for definition, facts, found in self.operations
            if name is None or (definition.name is not None and definition.name.value == name)
        ]
        guarded: list[Guarded] = []
        seen: set[int] = set()
        defaults: dict[str, Any] = {}
        for definition, _, found in chosen:
            for variable in definition.variable_definitions or ():
                if variable.default_value is not None:
                    value = value_from_ast_untyped(variable.default_value)
                    defaults[variable.variable.name.value] = value
            guarded += found.guarded
            # Each fragment where it is first spread; its fields' paths start there.
            sites: dict[str, tuple[str, ...]] = {}
            queue = list(found.spreads)
            while queue:
                fragment, path = queue.pop(0)
                if fragment in sites or fragment not in self.fragments:
                    continue
                sites[fragment] = path
                inner = self.fragments[fragment][1]
                guarded += (
                    Guarded(use.coordinate, use.scopes, use.node, path + use.path)
                    for use in inner.guarded
                )
                queue += ((spread, path + rest) for spread, rest in inner.spreads)
        unique = []
        for use in guarded:  # one error per field of the document, at its first place
            if id(use.node) not in seen:
                seen.add(id(use.node))
                unique.append(use)
        plan = CostPlan(
            roots=tuple(facts.cost for _, facts, _ in chosen),
            fragments={name: facts.cost for name, (facts, _) in self.fragments.items()},
            order=self.order,
            defaults=defaults,
            constant=None,
        )
        if not _priced_variables(plan):  # no variable's value can change the cost
            plan = CostPlan(**{**plan.__dict__, "constant": plan.cost({}, self.limits)})
        return tuple(unique), plan

    def _selection_set(
        self,
        selections: SelectionSetNode,
        parent: GraphQLCompositeType | None,
        path: tuple[str, ...],
        found: _Found,
    ) -> _Facts:
        facts = _Facts()
        self._collect(selections, parent, path, found, facts, set())
        for name, repeats in facts.names.items():
            if repeats > 1:
                # Each of the repeats-choose-2 pairs costs about the mean weight of the two.
                part = (repeats - 1) * facts.weights[name] // 2
                self.comparisons += part
                if part > self.worst[0]:
                    parent_name = parent.name if parent else "an unknown type"
                    self.worst = (part, name, repeats, parent_name)
        return facts

    def _collect(
        self,
        selections: SelectionSetNode,
        parent: GraphQLCompositeType | None,
        path: tuple[str, ...],
        found: _Found,
        facts: _Facts,
        spread: set[str],
    ) -> None:
        """Adds the selections to `facts`; inline fragments belong to the same set, and a
        fragment spread twice in it counts once, as execution merges them."""
        for selection in selections.selections:
            self.directives += len(selection.directives or ())
            if isinstance(selection, FieldNode):
                self._field(selection, parent, path, found, facts)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = (
                    _composite(self.schema.get_type(condition.name.value)) if condition else parent
                )
                self._collect(selection.selection_set, inner, path, found, facts, spread)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in spread or name not in self.fragments:
                    continue  # undefined or cyclic fragments are validation's to refuse
                spread.add(name)
                fragment, _ = self.fragments[name]
                facts.names.update(fragment.names)
                facts.weights.update(fragment.weights)
                facts.depth = max(facts.depth, fragment.depth)
                facts.cost.spreads.append(name)
                found.spreads.append((name, path))

    def _field(
        self,
        node: FieldNode,
        parent: GraphQLCompositeType | None,
        path: tuple[str, ...],
        found: _Found,
        facts: _Facts,
    ) -> None:
        name = node.name.value
        key = node.alias.value if node.alias else name
        if node.alias:
            self.aliases += 1
        facts.names[key] += 1
        weight = 1  # comparing this field with another, and all below them that share names
        definition = _field_definition(self.schema, parent, name)
        coordinate = None
        if parent is not None and definition is not None:
            coordinate = f"{parent.name}.{name}"
            scopes = access.scopes_of(parent.name, name)
            if scopes is not None:
                found.guarded.append(Guarded(coordinate, scopes, node, (*path, key)))
        child = None
        if node.selection_set is not None:
            child_type = _composite(get_named_type(definition.type)) if definition else None
            child = self._selection_set(node.selection_set, child_type, (*path, key), found)
            facts.depth = max(facts.depth, 1 + child.depth)
            weight += sum(child.names[n] * child.weights[n] for n in child.names)
        else:
            facts.depth = max(facts.depth, 1)
        facts.weights[key] += weight
        arguments = {argument.name.value: argument.value for argument in node.arguments or ()}
        facts.cost.fields.append(
            _CostField(
                row=coordinate in ROW_FIELDS,
                coordinate=coordinate,
                arguments=arguments,
                child=None if child is None else child.cost,
            )
        )


def _fragment_order(definitions: Mapping[str, FragmentDefinitionNode]) -> tuple[str, ...]:
    """Fragment names, each after every fragment it spreads; fragments on a cycle are left
    out (validation refuses them). Iterative, so a long chain cannot exhaust the stack."""
    spreads = {name: list(_spreads_in(d.selection_set)) for name, d in definitions.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done, 3: on or above a cycle
    for start in definitions:
        if start in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(spreads[start]))]
        state[start] = 1
        while stack:
            name, pending = stack[-1]
            following = next(pending, None)
            if following is None:
                stack.pop()
                if state[name] == 1:
                    state[name] = 2
                    order.append(name)
                continue
            if following not in definitions:
                continue
            seen = state.get(following)
            if seen is None:
                state[following] = 1
                stack.append((following, iter(spreads[following])))
            elif seen in (1, 3):  # a cycle: everything on the stack is unusable
                for above, _ in stack:
                    state[above] = 3
    return tuple(order)


def _spreads_in(selections: SelectionSetNode) -> Iterator[str]:
    stack = [selections]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                yield selection.name.value
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                stack.append(selection.selection_set)


def _composite(named: Any) -> GraphQLCompositeType | None:
    return named if is_composite_type(named) else None


def _field_definition(
    schema: GraphQLSchema, parent: GraphQLCompositeType | None, name: str
) -> GraphQLField | None:
    if name == "__typename":
        return TypeNameMetaFieldDef
    if parent is None:
        return None
    if parent is schema.query_type and name in ("__schema", "__type"):
        return SchemaMetaFieldDef if name == "__schema" else TypeMetaFieldDef
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        found: GraphQLField | None = parent.fields.get(name)
        return found
    return None


def _outline(document: DocumentNode) -> DocumentNode:
    """The document's operations without their selections: enough for Strawberry to tell
    which operation would run and its type (a mutation over GET is a 405, not a refusal)."""
    return DocumentNode(
        definitions=tuple(
            OperationDefinitionNode(
                operation=d.operation,
                name=d.name and NameNode(value=d.name.value),
                variable_definitions=(),
                directives=(),
                selection_set=SelectionSetNode(selections=()),
            )
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        )
    )


def _detached(error: GraphQLError) -> GraphQLError:
    """The error with its place in the text, but no hold on the syntax tree; also a fresh
    copy for each response, as later steps may rewrite an error's message."""
    return GraphQLError(
        error.message,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=error.extensions,
    )


def _explained(error: GraphQLError) -> GraphQLError:
    """graphql-core gives up on a document its rules cannot walk (a long chain of fragments,
    over a hundred errors) with a bare "Validation aborted."; say what to do instead. A
    number too long to read is the client's error, not an unexpected one."""
    if (number := unreadable_number(error)) is not None:
        return number
    if error.message.endswith("Validation aborted."):
        return GraphQLError(
            "The document is too large or repetitive to validate; send a smaller one."
        )
    return error


# -- Strawberry's pipeline --------------------------------------------------------------------


class ApplyAnalysis(SchemaExtension):
    """Runs Strawberry's requests on the cached analysis: its document instead of a parse, its
    errors instead of a validation, its scopes and cost before execution."""

    def __init__(self, analyser: Analyser) -> None:
        super().__init__()
        self.analyser = analyser
        self.analysis: Analysis | None = None
        self.cost: int | None = None
        self.ran = False  # whether execution went ahead (nothing refused it)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        name = context.operation_name
        # A name that is not a string (JSON allows any) is left to Strawberry, which answers
        # 400: no operation has that name.
        if context.query and (name is None or isinstance(name, str)):
            self.analysis = self.analyser.analyse(context.query, name)
            if self.analysis.document is not None:
                context.graphql_document = self.analysis.document
            else:  # a syntax error: Strawberry's parse reports it
                context.parse_options["max_tokens"] = self.analyser.limits.max_tokens
        yield

    def on_validate(self) -> Iterator[None]:
        if self.analysis is not None and self.analysis.document is not None:
            self.execution_context.pre_execution_errors = [
                _detached(error) for error in self.analysis.errors
            ]
        yield

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        analysis = self.analysis
        if analysis is not None and analysis.document is not None and not analysis.errors:
            principal = getattr(context.context, "principal", None)
            granted = principal.scopes if principal is not None else frozenset()
            self.cost = analysis.cost(context.variables)
            refusals = analysis.forbidden(granted)
            if not refusals and self.cost > analysis.limits.max_cost:
                refusals = [cost_error(self.cost, analysis.limits)]
            if refusals:
                refuse(context, refusals)  # a subscription's too (Strawberry ignores a result)
            else:
                # Strings no column can store, in the variables or the document, are refused
                # before any SQL (schema/text_input.py); the document's were found once.
                unstorable = variable_errors(context.variables or {})
                unstorable += [_detached(error) for error in analysis.unstorable]
                if unstorable:
                    context.result = GraphQLExecutionResult(data=None, errors=unstorable)
                else:
                    self.ran = True
        yield

    def get_results(self) -> dict[str, Any]:
        # The principal's bucket, as the rate limiter left it (web/rate_limits.py).
        throttle = getattr(self.execution_context.context, "throttle_status", None)
        if self.cost is None and throttle is None:
            return {}
        cost = self.cost or 0
        return {"cost": cost_extension(cost, cost if self.ran else None, throttle)}


def cost_extension(
    requested: int, actual: int | None, throttle: dict[str, Any] | None
) -> dict[str, Any]:
    """`extensions.cost` of every response, in Shopify's shape, whichever executor answered:
    the estimated cost; what was drawn for it (the estimate, when the request ran: nothing
    is refunded; null when it did not); the principal's bucket after the draw (null when it
    was not metered)."""
    return {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": throttle}
