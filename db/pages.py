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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import ColumnElement, Select, bindparam, tuple_
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
    raw = cursor_json([ordering.name, ordering.direction.value, *values])
    return base64.urlsafe_b64encode(_mac(secret, raw) + raw).decode().rstrip("=")


def cursor_json(values: list[Any]) -> bytes:
    """A cursor's JSON as `json.dumps(values, separators=(",", ":"))` writes it: ASCII, the
    rest escaped, the bytes of every cursor handed out so far. A page signs a cursor per row,
    and json.dumps made a new encoder each time (2.2 us a cursor); orjson writes the same
    bytes for text below DEL in a twentieth of that, so only other text goes the slow way."""
    raw = orjson.dumps(values)
    if raw.isascii() and b"\x7f" not in raw:
        return raw
    return json.dumps(values, separators=(",", ":")).encode()


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


@dataclass(frozen=True)
class Keyset:
    """A page request as read: its size, its direction, and the sort keys of its cursors."""

    size: int
    forward: bool
    after: tuple[Any, ...] | None
    before: tuple[Any, ...] | None


def keyset(
    ordering: Ordering,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    secret: bytes,
) -> Keyset:
    """`first`/`after` walk forward, `last`/`before` backward, as Relay's connections do;
    PageError for both sizes or neither, and for a cursor not of this ordering."""
    if (first is None) == (last is None):
        raise PageError("Give either first or last, not both.")
    size = first if first is not None else last
    assert size is not None
    start, end = (
        None if cursor is None else decode_cursor(ordering, cursor, secret)
        for cursor in (after, before)
    )
    return Keyset(size, last is None, start, end)


def page_statement(query: Select[Any], ordering: Ordering, page: Keyset) -> Select[Any]:
    """`query` (which selects one entity) as the statement of `page`: one row more than the
    page, to tell whether another follows."""
    columns = ordering.columns
    after, before = (
        None
        if key is None
        else [
            bindparam(f"page_{side}_{n}", value, type_=column.type)
            for n, (value, column) in enumerate(zip(key, columns, strict=True))
        ]
        for side, key in (("after", page.after), ("before", page.before))
    )
    size: ColumnElement[int] = bindparam("page_size", page.size + 1)
    return seek(query, ordering, after=after, before=before, forward=page.forward, limit=size)


def page_values(page: Keyset) -> dict[str, Any]:
    """The values `page_statement` binds, by name: for a statement of the same shape
    compiled once (db/driver.py's `ByShape`)."""
    values: dict[str, Any] = {"page_size": page.size + 1}
    for side, key in (("after", page.after), ("before", page.before)):
        for n, value in enumerate(key or ()):
            values[f"page_{side}_{n}"] = value
    return values


def page_shape(ordering: Ordering, page: Keyset) -> tuple[Any, ...]:
    """What decides the shape of `page_statement`'s statement besides its query."""
    return (
        ordering.name,
        ordering.direction,
        page.forward,
        page.after is None,
        page.before is None,
    )


def page_of(
    rows: list[T],
    ordering: Ordering,
    page: Keyset,
    secret: bytes,
    *,
    key_of: Callable[[T], tuple[Any, ...]] | None = None,
    cursors: bool = True,
) -> Page[T]:
    """The page the rows of `page_statement` make, with a cursor for each row (none when
    `cursors` is false: nobody asked for them). Whether rows lie on the other side of the
    cursor is not looked up (that would be a second statement): a page that starts at a
    cursor reports that rows may lie before it."""
    more = len(rows) > page.size
    rows = rows[: page.size]
    if not page.forward:
        rows.reverse()
    key = key_of or ordering.key_of
    return Page(
        rows=rows,
        cursors=[encode_cursor(ordering, key(row), secret) for row in rows] if cursors else [],
        has_next=more if page.forward else page.before is not None,
        has_previous=page.after is not None if page.forward else more,
    )


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
    """One page of `query` (which selects one entity) in `ordering`, through the session:
    `keyset`, `page_statement` and `page_of`, as the compiled path runs them on its driver."""
    page = keyset(ordering, first=first, after=after, last=last, before=before, secret=secret)
    rows = list((await session.scalars(page_statement(query, ordering, page))).all())
    return page_of(rows, ordering, page, secret)


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
    return query.order_by(*walk_order(ordering, forward)).limit(limit)


def walk_order(
    ordering: Ordering, forward: bool, columns: Sequence[ColumnElement[Any]] | None = None
) -> list[ColumnElement[Any]]:
    """The ORDER BY of a page walking forward (or backward) in `ordering`: of its own
    columns, or of `columns` standing for them (a subquery's)."""
    walk_descending = (ordering.direction is Direction.DESC) == forward
    return [
        column.desc() if walk_descending else column.asc()
        for column in (ordering.columns if columns is None else columns)
    ]


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
