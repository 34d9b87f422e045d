"""Cursors: signed with the server's secret, and their values range-checked when read."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from db import customers, server_secrets
from db.engine import Database
from db.pages import Direction, PageError, cursor_json, decode_cursor, encode_cursor
from server import Settings, cursor_secret

SECRET = b"s" * 32
BY_CREATED = customers.ordering(customers.OrderField.CREATED_AT, Direction.DESC)
BY_ID = customers.ordering(customers.OrderField.EXTERNAL_CUSTOMER_ID, Direction.ASC)
MOMENT = datetime(2025, 6, 5, 4, 57, 11, 151000, tzinfo=UTC)
INVALID = "The cursor is not valid; use a cursor from a page of this list."


def signed(values: list[Any], ordering: Any = BY_CREATED, secret: bytes = SECRET) -> str:
    """A cursor holding exactly these JSON values, signed as the server signs them."""
    raw = json.dumps([ordering.name, ordering.direction.value, *values]).encode()
    mac = hashlib.blake2b(raw, key=secret, digest_size=16).digest()
    return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")


def test_a_cursor_reads_back_its_sort_key() -> None:
    cursor = encode_cursor(BY_CREATED, (MOMENT, 7), SECRET)
    assert decode_cursor(BY_CREATED, cursor, SECRET) == (MOMENT, 7)
    assert decode_cursor(BY_ID, encode_cursor(BY_ID, ("c-1",), SECRET), SECRET) == ("c-1",)


def test_a_cursor_signed_with_another_secret_is_refused() -> None:
    cursor = encode_cursor(BY_CREATED, (MOMENT, 7), b"another secret")
    with pytest.raises(PageError, match=re.escape(INVALID)):
        decode_cursor(BY_CREATED, cursor, SECRET)


def test_a_recomputed_unkeyed_checksum_no_longer_passes() -> None:
    raw = json.dumps(["CREATED_AT", "DESC", "0001-01-01T00:00:00+05:00", 1]).encode()
    check = hashlib.blake2b(raw, digest_size=6).digest()  # what the old cursors carried
    forged = base64.urlsafe_b64encode(check + raw).decode().rstrip("=")
    with pytest.raises(PageError, match=re.escape(INVALID)):
        decode_cursor(BY_CREATED, forged, SECRET)


@pytest.mark.parametrize(
    ("values", "ordering"),
    [
        (["0001-01-01T00:00:00+05:00", 1], BY_CREATED),  # before year 1 in UTC
        (["9999-12-31T23:00:00-05:00", 1], BY_CREATED),  # after year 9999 in UTC
        (["2025-06-05T04:57:11", 1], BY_CREATED),  # no time zone
        (["yesterday", 1], BY_CREATED),
        ([20250605, 1], BY_CREATED),
        (["2025-06-05T04:57:11Z", 2**31], BY_CREATED),
        (["2025-06-05T04:57:11Z", -1], BY_CREATED),
        (["2025-06-05T04:57:11Z", True], BY_CREATED),
        (["2025-06-05T04:57:11Z", 1.5], BY_CREATED),
        (["2025-06-05T04:57:11Z", "1"], BY_CREATED),
        (["a\x00"], BY_ID),
        (["\ud800"], BY_ID),
        (["x" * 256], BY_ID),
        ([None], BY_ID),
    ],
)
def test_values_no_row_could_hold_are_refused_even_when_signed(
    values: list[Any], ordering: Any
) -> None:
    with pytest.raises(PageError) as raised:
        decode_cursor(ordering, signed(values, ordering), SECRET)
    assert str(raised.value) == INVALID


async def test_servers_starting_together_share_one_secret(database_url: str) -> None:
    first, second = Database(database_url), Database(database_url)
    try:
        made = await asyncio.gather(
            server_secrets.shared_secret(first, "cursor", MOMENT),
            server_secrets.shared_secret(second, "cursor", MOMENT),
        )
        again = await server_secrets.shared_secret(first, "cursor", MOMENT)
    finally:
        await first.dispose()
        await second.dispose()
    assert made[0] == made[1] == again
    assert len(base64.urlsafe_b64decode(again + "=")) == 32


async def test_the_setting_signs_cursors_when_given(database_url: str) -> None:
    db = Database(database_url)
    try:
        stored = await cursor_secret(db, Settings(database_url=database_url), lambda: MOMENT)
        given = Settings(database_url=database_url, cursor_secret=SecretStr("from the vault"))
        assert await cursor_secret(db, given, lambda: MOMENT) == (
            hashlib.sha256(b"from the vault").digest()
        )
        assert stored != hashlib.sha256(b"from the vault").digest()
    finally:
        await db.dispose()


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.one_of(st.text(), st.integers(min_value=-(2**31), max_value=2**31 - 1)), max_size=4)
)
def test_a_cursors_json_is_the_bytes_cursors_always_carried(values: list[Any]) -> None:
    """orjson writes most cursors (a page signs one per row); every byte stays what
    json.dumps wrote, so a cursor handed out before is the cursor handed out now."""
    assert cursor_json(values) == json.dumps(values, separators=(",", ":")).encode()
