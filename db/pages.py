"""Keyset (seek) pagination: a page at any depth is one index seek, never an OFFSET scan.

A page is ordered by a sort key whose last column is unique, so every row has one place; a
cursor holds the sort key of a row, and the next page starts strictly after it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, literal, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


class Direction(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"


class PageError(ValueError):
    """A page request that cannot be served: a bad cursor or page size. Its message says why."""


@dataclass(frozen=True)
class Ordering:
    """A named sort key: columns whose last one is unique, and the direction."""

    name: str
    columns: tuple[ColumnElement[Any], ...]
    direction: Direction

    def key_of(self, row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, str(column.key)) for column in self.columns)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows, in order, with a cursor for each and whether more lie either side."""

    rows: list[T]
    cursors: list[str]
    has_next: bool
    has_previous: bool


# Cursors carry a checksum so that a truncated or hand-edited cursor is refused clearly, not
# read as some other position. It is not a secret: a forged cursor could only name a position
# in rows the client may list anyway.
_CHECK_BYTES = 6


def encode_cursor(ordering: Ordering, key: Sequence[Any]) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    payload = json.dumps([ordering.name, ordering.direction.value, *values], separators=(",", ":"))
    raw = payload.encode()
    check = hashlib.blake2b(raw, digest_size=_CHECK_BYTES).digest()
    return base64.urlsafe_b64encode(check + raw).decode().rstrip("=")


def decode_cursor(ordering: Ordering, cursor: str) -> tuple[Any, ...]:
    """The sort key inside a cursor made for this ordering; PageError when it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        blob = base64.urlsafe_b64decode(padded.encode("ascii"))
        check, raw = blob[:_CHECK_BYTES], blob[_CHECK_BYTES:]
        if hashlib.blake2b(raw, digest_size=_CHECK_BYTES).digest() != check:
            raise ValueError("checksum")
        name, direction, *values = json.loads(raw)
    except (ValueError, UnicodeError, binascii.Error, TypeError) as error:
        raise PageError(
            "The cursor is not valid; use a cursor from a page of this list."
        ) from error
    if (name, direction) != (ordering.name, ordering.direction.value) or len(values) != len(
        ordering.columns
    ):
        raise PageError(
            "The cursor was made for another ordering; use cursors from pages of the same orderBy."
        )
    try:
        return tuple(
            _from_json(value, column)
            for value, column in zip(values, ordering.columns, strict=True)
        )
    except (ValueError, TypeError) as error:
        raise PageError(
            "The cursor is not valid; use a cursor from a page of this list."
        ) from error


def _from_json(value: Any, column: ColumnElement[Any]) -> Any:
    python_type = column.type.python_type
    if python_type is datetime:
        return datetime.fromisoformat(value)
    if not isinstance(value, python_type):
        raise TypeError(f"expected {python_type.__name__}")
    return value


async def fetch_page(
    session: AsyncSession,
    query: Select[Any],
    ordering: Ordering,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Page[Any]:
    """One page of `query` (which selects one entity) in `ordering`: a single statement.

    `first`/`after` walk forward, `last`/`before` backward, as Relay's connections do. One row
    more than the page is fetched to tell whether another page follows. Whether rows lie on
    the other side of the cursor is not looked up (that would be a second statement): a page
    that starts at a cursor reports that rows may lie before it.
    """
    if (first is None) == (last is None):
        raise PageError("Give either first or last, not both.")
    forward = last is None
    size = first if first is not None else last
    assert size is not None
    descending = ordering.direction is Direction.DESC
    if after is not None:
        query = query.where(_beyond(ordering, decode_cursor(ordering, after), descending))
    if before is not None:
        query = query.where(_beyond(ordering, decode_cursor(ordering, before), not descending))
    walk_descending = descending == forward
    query = query.order_by(
        *(column.desc() if walk_descending else column.asc() for column in ordering.columns)
    ).limit(size + 1)
    rows = list((await session.scalars(query)).all())
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    return Page(
        rows=rows,
        cursors=[encode_cursor(ordering, ordering.key_of(row)) for row in rows],
        has_next=more if forward else before is not None,
        has_previous=after is not None if forward else more,
    )


def _beyond(ordering: Ordering, key: tuple[Any, ...], descending: bool) -> ColumnElement[bool]:
    """Rows strictly after `key` in the given direction, as one row-value comparison."""
    columns = ordering.columns
    values = [literal(value, column.type) for value, column in zip(key, columns, strict=True)]
    if len(columns) == 1:
        return columns[0] < values[0] if descending else columns[0] > values[0]
    left, right = tuple_(*columns), tuple_(*values)
    return left < right if descending else left > right
