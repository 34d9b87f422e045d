"""The example operations select what a normalised client cache needs: every object with an
`id` (Customer, KycVerification, any Node) has it selected, so Apollo Client and urql merge a
mutation's answer into the record they already hold (a kycStatus that never updates otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    InlineFragmentNode,
    SelectionSetNode,
    TypeInfo,
    Visitor,
    get_named_type,
    parse,
    validate,
    visit,
)
from graphql.language import OperationDefinitionNode
from graphql.utilities import TypeInfoVisitor

from schema import schema
from tests.support.paths import OPERATIONS

GRAPHQL_SCHEMA = schema._schema
DOCUMENTS = sorted(OPERATIONS.glob("*.graphql"))


def selected_names(
    selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]
) -> Iterator[str]:
    """Field names selected here, through fragments and inline fragments on the same object."""
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection.alias.value if selection.alias else selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from selected_names(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            yield from selected_names(fragments[selection.name.value].selection_set, fragments)


def missing_ids(path: Path) -> list[str]:
    """`Type.field` for every selection of an object with an id that leaves the id out."""
    document = parse(path.read_text())
    assert validate(GRAPHQL_SCHEMA, document) == [], path.name
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    type_info = TypeInfo(GRAPHQL_SCHEMA)
    missing: list[str] = []

    class Check(Visitor):
        def enter_field(self, node: FieldNode, *_args: object) -> None:
            named = get_named_type(type_info.get_type())
            fields = getattr(named, "fields", None)
            if node.selection_set is None or not fields or "id" not in fields:
                return
            if "id" not in set(selected_names(node.selection_set, fragments)):
                parent = type_info.get_parent_type()
                missing.append(f"{parent.name if parent else '?'}.{node.name.value}")

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            visit(definition, TypeInfoVisitor(type_info, Check()))
    return missing


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.stem)
def test_every_object_with_an_id_has_it_selected(path: Path) -> None:
    assert missing_ids(path) == []


def test_the_check_sees_a_missing_id(tmp_path: Path) -> None:
    document = tmp_path / "bad.graphql"
    document.write_text(
        'mutation { startKycVerification(input: {externalCustomerId: "c"}) '
        "{ verification { id } customer { kycStatus } } }"
    )
    assert missing_ids(document) == ["KycVerificationPayload.customer"]


def test_the_cache_keys_are_the_node_types() -> None:
    """What the README tells clients to cache by: every type with an id is a Node."""
    with_ids = sorted(
        name
        for name, type_ in GRAPHQL_SCHEMA.type_map.items()
        if isinstance(type_, GraphQLObjectType) and "id" in type_.fields
    )
    assert with_ids == [
        "Customer",
        "CustomerEvent",
        "KycVerification",
        "WebhookDelivery",
        "WebhookEndpoint",
    ]
