"""Strings no column can store, refused before anything runs.

PostgreSQL's text cannot hold NUL, and no encoding holds a lone surrogate (JSON's "\\ud800"
decodes to one): either would fail in the driver as a server error. Every string a request
carries, in its variables or as a literal in its document, is checked on both backends alike.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from graphql import DocumentNode, GraphQLError, StringValueNode, Visitor, visit

from db.rules import unstorable
from schema.errors import bad_input


def problem(text: str) -> str | None:
    """What makes `text` unstorable, or None when it is fine."""
    found = unstorable(text)
    if found is None:
        return None
    code = ord(found)
    if code == 0:
        return "holds a NUL character (U+0000), which no text may hold"
    return f"holds a lone surrogate (U+{code:04X}); text must be valid Unicode"


def variable_errors(variables: dict[str, Any]) -> list[GraphQLError]:
    """An error for each unstorable string (or object key) in the variables, with its path."""
    if _storable(variables):
        return []  # nearly always: no path is spelt out for nothing
    errors = []
    names = [(None, "A variable name", name) for name in variables]
    queue: deque[tuple[str | None, str, Any]] = deque(names)
    queue.extend((f"${name}", f"The value at ${name}", value) for name, value in variables.items())
    while queue:
        path, subject, value = queue.popleft()
        if isinstance(value, str):
            if (wrong := problem(value)) is not None:
                errors.append(bad_input(f"{subject} {wrong}."))
        elif isinstance(value, dict):
            for key, item in value.items():
                queue.append((None, f"A field name in {path}", key))
                queue.append((f"{path}.{key}", f"The value at {path}.{key}", item))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                queue.append((f"{path}[{index}]", f"The value at {path}[{index}]", item))
    return errors


def _storable(value: Any) -> bool:
    """Whether every string and object key in a JSON value is storable (its depth is bounded
    by the request body's, web/body.py)."""
    if isinstance(value, str):
        return unstorable(value) is None
    if isinstance(value, dict):
        return all(unstorable(key) is None and _storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


class _Literals(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[GraphQLError] = []

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if (wrong := problem(node.value)) is not None:
            self.errors.append(bad_input(f"A string in the document {wrong}.", nodes=[node]))


def literal_errors(document: DocumentNode) -> list[GraphQLError]:
    """An error for each string literal in the document that no column can store. Run once
    per document by the cached analysis (schema/analysis.py), which refuses them per request
    together with `variable_errors`."""
    literals = _Literals()
    visit(document, literals)
    return literals.errors
