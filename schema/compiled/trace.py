"""The compiled path's federated trace (FTV1, schema/ftv1): what it can time, and no more.

The compiled path resolves no field on its own: per root field it reads once (a statement, or
a write body) and then calls one generated builder that makes the whole subtree. So a root
field's node spans its read and its build, and every node below it spans that one build
call, the time in which its value was made; the tree itself (response names, aliases, list
indexes, types and parent types) is the response's, collected from the document as the plan
collected it. A compiled answer has no errors (any request with one is graphql-core's), so
its trace has none. The nodes are added only once every root field has answered: a request
the compiled path gives up on mid-way leaves the recorder as it found it for graphql-core.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from graphql import (
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    TypeNameMetaFieldDef,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    is_object_type,
)

from schema import ids
from schema.compiled.plan import Needs, Plan, Root, argument
from schema.compiled.selection import Collector, Fields
from schema.errors import raised_at
from schema.ftv1 import Path, Recorder

if TYPE_CHECKING:
    from collections.abc import Mapping

    from graphql import FieldNode

logger = logging.getLogger("customer_api.errors")
Span = list[int]  # [start, end], nanoseconds since the trace began


class Run(Protocol):
    """What `traced` needs of a run of the plan: its answer to one root field."""

    async def root(self, root: Root, build: Callable[..., Any], needs: Needs) -> Any: ...


async def traced(
    run: Run,
    plan: Plan,
    values: Mapping[str, Any],
    roots: list[tuple[Root, Callable[..., Any], Needs]],
    recorder: Recorder,
) -> dict[str, Any]:
    """The data of the root fields, as the untraced loop makes it, and their nodes."""
    data: dict[str, Any] = {}
    spans: list[tuple[Root, Span, Span]] = []
    for root, build, needs in roots:
        whole, inner = [recorder.now(), 0], [0, 0]
        data[root.key] = await run.root(root, _timed(build, inner, recorder), needs)
        whole[1] = recorder.now()
        spans.append((root, whole, inner))
    try:
        _add_nodes(recorder, plan, values, data, spans)
    except Exception as error:
        # The trace is a diagnostic: a fault in it must not change the answer, nor have
        # graphql-core run again a write that has been committed. Said so, in the log and in
        # the trace.
        recorder.trace.is_incomplete = True
        logger.warning(
            "the compiled path's trace failed (%s at %s:%d)",
            type(error).__name__,
            *raised_at(error),
        )
    return data


def _add_nodes(
    recorder: Recorder,
    plan: Plan,
    values: Mapping[str, Any],
    data: dict[str, Any],
    spans: list[tuple[Root, Span, Span]],
) -> None:
    collector = Collector(plan.schema, plan.fragments, values)
    root_type = "Mutation" if plan.writes else "Query"
    fields = collector.fields(root_type, [plan.operation.selection_set])
    shape = _Shape(recorder, plan.schema, collector)
    parent = plan.schema.get_type(root_type)
    assert isinstance(parent, GraphQLObjectType)
    for root, whole, inner in spans:
        concrete = _node_type(root, values) if root.kind == "node" else None
        shape.field(parent, fields[root.key], data[root.key], (root.key,), whole, inner, concrete)


def _timed(build: Callable[..., Any], span: Span, recorder: Recorder) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        span[0] = recorder.now()
        try:
            return build(*args)
        finally:
            span[1] = recorder.now()

    return timed


def _node_type(root: Root, values: Mapping[str, Any]) -> str | None:
    """The type of `node(id:)`'s object: the one its global id names (the only one it reads)."""
    global_id = argument(root.arguments["id"], values, str)
    decoded = ids.decode(global_id) if isinstance(global_id, str) else None
    return None if decoded is None else decoded[0]


class _Shape:
    """Nodes for a value of the response, walked with the selection that made it."""

    def __init__(self, recorder: Recorder, schema: GraphQLSchema, collector: Collector) -> None:
        self.recorder, self.schema, self.collector = recorder, schema, collector

    def field(
        self,
        parent: GraphQLObjectType,
        nodes: list[FieldNode],
        value: Any,
        path: Path,
        span: Span,
        inner: Span,
        concrete: str | None = None,
    ) -> None:
        name = nodes[0].name.value
        type_ = TypeNameMetaFieldDef.type if name == "__typename" else parent.fields[name].type
        node = self.recorder.field(path, name, str(type_), parent.name, span[0])
        node.end_time = span[1]
        self.value(type_, nodes, value, path, inner, concrete)

    def value(
        self,
        type_: GraphQLOutputType,
        nodes: list[FieldNode],
        value: Any,
        path: Path,
        span: Span,
        concrete: str | None,
    ) -> None:
        if value is None:
            return
        nullable = get_nullable_type(type_)
        if is_list_type(nullable):
            for index, item in enumerate(value):
                self.value(nullable.of_type, nodes, item, (*path, index), span, None)
            return
        if is_leaf_type(nullable):
            return
        name = nullable.name if is_object_type(nullable) else concrete
        object_type = self.schema.get_type(name) if name else None
        if not isinstance(object_type, GraphQLObjectType):
            self.recorder.trace.is_incomplete = True  # an object whose type is not known here
            return
        fields: Fields = self.collector.subfields(object_type.name, nodes)
        for key, field_nodes in fields.items():
            self.field(object_type, field_nodes, value.get(key), (*path, key), span, span)
