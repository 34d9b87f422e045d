"""The `DateTime` scalar: a UTC instant, always written as 2025-06-05T04:57:11.151Z."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from graphql import GraphQLError
from strawberry.types.scalar import ScalarDefinition

from db.models import to_millis


def serialize(value: datetime) -> str:
    moment = to_millis(value)
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
