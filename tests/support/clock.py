"""A clock the test moves by hand, so time-based rules are tested without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """The app's clock in tests: still until the test advances it."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 5, 4, 57, 11, 151000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by
