"""The delta's pure core on frames and mappings: where the cache differs, what to fetch again."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from contactsync_kit.delta_plan import (
    changed_since,
    differing_buckets,
    newest_change,
    plan_reconcile,
)
from contactsync_kit.digest import Digest, bucket_sums

VERSIONS = {"id": pl.String, "updated_at": pl.String}
A1 = "a1000000-0000-4000-8000-000000000001"
A2 = "a1000000-0000-4000-8000-000000000002"
B1 = "b2000000-0000-4000-8000-000000000001"
C1 = "c3000000-0000-4000-8000-000000000001"
T0 = "2026-03-01T10:00:00.000000Z"
T1 = "2026-03-01T11:00:00.000000Z"


def versions(*rows: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=VERSIONS, orient="row")


def server_side(frame: pl.DataFrame) -> dict[str, tuple[int, int]]:
    """What the server's bucketed digest says of `frame`'s rows."""
    return {bucket: (d.count, d.value) for bucket, d in bucket_sums(frame).items()}


def test_equal_sides_differ_nowhere() -> None:
    rows = versions((A1, T0), (A2, T0), (B1, T1))
    assert differing_buckets({"t": bucket_sums(rows)}, {"t": server_side(rows)}) == {"t": set()}


def test_a_row_gone_from_the_server_makes_its_bucket_differ() -> None:
    cache = versions((A1, T0), (A2, T0), (B1, T1))
    server = versions((A1, T0), (B1, T1))
    assert differing_buckets({"t": bucket_sums(cache)}, {"t": server_side(server)}) == {
        "t": {"a10"}
    }


def test_a_newer_row_differs_with_the_same_count() -> None:
    cache, server = versions((A1, T0), (B1, T0)), versions((A1, T0), (B1, T1))
    assert differing_buckets({"t": bucket_sums(cache)}, {"t": server_side(server)}) == {
        "t": {"b20"}
    }


def test_buckets_only_one_side_has_differ_and_every_table_is_answered() -> None:
    cache = {"t": {"a10": Digest(1, 5, 7)}, "u": {}}
    server = {"t": {"c30": (1, 99)}, "v": {"b20": (2, 3)}}
    assert differing_buckets(cache, server) == {"t": {"a10", "c30"}, "u": set(), "v": {"b20"}}


def test_an_empty_bucket_agrees_with_an_absent_one() -> None:
    assert differing_buckets({"t": {"a10": Digest()}}, {"t": {}}) == {"t": set()}


def test_the_reconcile_fetches_changed_and_missing_rows_and_deletes_gone_ones() -> None:
    server = versions((A1, T1), (B1, T0))  # A1 newer, B1 missing here, A2 gone
    cached = versions((A1, T0), (A2, T0))
    stale, gone = plan_reconcile(server, cached, versions(), {"a10", "b20"})
    assert (sorted(stale), gone) == ([A1, B1], {A2})


def test_the_reconcile_counts_this_deltas_changes_as_cached() -> None:
    server = versions((A1, T1), (B1, T0))
    cached = versions((A1, T0), (B1, T0))
    # The changes already hold A1 at the server's time: nothing to fetch again.
    assert plan_reconcile(server, cached, versions((A1, T1)), {"a10", "b20"}) == ([], set())


def test_the_reconcile_compares_instants_not_text() -> None:
    server = versions((A1, "2026-03-01T10:00:00+00:00"))
    cached = versions((A1, T0))
    assert plan_reconcile(server, cached, versions(), {"a10"}) == ([], set())


def test_the_reconcile_looks_only_inside_the_buckets() -> None:
    server = versions((A1, T0))
    cached = versions((A1, T0), (C1, T0))  # C1's bucket is not being reconciled
    assert plan_reconcile(server, cached, versions((C1, T1)), {"a10"}) == ([], set())


def test_changes_are_asked_for_since_the_newest_minus_the_window() -> None:
    assert changed_since(T1, timedelta(seconds=60)) == "2026-03-01T10:59:00.000000Z"
    assert changed_since("2026-03-01T11:00:00+00:00", timedelta(0)) == T1


def test_the_newest_change_only_moves_forward() -> None:
    assert newest_change(versions((A1, T0), (B1, T1)), None) == T1
    assert newest_change(versions((A1, T0)), T1) == T1
    assert newest_change(versions(), T0) == T0
    assert newest_change(versions(), None) is None
