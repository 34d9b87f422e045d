"""Opaque global ids: the type name and the primary key, base64url-encoded.

Clients must treat an id as an opaque string; it is stable for the life of the record.
"""

from __future__ import annotations

import base64
import binascii

import strawberry

from schema.errors import bad_input

# Primary keys are INTEGER columns: PostgreSQL's stops at 2^31 - 1, and SQLite is held to the
# same so that an id means the same on both. A larger key would fail in the driver.
MAX_KEY = 2**31 - 1


def encode(type_name: str, key: int) -> strawberry.ID:
    raw = f"{type_name}:{key}".encode()
    return strawberry.ID(base64.urlsafe_b64encode(raw).decode().rstrip("="))


def decode(global_id: str) -> tuple[str, int] | None:
    """The type name and key inside a global id, or None when it is not one of ours.

    An id of ours whose key is past MAX_KEY was never given out: a BAD_USER_INPUT error.
    """
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, key = base64.urlsafe_b64decode(padded.encode("ascii")).decode().partition(":")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    if not type_name or not key.isascii() or not key.isdigit():
        return None
    if len(key) > len(str(MAX_KEY)) or int(key) > MAX_KEY:
        raise bad_input(
            f"The id names a key past {MAX_KEY}, the largest there can be: it is not an id "
            "this API gave out."
        )
    return type_name, int(key)


def decode_as(type_name: str, global_id: str) -> int | None:
    """The key inside a global id of this type, or None when it is not one."""
    decoded = decode(global_id)
    return decoded[1] if decoded is not None and decoded[0] == type_name else None
