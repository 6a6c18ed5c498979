"""The pure pieces under the panels: staleness rules, age wording, result wording, the chart."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import contactsync_kit.staleness as staleness_module
from contactsync_kit import StageTimings, SyncError, SyncErrorKind, SyncFailure, SyncSuccess
from contactsync_kit.staleness import DEFAULT_STALE_AFTER, assess_staleness, format_age
from contactsync_kit.widgets import describe_result
from contactsync_kit.widgets._chart import age_chart_png
from contactsync_kit.widgets.login import describe_removed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def overview(*synced: datetime | None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "organisation_id": [f"org-{i}" for i in range(len(synced))],
            "last_synced_at": list(synced),
            "contacts": [10] * len(synced),
        },
        schema={
            "organisation_id": pl.String,
            "last_synced_at": pl.Datetime("us", "UTC"),
            "contacts": pl.Int64,
        },
    )


@pytest.mark.parametrize(
    ("age", "stale", "text"),
    [
        (timedelta(0), False, "0 s"),
        (timedelta(seconds=59.9), False, "59 s"),
        (timedelta(minutes=5), False, "5 min"),
        (timedelta(hours=3, minutes=7), False, "3 h 7 min"),
        (timedelta(hours=24), False, "1 d 0 h"),  # exactly the threshold is not yet stale
        (timedelta(hours=24, seconds=1), True, "1 d 0 h"),
        (timedelta(days=3, hours=5), True, "3 d 5 h"),
        (timedelta(minutes=-10), False, "0 s"),  # clock skew: a sync "in the future"
    ],
)
def test_age_and_stale_flag(age: timedelta, stale: bool, text: str) -> None:
    [row] = assess_staleness(overview(NOW - age), NOW).to_dicts()
    assert (row["stale"], row["age"]) == (stale, text)
    assert row["age_s"] == max(age.total_seconds(), 0.0)
    assert row["contacts"] == 10, "the overview's columns are kept"


def test_never_synced_is_stale_with_no_age() -> None:
    [row] = assess_staleness(overview(None), NOW).to_dicts()
    assert (row["age_s"], row["age"], row["stale"]) == (None, "never synced", True)


def test_threshold_is_configurable_and_default_is_24_hours() -> None:
    frame = overview(NOW - timedelta(hours=30))
    assert timedelta(hours=24) == DEFAULT_STALE_AFTER
    assert assess_staleness(frame, NOW)["stale"].to_list() == [True]
    assert assess_staleness(frame, NOW, timedelta(hours=48))["stale"].to_list() == [False]


def test_empty_overview_gives_an_empty_report() -> None:
    report = assess_staleness(overview(), NOW)
    assert report.height == 0 and {"age_s", "age", "stale"} <= set(report.columns)


@pytest.mark.parametrize(
    ("now", "threshold"),
    [
        (datetime(2026, 3, 1), DEFAULT_STALE_AFTER),
        (NOW, timedelta(0)),
    ],
)
def test_bad_arguments_are_refused(now: datetime, threshold: timedelta) -> None:
    with pytest.raises(ValueError):
        assess_staleness(overview(NOW), now, threshold)


def test_format_age_matches_the_report_wording() -> None:
    assert [format_age(s) for s in (None, 42, 3600 * 5 + 60, 86400 * 2)] == [
        "never synced",
        "42 s",
        "5 h 1 min",
        "2 d 0 h",
    ]


def test_staleness_module_stays_pure() -> None:
    tree = ast.parse(Path(staleness_module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"supabase", "sqlalchemy", "ipywidgets", "httpx", "postgrest"}


def test_result_wording() -> None:
    timings = StageTimings(fetch_ms=40, map_ms=5, write_ms=1200)
    ok = SyncSuccess(
        organisation_id="o",
        rows_synced={"contacts": 1200, "notes": 3600, "contact_assignments": 1200},
        duration_ms=1250,
        pages=2,
        timings=timings,
    )
    assert describe_result(ok, "Acme") == (
        "Synced Acme: 1,200 contacts, 3,600 notes and 1,200 assignments, in 1.2 s. "
        "Fetched everything. Not verified: the server's digest was not checked; the cache "
        "holds what the server sent, but nothing proved it equal."
    )
    failed = SyncFailure(
        organisation_id="o",
        duration_ms=7,
        error=SyncError(
            SyncErrorKind.AUTH, "the session token has expired; sign in again", code="token_expired"
        ),
    )
    assert describe_result(failed).startswith(
        "The sync did not work: the session token has expired; sign in again. Nothing was "
        "changed in this computer's copy."
    )


def test_removed_counts_read_as_a_sentence() -> None:
    assert describe_removed(
        {"contacts": 1, "notes": 3, "contact_assignments": 0, "sync_log": 1}
    ) == ("1 contact, 3 notes, 0 assignments, 1 sync log entry")
    assert describe_removed({}) == "nothing"


def test_chart_is_a_png_even_when_nothing_is_cached() -> None:
    report = assess_staleness(overview(NOW - timedelta(hours=30), None), NOW).with_columns(
        label=pl.col("organisation_id")
    )
    for frame in (report, report.head(0)):
        assert age_chart_png(frame, 24.0).startswith(b"\x89PNG")
