"""The SQLite cache: migrations, the one-transaction apply, clearing."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contactsync_kit import CacheVersionError, ContactCache, MappedPage, map_contacts_page
from contactsync_kit.cache import MIGRATIONS, SCHEMA_VERSION, SyncLogEntry
from contactsync_kit.testing import fake_contact

ORG_A = "aaaaaaaa-0000-4000-8000-000000000001"
ORG_B = "bbbbbbbb-0000-4000-8000-000000000002"
WHEN = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def page(org: str, count: int, seed: int = 0) -> MappedPage:
    rng = random.Random(seed)
    mapped = map_contacts_page([fake_contact(org, rng=rng) for _ in range(count)], org)
    assert isinstance(mapped, MappedPage)
    return mapped


def test_a_version_1_file_is_upgraded_with_its_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    old = ContactCache.open(path, target_version=1)
    old.apply_sync(ORG_A, page(ORG_A, 4), WHEN)
    old.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (1,)
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "sync_log" not in tables

    cache = ContactCache.open(path)
    assert cache.schema_version == SCHEMA_VERSION == max(MIGRATIONS) > 1
    assert cache.counts(ORG_A)["contacts"] == 4
    assert cache.last_synced_at(ORG_A) == WHEN
    cache.record_attempt(SyncLogEntry(ORG_A, WHEN, 12, "success", contacts=4))
    assert cache.read_table("sync_log").height == 1


def test_a_file_from_a_newer_kit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    ContactCache.open(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CacheVersionError, match="newer"):
        ContactCache.open(path)


def test_file_cache_uses_wal_so_readers_keep_reading_during_a_sync(tmp_path: Path) -> None:
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    with sqlite3.connect(tmp_path / "cache.sqlite3") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    cache.apply_sync(ORG_A, page(ORG_A, 2), WHEN)
    assert cache.counts()["contacts"] == 2


def test_apply_replaces_one_organisation_and_never_touches_another() -> None:
    cache = ContactCache.open(":memory:")
    cache.apply_sync(ORG_A, page(ORG_A, 3, seed=1), WHEN)
    cache.apply_sync(ORG_B, page(ORG_B, 5, seed=2), WHEN)
    b_rows = cache.read_table("notes", ORG_B).rows()
    cache.apply_sync(ORG_A, page(ORG_A, 2, seed=3), WHEN)
    assert cache.counts(ORG_A) == {"contacts": 2, "notes": 6, "contact_assignments": 2}
    assert cache.read_table("notes", ORG_B).rows() == b_rows


def test_last_synced_at_is_iso_utc_text_without_personal_data() -> None:
    cache = ContactCache.open(":memory:")
    cache.apply_sync(ORG_A, page(ORG_A, 1), WHEN)
    state = cache.read_table("sync_state")
    assert state.columns == ["organisation_id", "last_synced_at"]
    assert state.row(0) == (ORG_A, "2026-05-01T09:30:00.000000+00:00")


def test_naive_timestamps_are_refused() -> None:
    cache = ContactCache.open(":memory:")
    with pytest.raises(ValueError, match="aware"):
        cache.apply_sync(ORG_A, page(ORG_A, 1), datetime(2026, 1, 1))
    assert cache.counts()["contacts"] == 0


def test_clear_wipes_everything_and_reports_what_it_removed() -> None:
    cache = ContactCache.open(":memory:")
    cache.apply_sync(ORG_A, page(ORG_A, 3), WHEN)
    cache.record_attempt(SyncLogEntry(ORG_A, WHEN, 5, "success"))
    removed = cache.clear()
    assert removed == {"contacts": 3, "notes": 9, "contact_assignments": 3, "sync_state": 1,
                       "sync_log": 1}
    assert cache.overview().height == 0
    assert cache.last_synced_at(ORG_A) is None


def test_overview_lists_each_organisation_with_counts() -> None:
    cache = ContactCache.open(":memory:")
    cache.apply_sync(ORG_A, page(ORG_A, 3), WHEN)
    cache.apply_sync(ORG_B, page(ORG_B, 1, seed=9), WHEN)
    overview = cache.overview()
    assert overview["organisation_id"].to_list() == [ORG_A, ORG_B]
    assert overview["contacts"].to_list() == [3, 1]
    assert overview["last_synced_at"][0] == WHEN


def test_a_contact_that_moved_organisation_moves_in_the_cache() -> None:
    cache = ContactCache.open(":memory:")
    cache.apply_sync(ORG_A, page(ORG_A, 2, seed=4), WHEN)
    moved = page(ORG_B, 1, seed=4)  # same generator state: the first contact's id again
    cache.apply_sync(ORG_B, moved, WHEN)
    assert cache.counts(ORG_A)["contacts"] == 1
    assert cache.read_table("contacts", ORG_B)["id"].to_list() == moved.contacts["id"].to_list()


def test_unknown_table_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        ContactCache.open(":memory:").read_table("sqlite_master")


def test_read_table_can_leave_personal_columns_on_disk() -> None:
    cache = ContactCache.open(":memory:")
    cache.apply_sync(ORG_A, page(ORG_A, 2), WHEN)
    frame = cache.read_table("contacts", ORG_A, columns=("id", "updated_at"))
    assert frame.columns == ["id", "updated_at"] and frame.height == 2
    with pytest.raises(ValueError, match="full_nam"):
        cache.read_table("contacts", columns=("id", "full_nam"))


@pytest.mark.parametrize("where", ["memory", "file"])
def test_staged_pages_are_invisible_until_commit_and_gone_after_discard(
    tmp_path: Path, where: str
) -> None:
    cache = ContactCache.open(":memory:" if where == "memory" else tmp_path / "c.sqlite3")
    cache.apply_sync(ORG_A, page(ORG_A, 2, seed=1), WHEN)
    before = cache.read_table("contacts").rows()
    with cache.begin_sync(ORG_A) as staging:
        staging.stage(page(ORG_A, 3, seed=2))
        staging.stage(page(ORG_A, 4, seed=3))
        assert cache.read_table("contacts").rows() == before
    assert cache.read_table("contacts").rows() == before
    with cache.begin_sync(ORG_A) as staging:
        staging.stage(page(ORG_A, 3, seed=2))
        staging.stage(page(ORG_A, 4, seed=3))
        staging.commit(WHEN)
    assert cache.counts(ORG_A) == {"contacts": 7, "notes": 21, "contact_assignments": 7}


def test_two_organisations_can_stage_side_by_side(tmp_path: Path) -> None:
    cache = ContactCache.open(tmp_path / "c.sqlite3")
    a, b = cache.begin_sync(ORG_A), cache.begin_sync(ORG_B)
    a.stage(page(ORG_A, 2, seed=1))
    b.stage(page(ORG_B, 3, seed=2))
    a.commit(WHEN)
    b.commit(WHEN)
    assert (cache.counts(ORG_A)["contacts"], cache.counts(ORG_B)["contacts"]) == (2, 3)
