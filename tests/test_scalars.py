"""The DateTime scalar writes every instant as the contract shows: 2025-06-05T04:57:11.151Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from db.models import to_millis
from schema.scalars import serialize

zones = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=13))])


def reference(value: datetime) -> str:
    """The format spelt out field by field: UTC, milliseconds cut (not rounded), four-digit
    years from 1000 on (strftime's %Y does not pad earlier ones)."""
    moment = to_millis(value)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@given(st.datetimes(min_value=datetime(2, 1, 1), timezones=zones))
def test_serialize_writes_utc_milliseconds(value: datetime) -> None:
    assert serialize(value) == reference(value)


def test_serialize_cuts_to_the_millisecond_and_converts_to_utc() -> None:
    moment = datetime(2025, 6, 5, 6, 57, 11, 151999, tzinfo=timezone(timedelta(hours=2)))
    assert serialize(moment) == "2025-06-05T04:57:11.151Z"
