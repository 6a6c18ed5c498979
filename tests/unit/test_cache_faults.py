"""Real storage faults end a sync as `local_write` with the cache unchanged; and the optional
SQLCipher encryption at rest.

The faults are real, not simulated: a database genuinely full (``max_page_count``), a file
locked by another connection past the busy timeout, and a folder whose files cannot be
written (``chattr +i``: we run as root, where permission bits do not stop writes).
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

import contactsync_kit as kit
from contactsync_kit import ContactCache, ManualClock, SyncFailure, SyncSuccess
from contactsync_kit.results import SyncErrorKind
from contactsync_kit.testing import FakeSupabase

from .conftest import EMAIL, PASSWORD, repository_for
from .test_cache_privacy import files_holding, plant_contacts


def snapshot(cache: ContactCache, org: str) -> tuple[Any, ...]:
    return (
        cache.counts(),
        cache.last_synced_at(org),
        cache.read_table("contacts").sort("id").rows(),
        cache.read_table("notes").sort("id").rows(),
    )


@contextmanager
def database_full() -> Iterator[None]:
    """Every connection checked out may not grow its database by a single page."""

    def on_checkout(dbapi_conn: Any, *_: Any) -> None:
        cursor = dbapi_conn.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    def on_checkin(dbapi_conn: Any, *_: Any) -> None:
        if dbapi_conn is not None:
            dbapi_conn.execute("PRAGMA max_page_count = 1073741823")

    sa.event.listen(sa.pool.Pool, "checkout", on_checkout)
    sa.event.listen(sa.pool.Pool, "checkin", on_checkin)
    try:
        yield
    finally:
        sa.event.remove(sa.pool.Pool, "checkout", on_checkout)
        sa.event.remove(sa.pool.Pool, "checkin", on_checkin)


def locked_by_another_process(path: Path) -> AbstractContextManager[None]:
    @contextmanager
    def held() -> Iterator[None]:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the write lock, held past the kit's busy timeout
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

    return held()


def read_only_folder(path: Path) -> AbstractContextManager[None]:
    @contextmanager
    def frozen() -> Iterator[None]:
        # -shm is memory-mapped: freezing it would turn a write into SIGBUS, not an error.
        targets = [str(p) for p in (path.parent, path, path.with_name(path.name + "-wal"))]
        subprocess.run(["chattr", "+i", *targets], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *targets], check=True)

    return frozen()


FAULTS: dict[str, Callable[[Path], AbstractContextManager[None]]] = {
    "disk full (SQLITE_FULL)": lambda _path: database_full(),
    "locked past the busy timeout": locked_by_another_process,
    "read-only folder": read_only_folder,
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_storage_fault_is_a_local_write_failure_with_the_cache_unchanged(
    tmp_path: Path, org: str, fault: str
) -> None:
    fake = FakeSupabase(users={EMAIL: PASSWORD})
    plant_contacts(fake, org, count=20)
    path = tmp_path / "cache" / "cache.sqlite3"
    cache = ContactCache.open(path, busy_timeout_s=0.2)
    repo = await repository_for(fake, cache, ManualClock())
    assert isinstance(await repo.sync_contacts_for_organisation(org), SyncSuccess)
    before = snapshot(cache, org)
    fake.add_contacts(org, 200, notes=3, seed=99)  # the next sync must write a lot more

    with FAULTS[fault](path):
        result = await repo.sync_contacts_for_organisation(org)

    assert isinstance(result, SyncFailure), result
    assert result.error.kind is SyncErrorKind.LOCAL_WRITE
    assert "rolled back" in result.error.message
    assert snapshot(cache, org) == before
    # The fault gone, the same cache syncs again.
    assert isinstance(await repo.sync_contacts_for_organisation(org), SyncSuccess)
    assert cache.counts(org)["contacts"] == 220
    cache.close()


# -- encryption at rest (SQLCipher, the `encrypted` extra) -----------------------------------


async def test_an_encrypted_cache_holds_no_plaintext_in_any_file(tmp_path: Path, org: str) -> None:
    fake = FakeSupabase(users={EMAIL: PASSWORD})
    values = plant_contacts(fake, org)
    path = tmp_path / "cache" / "cache.sqlite3"
    cache = ContactCache.open(path, key="correct horse battery staple")
    repo = await repository_for(fake, cache, ManualClock())
    assert isinstance(await repo.sync_contacts_for_organisation(org), SyncSuccess)
    assert cache.read_table("contacts").height == 40
    assert (path.parent / "cache.sqlite3-wal").stat().st_size > 0  # the WAL holds pages too
    assert files_holding(path.parent, values) == {}
    assert not path.read_bytes().startswith(b"SQLite format 3")
    cache.close()
    assert files_holding(path.parent, values) == {}
    reopened = ContactCache.open(path, key="correct horse battery staple")
    assert reopened.counts(org)["contacts"] == 40
    reopened.close()


def test_a_wrong_key_or_no_key_is_a_clear_error_and_the_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    ContactCache.open(path, key="right").close()
    before = path.read_bytes()
    with pytest.raises(kit.CacheKeyError, match="cannot be read with this key"):
        ContactCache.open(path, key="wrong")
    with pytest.raises(kit.ForeignCacheFileError, match="encrypted with a key"):
        ContactCache.open(path)
    assert path.read_bytes() == before
    with pytest.raises(kit.ForeignCacheFileError):
        ContactCache.reset(path)  # without the key the kit cannot tell it is its own
    assert path in ContactCache.reset(path, key="right")
    assert not path.exists()


def test_a_plain_cache_opened_with_a_key_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    ContactCache.open(path).close()
    before = path.read_bytes()
    with pytest.raises(kit.CacheKeyError):
        ContactCache.open(path, key="some key")
    assert path.read_bytes() == before
    assert pl.DataFrame(ContactCache.open(path).counts(), strict=False).height == 1
