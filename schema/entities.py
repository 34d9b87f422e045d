"""Federation representations checked before any is resolved: a gateway (or anyone calling
`_entities`) gets BAD_USER_INPUT for one that names no entity or carries a wrong key, instead
of a driver error on a value of the wrong type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schema import ids
from schema.errors import bad_input

# Each entity's key fields (as @key declares them on the type), all strings.
ENTITY_KEYS: Mapping[str, frozenset[str]] = {
    "Customer": frozenset({"externalCustomerId", "id"}),
}


def check_representations(representations: Sequence[Any]) -> None:
    """Raise BAD_USER_INPUT naming the first representation that is not a valid reference."""
    for index, representation in enumerate(representations):
        where = f"representations[{index}]"
        if not isinstance(representation, dict):
            raise bad_input(f"{where} must be an object with __typename and a key.")
        type_name = representation.get("__typename")
        if not isinstance(type_name, str) or type_name not in ENTITY_KEYS:
            known = ", ".join(sorted(ENTITY_KEYS))
            if type_name is None:
                raise bad_input(f"{where} has no __typename; it must be one of: {known}.")
            raise bad_input(f"{where}.__typename must be one of: {known}.")
        keys = ENTITY_KEYS[type_name]
        fields = set(representation) - {"__typename"}
        if not fields & keys or fields - keys:
            raise bad_input(
                f"{where} must hold a key of {type_name}: "
                + " or ".join(sorted(keys))
                + ", and nothing else."
            )
        for field in sorted(fields):
            if not isinstance(representation[field], str):
                raise bad_input(f"{where}.{field} must be a string.")
        if "id" in representation:
            ids.decode(representation["id"])  # raises for a key past the largest there can be
