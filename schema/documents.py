"""Reading GraphQL documents before they run: their fragments and their operations."""

from __future__ import annotations

from graphql import DocumentNode, FragmentDefinitionNode, OperationDefinitionNode, SelectionSetNode


def fragments_of(document: DocumentNode) -> dict[str, SelectionSetNode]:
    """Each fragment's selection set, by the fragment's name."""
    return {
        d.name.value: d.selection_set
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }


def operations_of(document: DocumentNode, name: str | None) -> list[OperationDefinitionNode]:
    """The operations that will run: the one named, or all of them when no name is given."""
    return [
        d
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
        and (name is None or (d.name is not None and d.name.value == name))
    ]
