"""The `DateTime` scalar: a UTC instant, always written as 2025-06-05T04:57:11.151Z."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from graphql import GraphQLError
from strawberry.types.scalar import ScalarDefinition

from db.models import to_millis


def serialize(value: datetime) -> str:
    # What the tables give back is in UTC and whole milliseconds already.
    exact = value.tzinfo is UTC and not value.microsecond % 1000
    moment = value if exact else to_millis(value)
    if moment.year >= 1000:  # isoformat and strftime agree (strftime does not pad years)
        # isoformat is several times faster than strftime; a list writes two per row.
        return moment.isoformat(timespec="milliseconds")[:-6] + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse(value: object) -> datetime:
    """An ISO 8601 instant with a time zone (`Z` or an offset), converted to UTC."""
    if not isinstance(value, str):
        raise GraphQLError("A DateTime is a string such as 2025-06-05T04:57:11.151Z.")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise GraphQLError(
            f"{value!r} is not an ISO 8601 instant with a time zone, such as "
            "2025-06-05T04:57:11.151Z."
        )
    return moment.astimezone(UTC)


DateTime: ScalarDefinition = strawberry.scalar(
    name="DateTime",
    description=(
        "An instant in UTC with millisecond precision, always written as "
        "`2025-06-05T04:57:11.151Z`. Input accepts any ISO 8601 instant with a time zone."
    ),
    serialize=serialize,
    parse_value=parse,
)
