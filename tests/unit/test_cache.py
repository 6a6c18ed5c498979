"""The SQLite cache: migrations, the one-transaction apply, clearing."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contactsync_kit import CacheVersionError, ContactCache, MappedPage, map_contacts_page
from contactsync_kit.cache import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SyncLogEntry,
    create_table_sql,
    spec_gaps_sql,
)
from contactsync_kit.cache_files import OWNER_TABLE
from contactsync_kit.cache_schema import index_sql
from contactsync_kit.delta_store import DIGEST_TABLES
from contactsync_kit.schemas import CACHE_TABLES, DATA_TABLES, SYNC_LOG, TABLES, TableSpec
from contactsync_kit.testing import StorageFaults, WriteStep, fake_contact

ORG_A = "aaaaaaaa-0000-4000-8000-000000000001"
ORG_B = "bbbbbbbb-0000-4000-8000-000000000002"
WHEN = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def page(org: str, count: int, seed: int = 0) -> MappedPage:
    rng = random.Random(seed)
    mapped = map_contacts_page([fake_contact(org, rng=rng, notes=3) for _ in range(count)], org)
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
    cache.record_attempt(SyncLogEntry(ORG_A, WHEN, 12, "success", rows={"contacts": 4}))
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
    assert removed == {
        "contacts": 3,
        "notes": 9,
        "contact_assignments": 3,
        "sync_state": 1,
        "sync_log": 1,
    }
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
    assert cache.read_table("contacts", ORG_B)["id"].to_list() == moved["contacts"]["id"].to_list()


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


# -- the table spec and the frozen migrations ----------------------------------------------


def table_info(raw: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    """(name, type, notnull, default, pk) per column, as SQLite reports them."""
    return [row[1:] for row in raw.execute(f"PRAGMA table_info({table})")]


def indexes(raw: sqlite3.Connection, table: str) -> dict[str, list[str]]:
    return {
        name: [col for _, _, col in raw.execute(f"PRAGMA index_info({name})")]
        for _, name, *_ in raw.execute(f"PRAGMA index_list({table})")
        if not name.startswith("sqlite_autoindex")
    }


def expected_info(spec: TableSpec) -> list[tuple[object, ...]]:
    return [
        (
            c.name,
            c.sql_type,
            int(c.required and c.name != spec.key),
            None if c.default is None else str(c.default),
            int(c.name == spec.key),
        )
        for c in spec.columns
    ]


@pytest.mark.parametrize("table", CACHE_TABLES)
def test_a_freshly_migrated_file_matches_the_table_spec(tmp_path: Path, table: str) -> None:
    ContactCache.open(tmp_path / "cache.sqlite3").close()
    fresh = sqlite3.connect(":memory:")
    for statement in create_table_sql(TABLES[table]):
        fresh.execute(statement)
    with sqlite3.connect(tmp_path / "cache.sqlite3") as migrated:
        assert table_info(migrated, table) == expected_info(TABLES[table])
        assert table_info(fresh, table) == table_info(migrated, table)
        assert indexes(fresh, table) == indexes(migrated, table)
        assert {tuple(cols) for cols in indexes(migrated, table).values()} == set(
            TABLES[table].indexes
        )


def test_the_migrations_create_exactly_the_spec_tables(tmp_path: Path) -> None:
    ContactCache.open(tmp_path / "cache.sqlite3").close()
    with sqlite3.connect(tmp_path / "cache.sqlite3") as raw:
        tables = {
            r[0]
            for r in raw.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        }
    # Beside the spec's tables: the owner record (outside the data schema's versions) and the
    # verified incremental sync's digest state (migration 3).
    assert tables == {*CACHE_TABLES, OWNER_TABLE, *DIGEST_TABLES}


def test_sync_log_entry_fields_are_the_sync_log_columns() -> None:
    # `rows` stands for one count column per synced table.
    fields = [f for f in dataclasses.fields(SyncLogEntry) if f.name != "rows"]
    assert tuple(f.name for f in fields) == tuple(
        name for name in SYNC_LOG.written if name not in DATA_TABLES
    )
    assert {name for name in SYNC_LOG.written if SYNC_LOG[name].default == 0} >= set(DATA_TABLES)
    for field in fields:
        column = SYNC_LOG[field.name]
        has_default = field.default is not dataclasses.MISSING
        assert has_default == (not column.required or column.default is not None), field.name
        if has_default:
            assert field.default == column.default, field.name


def test_sync_log_frames_have_the_spec_schema() -> None:
    cache = ContactCache.open(":memory:")
    cache.record_attempt(
        SyncLogEntry(ORG_A, WHEN, 12, "failure", error_kind="auth", http_status=401)
    )
    log = cache.read_table("sync_log")
    assert log.schema == SYNC_LOG.frame_schema()
    assert log.row(0, named=True)["started_at"] == "2026-05-01T09:30:00.000000+00:00"


# -- the storage fault hook -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "table"),
    [
        ("stage", "notes"),
        ("merge", "contacts"),
        ("merge", "contact_assignments"),
        ("sync_state", None),
    ],
)
def test_a_fault_at_any_write_step_leaves_the_cache_as_it_was(
    step: WriteStep, table: str | None
) -> None:
    faults = StorageFaults()
    cache = ContactCache.open(":memory:", faults=faults)
    cache.apply_sync(ORG_A, page(ORG_A, 2, seed=1), WHEN)
    before = {t: cache.read_table(t).rows() for t in DATA_TABLES}
    faults.fail_on(step, OSError("disk full"), table=table)
    with pytest.raises(OSError, match="disk full"):
        cache.apply_sync(ORG_A, page(ORG_A, 3, seed=2), datetime(2026, 6, 1, tzinfo=UTC))
    assert {t: cache.read_table(t).rows() for t in DATA_TABLES} == before
    assert cache.last_synced_at(ORG_A) == WHEN
    faults.clear()
    cache.apply_sync(ORG_A, page(ORG_A, 3, seed=2), WHEN)
    assert cache.counts(ORG_A)["contacts"] == 3


def test_the_fault_hook_sees_every_step_in_order() -> None:
    faults = StorageFaults()
    seen: list[tuple[str, str | None]] = []
    for step in ("stage", "merge", "sync_state", "log"):
        faults.call_on(step, lambda e: seen.append((e.step, e.table)))
    cache = ContactCache.open(":memory:", faults=faults)
    cache.apply_sync(ORG_A, page(ORG_A, 1), WHEN)
    cache.record_attempt(SyncLogEntry(ORG_A, WHEN, 5, "success"))
    assert seen == [
        *(("stage", t) for t in DATA_TABLES),
        *(("merge", t) for t in DATA_TABLES),
        ("sync_state", None),
        ("log", None),
    ]


def test_closing_an_in_memory_cache_waits_for_a_read_on_another_thread() -> None:
    # Its one shared connection closed under a running query crashed the process (SIGSEGV).
    import threading

    cache = ContactCache.open(":memory:")
    reading, done = threading.Event(), threading.Event()
    order: list[str] = []

    def read() -> None:
        with cache.store.read() as conn:
            reading.set()
            done.wait(0.3)  # close() is called meanwhile
            conn.exec_driver_sql("SELECT count(*) FROM contacts").scalar_one()
            order.append("read")

    reader = threading.Thread(target=read)
    reader.start()
    assert reading.wait(10)
    cache.close()
    order.append("closed")
    reader.join(10)
    assert order == ["read", "closed"]


def test_the_frozen_migrations_leave_no_gap_to_the_spec(tmp_path: Path) -> None:
    ContactCache.open(tmp_path / "cache.sqlite3").close()
    with sqlite3.connect(tmp_path / "cache.sqlite3") as migrated:
        shape = {
            name: (
                {row[1] for row in migrated.execute(f"PRAGMA table_info({name})")},
                {row[1] for row in migrated.execute(f"PRAGMA index_list({name})")},
            )
            for (name,) in migrated.execute("SELECT name FROM sqlite_schema WHERE type='table'")
        }
    assert spec_gaps_sql(shape) == ()


def test_a_table_or_column_the_spec_adds_is_created_from_the_spec() -> None:
    # A file as the frozen migrations leave it, but without the assignments table and the sync
    # log's count column for it: what a file looks like to a kit whose spec has a new table.
    shape = {
        name: (set(spec.names), set(index_sql(spec)))
        for name, spec in TABLES.items()
        if name != "contact_assignments"
    }
    shape["sync_log"][0].discard("contact_assignments")
    gaps = spec_gaps_sql(shape)
    assert gaps == (
        *create_table_sql(TABLES["contact_assignments"]),
        "ALTER TABLE sync_log ADD COLUMN contact_assignments INTEGER NOT NULL DEFAULT 0",
    )
    fresh = sqlite3.connect(":memory:")
    for name, spec in TABLES.items():
        if name != "contact_assignments":
            for statement in create_table_sql(spec):
                fresh.execute(statement.replace(", contact_assignments INTEGER", ", _x INTEGER"))
    for statement in gaps:
        fresh.execute(statement)
    assert table_info(fresh, "contact_assignments") == expected_info(TABLES["contact_assignments"])
