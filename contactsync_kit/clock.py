"""The injected clock: the kit never reads the wall clock directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

__all__ = [
    "CLOCK_SKEW_TOLERANCE",
    "Clock",
    "ManualClock",
    "ServerClock",
    "SystemClock",
    "describe_clock_offset",
]

#: A clock further than this from the server's is named to people (and the kit judges token
#: expiry in the server's time whatever the offset).
CLOCK_SKEW_TOLERANCE: Final = timedelta(minutes=2)

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


class ServerClock:
    """`local` shifted by a measured offset: the server's time, as seen from this computer.

    For comparing with times the server issued (a token's expiry); the kit's own records
    keep the local clock.
    """

    def __init__(self, local: Clock, offset: timedelta) -> None:
        self._local = local
        self.offset = offset

    def now(self) -> datetime:
        """The local time plus the offset (server minus local)."""
        return self._local.now() + self.offset


def describe_clock_offset(offset: timedelta) -> str | None:
    """A sentence when this computer's clock is off by more than `CLOCK_SKEW_TOLERANCE`.

    `offset` is the server's time minus the local clock's: "this computer's clock is 2 h
    ahead of the server", or None when the clocks agree well enough.
    """
    if abs(offset) <= CLOCK_SKEW_TOLERANCE:
        return None
    seconds = abs(offset.total_seconds())
    amount = (
        f"{seconds / 86400:.0f} d"
        if seconds >= 2 * 86400
        else f"{seconds / 3600:.0f} h"
        if seconds >= 5400
        else f"{seconds / 60:.0f} min"
    )
    side = "ahead of" if offset < timedelta(0) else "behind"
    return f"this computer's clock is {amount} {side} the server"
