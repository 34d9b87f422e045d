"""Keyset (seek) pagination: a page at any depth is one index seek, never an OFFSET scan.

A page is ordered by a sort key whose last column is unique, so every row has one place; a
cursor holds the sort key of a row, and the next page starts strictly after it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, literal, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from db.rules import unstorable

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


# Cursors carry a keyed MAC: the server's cursor secret signs what it hands out, so a cursor
# the client edited (or made up) is refused before its values reach a query. The values are
# range-checked all the same, in case the secret is ever known.
_MAC_BYTES = 16
_MAX_KEY = 2**31 - 1  # INTEGER primary keys
_INVALID = "The cursor is not valid; use a cursor from a page of this list."


def _mac(secret: bytes, raw: bytes) -> bytes:
    return hashlib.blake2b(raw, key=secret, digest_size=_MAC_BYTES).digest()


def encode_cursor(ordering: Ordering, key: Sequence[Any], secret: bytes) -> str:
    """An opaque cursor for the row with this sort key, signed with `secret`."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    payload = json.dumps([ordering.name, ordering.direction.value, *values], separators=(",", ":"))
    raw = payload.encode()
    return base64.urlsafe_b64encode(_mac(secret, raw) + raw).decode().rstrip("=")


def decode_cursor(ordering: Ordering, cursor: str, secret: bytes) -> tuple[Any, ...]:
    """The sort key inside a cursor made for this ordering; PageError when it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        blob = base64.urlsafe_b64decode(padded.encode("ascii"))
        mac, raw = blob[:_MAC_BYTES], blob[_MAC_BYTES:]
        if not hmac.compare_digest(_mac(secret, raw), mac):
            raise ValueError("mac")
        name, direction, *values = json.loads(raw)
    except (ValueError, UnicodeError, binascii.Error, TypeError) as error:
        raise PageError(_INVALID) from error
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
    except (ValueError, TypeError, OverflowError) as error:
        raise PageError(_INVALID) from error


def _from_json(value: Any, column: ColumnElement[Any]) -> Any:
    """The column's value from a cursor, or ValueError when no row could hold it."""
    python_type = column.type.python_type
    if python_type is datetime:
        if not isinstance(value, str):
            raise TypeError("expected an ISO 8601 string")
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("naive datetime")
        return moment.astimezone(UTC)  # OverflowError past the years 1 to 9999
    if not isinstance(value, python_type) or isinstance(value, bool):
        raise TypeError(f"expected {python_type.__name__}")
    if isinstance(value, int) and not 0 <= value <= _MAX_KEY:
        raise ValueError("integer out of range")
    if isinstance(value, str):
        length = getattr(column.type, "length", None)
        if (length is not None and len(value) > length) or unstorable(value) is not None:
            raise ValueError("string no column holds")
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
    secret: bytes,
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
    start, end = (_key_in(ordering, cursor, secret) for cursor in (after, before))
    query = seek(query, ordering, after=start, before=end, forward=forward, limit=size + 1)
    rows = list((await session.scalars(query)).all())
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    return Page(
        rows=rows,
        cursors=[encode_cursor(ordering, ordering.key_of(row), secret) for row in rows],
        has_next=more if forward else before is not None,
        has_previous=after is not None if forward else more,
    )


def seek(
    query: Select[Any],
    ordering: Ordering,
    *,
    after: Sequence[ColumnElement[Any]] | None = None,
    before: Sequence[ColumnElement[Any]] | None = None,
    forward: bool = True,
    limit: int | ColumnElement[int],
) -> Select[Any]:
    """`query` in `ordering`, walking forward (or backward) from strictly beyond the sort key
    `after` and before `before` (SQL values: literals, or bound parameters of a statement
    compiled once), `limit` rows: the one keyset page statement, whoever runs it."""
    descending = ordering.direction is Direction.DESC
    if after is not None:
        query = query.where(_beyond(ordering, after, descending))
    if before is not None:
        query = query.where(_beyond(ordering, before, not descending))
    walk_descending = descending == forward
    return query.order_by(
        *(column.desc() if walk_descending else column.asc() for column in ordering.columns)
    ).limit(limit)


def _key_in(
    ordering: Ordering, cursor: str | None, secret: bytes
) -> list[ColumnElement[Any]] | None:
    """The sort key in a cursor (None for none), as SQL literals of its columns' types."""
    if cursor is None:
        return None
    key = decode_cursor(ordering, cursor, secret)
    columns = ordering.columns
    return [literal(value, column.type) for value, column in zip(key, columns, strict=True)]


def _beyond(
    ordering: Ordering, values: Sequence[ColumnElement[Any]], descending: bool
) -> ColumnElement[bool]:
    """Rows strictly after the sort key `values` in the given direction, as one row-value
    comparison."""
    columns = ordering.columns
    if len(columns) == 1:
        return columns[0] < values[0] if descending else columns[0] > values[0]
    left, right = tuple_(*columns), tuple_(*values)
    return left < right if descending else left > right
