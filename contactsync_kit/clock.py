"""The injected clock: the kit never reads the wall clock directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]

__io__ = "none"


class Clock(Protocol):
    """Anything with `now()` returning an aware UTC datetime."""

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...


class SystemClock:
    """The real clock, in UTC."""

    def now(self) -> datetime:
        """The system's current time, in UTC."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to; for tests and what-if staleness checks."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        """The time this clock was set or advanced to."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by `delta`."""
        self._now += delta

    def set(self, when: datetime) -> None:
        """Jump to `when` (aware)."""
        if when.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = when.astimezone(UTC)
