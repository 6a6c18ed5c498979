"""A sync killed (SIGKILL) at any point leaves the cache's old snapshot or its new one.

The sync runs in a child process against a file cache that holds a previous snapshot; the
storage fault hook stops it at a chosen step of the write path (after some pages were
written, in the sweep, at the `last_synced_at` stamp, after the commit) and writes a marker
file, and the parent kills it there. After reopening, SQLite's integrity check passes and
every table equals either the old snapshot or the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contactsync_kit import ContactCache, ContactCacheSyncRepository, ManualClock, SyncSuccess
from contactsync_kit.testing import FakeContactSource, StorageFaults, WriteEvent

ORG = "0b0b0b0b-0000-4000-8000-00000000000a"
OTHER_ORG = "0c0c0c0c-0000-4000-8000-00000000000b"
PAGE = 40
OLD_TIME = datetime(2026, 3, 1, tzinfo=UTC)
NEW_TIME = datetime(2026, 3, 2, tzinfo=UTC)
TABLES = ("contacts", "notes", "contact_assignments", "sync_state")
ROOT = Path(__file__).resolve().parents[2]


def old_source() -> FakeContactSource:
    source = FakeContactSource(page_size=PAGE)
    source.add_contacts(ORG, 300, seed=1)
    source.add_contacts(OTHER_ORG, 30, seed=3)
    return source


def new_source() -> FakeContactSource:
    """The server later: 60 contacts gone, one note edited, 100 contacts new."""
    source = old_source()
    mine = [row for row in source.contacts if row["organisation_id"] == ORG]
    for gone in mine[:60]:
        source.contacts.remove(gone)
    mine[100]["notes"][0]["body"] = "edited since the last sync"
    source.add_contacts(ORG, 100, seed=2)
    return source


async def sync(
    path: Path,
    source: FakeContactSource,
    when: datetime,
    *orgs: str,
    faults: StorageFaults | None = None,
) -> None:
    cache = ContactCache.open(path, faults=faults)
    try:
        repo = ContactCacheSyncRepository(None, cache, ManualClock(when), source=source)
        for org in orgs:
            result = await repo.sync_contacts_for_organisation(org)
            assert isinstance(result, SyncSuccess), result
    finally:
        cache.close()


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    cache = ContactCache.open(path)
    try:
        return {t: sorted(cache.read_table(t).rows(), key=str) for t in TABLES}
    finally:
        cache.close()


def child_main(path: str, step: str, table: str, nth: str, marker: str) -> None:
    """In the child: sync the new server state, stopping for good at the chosen step."""
    seen = 0

    def stop_here(_event: WriteEvent) -> None:
        nonlocal seen
        seen += 1
        if seen == int(nth):
            Path(marker).write_text(step)
            threading.Event().wait()  # the parent kills the process here

    faults = StorageFaults()
    faults.call_on(step, stop_here, table=table or None)  # type: ignore[arg-type]
    asyncio.run(sync(Path(path), new_source(), NEW_TIME, ORG, faults=faults))


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The old snapshot (both organisations synced), and the new one a whole sync makes."""
    old, new = (tmp_path_factory.mktemp("snapshots") / name for name in ("old", "new"))
    for path in (old, new):
        asyncio.run(sync(path, old_source(), OLD_TIME, ORG, OTHER_ORG))
    asyncio.run(sync(new, new_source(), NEW_TIME, ORG))
    # Closing the last connection checkpoints the WAL: the file alone is the snapshot.
    return {"old": snapshot(old), "new": snapshot(new), "template": old.read_bytes()}


@pytest.mark.parametrize(
    ("step", "table", "nth", "expected"),
    [
        ("stage", "contacts", 1, "old"),  # before the first page is written
        ("stage", "contacts", 4, "old"),  # after three pages were written
        ("stage", "notes", 9, "old"),  # part of the way through the ninth page
        ("merge", "notes", 1, "old"),  # in the sweep: contacts swept, notes not yet
        ("sync_state", "", 1, "old"),  # everything written but last_synced_at, not committed
        ("log", "", 1, "new"),  # committed; killed before the sync log entry
    ],
)
def test_a_sync_killed_at_any_point_leaves_the_old_or_the_new_snapshot(
    tmp_path: Path, snapshots: dict[str, Any], step: str, table: str, nth: int, expected: str
) -> None:
    assert snapshots["old"] != snapshots["new"]
    path = tmp_path / "cache.sqlite3"
    path.write_bytes(snapshots["template"])
    marker = tmp_path / "stopped"
    code = "import sys; from tests.unit.test_sync_kill import child_main; child_main(*sys.argv[1:])"
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path), step, table, str(nth), str(marker)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.communicate()[1].decode()
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    after = snapshot(path)
    assert after in (snapshots["old"], snapshots["new"]), "a mix of two snapshots"
    assert after == snapshots[expected]
