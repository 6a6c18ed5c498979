"""`make bench`: the seed's performance line, measured against the real local stack.

Full sync of N contacts (3 notes and 1 assignment each) through supabase-py against
PostgreSQL + PostgREST, median of repeated runs, for

* the kit: one embedded-join query per keyset page, polars mapping, one transaction with
  one bulk upsert per table;
* the naive way the seed warns against: one query for the contacts, then one per contact
  for its notes and one for its assignments (N+1), and one upsert + commit per record.

Both run in the same process against the same data; the ratio is printed side by side.
Speed targets are measured here, never asserted in tests: this machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from contactsync_kit import ContactCache, ContactCacheSyncRepository, SystemClock, sign_in
from contactsync_kit.cache import MIGRATIONS
from contactsync_kit.devstack import DevStack
from contactsync_kit.schemas import TABLE_COLUMNS

Runner = Callable[[Path], Awaitable[int]]


def _naive_upsert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    columns = list(TABLE_COLUMNS[table])
    conn.execute(
        f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})", [row.get(c) for c in columns])
    conn.commit()


def _naive_cache(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    # The kit's own journal settings, so the comparison measures the approach (N+1 requests,
    # a commit per record), not a slower journal mode.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statements in MIGRATIONS.values():
        for statement in statements:
            conn.execute(statement)
    conn.commit()
    return conn


async def naive_sync(client: Any, organisation_id: str, path: Path) -> int:
    """The N+1 way: per-contact requests for notes and assignments, a commit per row."""
    conn = _naive_cache(path)
    contacts: list[dict[str, Any]] = []
    while True:  # offset pages: without them db-max-rows would silently cut the list
        page = (await client.table("contacts").select("*")
                .eq("organisation_id", organisation_id).order("id")
                .range(len(contacts), len(contacts) + 999).execute()).data
        contacts.extend(page)
        if len(page) < 1000:
            break
    for contact in contacts:
        _naive_upsert(conn, "contacts", contact)
        notes = (await client.table("notes").select("*")
                 .eq("contact_id", contact["id"]).execute()).data
        for note in notes:
            _naive_upsert(conn, "notes", note)
        assignments = (await client.table("contact_assignments").select("*")
                       .eq("contact_id", contact["id"]).execute()).data
        for assignment in assignments:
            _naive_upsert(conn, "contact_assignments", assignment)
    conn.close()
    return len(contacts)


async def kit_sync(client: Any, organisation_id: str, path: Path) -> int:
    """The kit's way, through the public repository."""
    cache = ContactCache.open(path)
    repo = ContactCacheSyncRepository(client, cache, SystemClock())
    result = await repo.sync_contacts_for_organisation(organisation_id)
    cache.close()
    if result.error is not None:
        raise RuntimeError(f"benchmark sync failed: {result.error}")
    return result.items_synced


class PeakRss:
    """Samples this process's resident memory every few ms; `growth_mib` is peak - start.

    RSS, not tracemalloc: polars and SQLite allocate outside Python's allocator.
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._start = self._peak = 0

    def __enter__(self) -> PeakRss:
        self._start = self._peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._process.memory_info().rss)

    @property
    def growth_mib(self) -> float:
        return (self._peak - self._start) / 2**20


async def measure(label: str, runner: Runner, repeats: int) -> tuple[float, float, int]:
    """Median seconds and the largest RSS growth over `repeats` runs, each to a fresh cache."""
    seconds: list[float] = []
    growth: list[float] = []
    items = 0
    for attempt in range(repeats):
        with tempfile.TemporaryDirectory() as workdir, PeakRss() as memory:
            started = time.perf_counter()
            items = await runner(Path(workdir) / "cache.sqlite3")
            seconds.append(time.perf_counter() - started)
        growth.append(memory.growth_mib)
        print(f"    {label} run {attempt + 1}/{repeats}: {seconds[-1] * 1000:8.1f} ms, "
              f"RSS +{growth[-1]:.0f} MiB", flush=True)
    return statistics.median(seconds), max(growth), items


async def run(sizes: list[int], repeats: int, naive_limit: int) -> None:
    with DevStack.start() as stack:
        print(f"local stack at {stack.url} (PostgreSQL + PostgREST 12, db-max-rows 1000)")
        rows: list[tuple[int, float, float, float | None, float | None]] = []
        for index, size in enumerate(sizes):
            seed = stack.seed(organisations=1, chapters_per_org=1, users_per_org=1,
                              contacts_per_org=size, notes_per_contact=3,
                              assignments_per_contact=1, seed=9000 + index)
            user = seed.user("org1-admin")
            org = seed.organisation_ids[0]
            client = await sign_in(stack.url, stack.anon_key, email=user.email,
                                   password=user.password, timeout_s=120)
            print(f"\n{size} contacts x (3 notes + 1 assignment), kit median of {repeats}:")
            kit_s, kit_mib, kit_items = await measure(
                "kit  ", functools.partial(kit_sync, client, org), repeats)
            assert kit_items == size, (kit_items, size)
            naive_s = naive_mib = None
            if size <= naive_limit:
                # The naive variant is slow; three runs give a fair median.
                naive_s, naive_mib, naive_items = await measure(
                    "naive", functools.partial(naive_sync, client, org), min(repeats, 3))
                assert naive_items == size, (naive_items, size)
            rows.append((size, kit_s, kit_mib, naive_s, naive_mib))

        print("\n| contacts | kit median | kit RSS growth | naive median | naive RSS growth "
              "| naive / kit |")
        print("|---:|---:|---:|---:|---:|---:|")
        for size, kit_s, kit_mib, naive_s, naive_mib in rows:
            naive = f"{naive_s * 1000:.0f} ms" if naive_s is not None else "not run"
            naive_peak = f"{naive_mib:.0f} MiB" if naive_mib is not None else "-"
            ratio = f"{naive_s / kit_s:.1f}x" if naive_s is not None else "-"
            print(f"| {size} | {kit_s * 1000:.0f} ms | {kit_mib:.0f} MiB | {naive} | "
                  f"{naive_peak} | {ratio} |")
        seed_line = next((r for r in rows if r[0] == 200), None)
        if seed_line is not None:
            verdict = "meets" if seed_line[1] < 3.0 else "MISSES"
            print(f"\nSeed target (200 contacts with notes in under 3 s): the kit {verdict} it "
                  f"at {seed_line[1] * 1000:.0f} ms median.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000, 20000, 100000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--naive-limit", type=int, default=2000,
                        help="largest size the slow naive variant runs at")
    args = parser.parse_args(argv)
    asyncio.run(run(args.sizes, args.repeats, args.naive_limit))


if __name__ == "__main__":
    main()
