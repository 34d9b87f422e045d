"""docs/settings.md, written from `Settings` itself: every setting's name, default, bounds and
description, so the reference cannot drift from the code (tests/test_settings_doc.py fails
until `make docs` has written it again)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from web.settings import Settings

HEADER = """\
# Settings

<!-- Generated from `Settings` (web/settings.py) by `make docs`
     (customer-api settings-reference > docs/settings.md): edit the code, not this file. -->

Every setting is read once, at start, from the environment (the variable's name in upper
case) or from a `.env` file in the directory the server starts in (`KEY=value` lines); the
environment wins over the file. A value that breaks a rule stops the start with a line naming
the setting and the rule, never the value. Tests build `Settings` directly.

| variable | default | rule | meaning |
|---|---|---|---|
"""


def reference(settings: type[Settings] = Settings) -> str:
    """The Markdown of docs/settings.md."""
    rows = [
        f"| `{name.upper()}` | {default_of(field)} | {rule_of(field)} | {cell(field.description)} |"
        for name, field in settings.model_fields.items()
    ]
    return HEADER + "\n".join(rows) + "\n"


def cell(text: str | None) -> str:
    """`text` as a table cell: a | inside would end it."""
    return (text or "").replace("|", "\\|")


def default_of(field: FieldInfo) -> str:
    value: Any = field.default
    if value is PydanticUndefined or value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, float):
        value = f"{value:g}"
    elif isinstance(value, Path):
        value = str(value)
    return f"`{value}`" if value != "" else "empty"


def rule_of(field: FieldInfo) -> str:
    rules = []
    choices = choices_of(field.annotation)
    if choices:
        rules.append("one of " + ", ".join(f"`{choice}`" for choice in choices))
    for constraint in field.metadata:
        if isinstance(constraint, Ge):
            rules.append(f"≥ {constraint.ge}")
        if isinstance(constraint, Gt):
            rules.append(f"> {constraint.gt}")
        if isinstance(constraint, Le):
            rules.append(f"≤ {constraint.le}")
        if isinstance(constraint, Lt):
            rules.append(f"< {constraint.lt}")
        if isinstance(constraint, MinLen):
            least = constraint.min_length
            rules.append("not empty" if least == 1 else f"at least {least} characters")
        if isinstance(constraint, MaxLen):
            rules.append(f"at most {constraint.max_length} characters")
    return ", ".join(rules)


def choices_of(annotation: Any) -> list[str]:
    """The values a Literal or an enum allows; empty for any other type."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    return []
