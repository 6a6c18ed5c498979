"""SIGKILL during a delta apply leaves the old snapshot or the new one, never a mix.

A subprocess runs a delta sync over a copy of a cache that a full sync filled; it is killed
at several moments after it starts applying. Reopened, the file passes SQLite's integrity
check and holds exactly the rows before the sync or exactly the rows after it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contactsync_kit import ContactCache, SyncSuccess, start_session
from contactsync_kit.devstack import DevStack
from contactsync_kit.schemas import DATA_TABLES, TABLE_COLUMNS

pytestmark = pytest.mark.integration

_CHILD = r"""
import asyncio, os, sys
from contactsync_kit import start_session
from contactsync_kit import delta_store

url, key, email, password, path, org = sys.argv[1:7]
original = delta_store.DeltaStore.apply

def announced(self, *args, **kwargs):
    print("APPLY", flush=True)  # the parent kills from here on
    return original(self, *args, **kwargs)

delta_store.DeltaStore.apply = announced

async def main():
    session = await start_session(url, key, email=email, password=password, cache_path=path)
    result = await session.repository.sync_contacts_for_organisation(org, mode="delta")
    print("DONE", result.mode, result.verified, flush=True)

asyncio.run(main())
"""


def rows_of(path: Path, org: str) -> dict[str, list[tuple[object, ...]]]:
    cache = ContactCache.open(path)
    try:
        with cache.store.read() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
        return {
            t: sorted(cache.read_table(t, org, columns=list(TABLE_COLUMNS[t])).rows())
            if cache.counts(org)[t]
            else []
            for t in DATA_TABLES
        }
    finally:
        cache.close()


def run_child(args: list[str], kill_after_s: float | None) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    try:
        for line in child.stdout:
            if line.startswith("APPLY") and kill_after_s is not None:
                time.sleep(kill_after_s)  # the moment of the kill, not a wait for anything
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=60)
                return "killed"
            if line.startswith("DONE"):
                child.wait(timeout=60)
                return line.strip()
        child.wait(timeout=60)
        errors = child.stderr.read() if child.stderr is not None else ""
        raise AssertionError(f"the child ended without syncing: {errors}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_sigkill_during_a_delta_apply_leaves_the_old_or_the_new_snapshot(
    stack: DevStack, tmp_path: Path
) -> None:
    world = stack.seed(
        organisations=1,
        chapters_per_org=1,
        users_per_org=1,
        contacts_per_org=400,
        notes_per_contact=3,
        assignments_per_contact=1,
        seed=4301,
    )
    org, user = world.organisation_ids[0], world.user("org1-admin")
    base = tmp_path / "base.sqlite3"
    session = await start_session(
        stack.url, stack.anon_key, email=user.email, password=user.password, cache_path=base
    )
    first = await session.repository.sync_contacts_for_organisation(org)
    assert isinstance(first, SyncSuccess) and first.verified
    session.close()  # checkpoints the WAL into the file copied below
    old = rows_of(base, org)

    # Changes a delta applies in one transaction: edits, inserts and deletions found by the
    # digest (which make it reconcile and apply a second time).
    stack.sql("UPDATE notes SET body = body || ' (edited)' WHERE organisation_id = %s", org)
    stack.sql(
        "DELETE FROM contacts WHERE id IN (SELECT id FROM contacts "
        "WHERE organisation_id = %s ORDER BY id LIMIT 25)",
        org,
    )
    stack.sql(
        "INSERT INTO contacts (organisation_id, full_name) "
        "SELECT %s, 'Inserted ' || g FROM generate_series(1, 50) g",
        org,
    )

    args = [stack.url, stack.anon_key, user.email, user.password]
    complete = tmp_path / "complete.sqlite3"
    shutil.copyfile(base, complete)
    assert run_child([*args, str(complete), org], None) == "DONE delta True"
    new = rows_of(complete, org)
    assert new != old

    for number, delay in enumerate((0.0, 0.002, 0.01, 0.03, 0.1, 0.3)):
        copy = tmp_path / f"kill-{number}.sqlite3"
        shutil.copyfile(base, copy)
        run_child([*args, str(copy), org], delay)
        after = rows_of(copy, org)
        assert after in (old, new), f"kill {number}: a mix of old and new rows"
