"""How old is the cache? Pure, vectorised staleness rules over `ContactCache.overview()`.

Imports neither supabase nor SQLAlchemy: the frames in, the frames out. The default threshold
is the seed epic's 24 hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

__all__ = ["DEFAULT_STALE_AFTER", "assess_staleness", "format_age"]

__io__ = "none"

#: A cache older than this is stale (the seed epic's rule).
DEFAULT_STALE_AFTER: Final = timedelta(hours=24)

_MINUTE: Final = 60
_HOUR: Final = 3600
_DAY: Final = 86400


def assess_staleness(
    overview: pl.DataFrame,
    now: datetime,
    threshold: timedelta = DEFAULT_STALE_AFTER,
) -> pl.DataFrame:
    """Add ``age_s``, ``age`` and ``stale`` to a cache overview, one row per organisation.

    `overview` needs ``last_synced_at`` (aware UTC datetimes, null when never synced) as
    `ContactCache.overview()` returns it; its other columns are kept. ``age_s`` is seconds
    since the last sync (null when never synced; a sync stamped after `now` — clock skew —
    counts as 0), ``age`` the same for people ("2 h 5 min", "never synced"), and ``stale`` is
    true when the age exceeds `threshold` or the organisation never synced successfully.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if threshold <= timedelta(0):
        raise ValueError("threshold must be positive")
    now_utc = now.astimezone(UTC)
    age = (
        (
            pl.lit(now_utc, dtype=pl.Datetime("us", "UTC"))
            - pl.col("last_synced_at").cast(pl.Datetime("us", "UTC"))
        )
        .dt.total_seconds(fractional=True)
        .clip(lower_bound=0.0)
    )
    return overview.with_columns(age_s=age).with_columns(
        age=_age_text(pl.col("age_s")),
        stale=pl.col("age_s").is_null() | (pl.col("age_s") > threshold.total_seconds()),
    )


def format_age(seconds: float | None) -> str:
    """Seconds as people read an age: ``"45 s"``, ``"12 min"``, ``"3 h 5 min"``, ``"2 d 4 h"``,
    from two weeks on in weeks (``"5 weeks"``), from a year on in years and weeks.

    The kit's one age wording: `assess_staleness` puts it in its ``age`` column, and the
    diagnosis, the login panel and the diagnostics panel use it too. None reads "never synced".
    """
    frame = pl.DataFrame({"s": [seconds]}, schema={"s": pl.Float64})
    text: str = frame.select(_age_text(pl.col("s"))).item()
    return text


def _age_text(seconds: pl.Expr) -> pl.Expr:
    whole = seconds.floor().cast(pl.Int64)
    days, hours = whole // _DAY, (whole % _DAY) // _HOUR
    minutes, secs = (whole % _HOUR) // _MINUTE, whole % _MINUTE
    return (
        pl.when(seconds.is_null())
        .then(pl.lit("never synced"))
        .when(whole < _MINUTE)
        .then(pl.format("{} s", secs))
        .when(whole < _HOUR)
        .then(pl.format("{} min", minutes))
        .when(whole < _DAY)
        .then(pl.format("{} h {} min", hours, minutes))
        .when(days < 14)
        .then(pl.format("{} d {} h", days, hours))
        .when(days < 365)
        .then(pl.format("{} weeks", days // 7))
        .otherwise(
            pl.format(
                "{} year{} {} weeks",
                days // 365,
                pl.when(days // 365 == 1).then(pl.lit("")).otherwise(pl.lit("s")),
                (days % 365) // 7,
            )
        )
    )
