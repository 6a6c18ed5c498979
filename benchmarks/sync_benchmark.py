"""`make bench`: a full sync against the fetch floor, measured against the real local stack.

Full sync of N contacts (3 notes and 1 assignment each) through supabase-py against
PostgreSQL + PostgREST, median of repeated runs (interleaved, so all see the same machine), for

* the kit: the public repository into a fresh file cache (the kit turns ``secure_delete`` on
  for every cache connection, so its cost is measured);
* the sequential fetch floor: the same embedded select as the same user, keyset pages of
  1,000 sent one after another with plain httpx and only read (no parsing, no writing);
* the parallel floor: the same pages, 4 at a time (id ranges from the count);
* at small sizes, the naive way the seed warns against: N+1 queries, a commit per record.

The kit / floor ratio is the figure to watch (issue 10's targets: ≤ 1.3 at 20,000 and
100,000 contacts, ≤ 2 at 200; peak RSS growth ≤ 100 MiB). Speed is measured here, never
asserted in tests: this machine is noisy.
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

import httpx
import psutil

from contactsync_kit import ContactCache, ContactCacheSyncRepository, SystemClock, sign_in
from contactsync_kit.cache import MIGRATIONS
from contactsync_kit.devstack import DevStack
from contactsync_kit.paging import id_ranges
from contactsync_kit.remote import last_row_key
from contactsync_kit.schemas import EMBEDDED_SELECT, TABLE_COLUMNS

PAGE = 1000
PARALLEL = 4


Runner = Callable[[Path], Awaitable[int]]


def _naive_upsert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    columns = list(TABLE_COLUMNS[table])
    conn.execute(
        f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})",
        [row.get(c) for c in columns],
    )
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
        page = (
            await client.table("contacts")
            .select("*")
            .eq("organisation_id", organisation_id)
            .order("id")
            .range(len(contacts), len(contacts) + 999)
            .execute()
        ).data
        contacts.extend(page)
        if len(page) < 1000:
            break
    for contact in contacts:
        _naive_upsert(conn, "contacts", contact)
        notes = (
            await client.table("notes").select("*").eq("contact_id", contact["id"]).execute()
        ).data
        for note in notes:
            _naive_upsert(conn, "notes", note)
        assignments = (
            await client.table("contact_assignments")
            .select("*")
            .eq("contact_id", contact["id"])
            .execute()
        ).data
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


class Floor:
    """Reads the organisation the way the kit does, and does nothing else with the pages."""

    def __init__(self, url: str, anon_key: str, token: str, organisation_id: str) -> None:
        self._url = f"{url}/rest/v1/contacts"
        self._headers = {"apikey": anon_key, "Authorization": f"Bearer {token}"}
        self._org = organisation_id

    async def _page(
        self,
        http: httpx.AsyncClient,
        after: str | None,
        upto: str | None = None,
        count: bool = False,
    ) -> httpx.Response:
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("select", EMBEDDED_SELECT),
            ("organisation_id", f"eq.{self._org}"),
            ("order", "id"),
            ("limit", str(PAGE)),
        ]
        if after is not None:
            params.append(("id", f"gt.{after}"))
        if upto is not None:
            params.append(("id", f"lte.{upto}"))
        headers = {**self._headers, **({"Prefer": "count=exact"} if count else {})}
        response = await http.get(self._url, params=httpx.QueryParams(params), headers=headers)
        response.raise_for_status()
        return response

    async def sequential(self, _path: Path) -> int:
        """Keyset pages one after another."""
        received, cursor = 0, None
        async with httpx.AsyncClient(timeout=120) as http:
            while True:
                body = (await self._page(http, cursor, count=cursor is None)).content
                cursor = last_row_key(body)
                if cursor is None:
                    return received
                received += body.count(b'"organisation_id"') // 5  # 1 + 3 notes + 1 assignment

    async def parallel(self, _path: Path) -> int:
        """The first page with the count, then id ranges, `PARALLEL` pages at a time."""
        async with httpx.AsyncClient(timeout=120) as http:
            first = await self._page(http, None, count=True)
            total = int(first.headers["content-range"].rpartition("/")[2])
            last = last_row_key(first.content)
            if last is None or total <= PAGE:
                return total
            gate = asyncio.Semaphore(PARALLEL)

            async def fetch_range(after: str, upto: str | None) -> None:
                while True:
                    async with gate:
                        body = (await self._page(http, after, upto)).content
                    cursor = last_row_key(body)
                    if cursor is None or body.count(b'"organisation_id"') < 5 * PAGE:
                        return
                    after = cursor

            await asyncio.gather(
                *(fetch_range(a, b) for a, b in id_ranges(last, total - PAGE, PAGE))
            )
            return total


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


async def timed(runner: Runner) -> tuple[float, float, int]:
    """One run to a fresh cache: seconds, peak RSS growth in MiB, items."""
    with tempfile.TemporaryDirectory() as workdir, PeakRss() as memory:
        started = time.perf_counter()
        items = await runner(Path(workdir) / "cache.sqlite3")
        seconds = time.perf_counter() - started
    return seconds, memory.growth_mib, items


Row = dict[str, float | None]


async def measure_size(
    stack: DevStack, size: int, index: int, repeats: int, naive_limit: int
) -> Row:
    seed = stack.seed(
        organisations=1,
        chapters_per_org=1,
        users_per_org=1,
        contacts_per_org=size,
        notes_per_contact=3,
        assignments_per_contact=1,
        seed=9000 + index,
    )
    user = seed.user("org1-admin")
    org = seed.organisation_ids[0]
    client = await sign_in(
        stack.url, stack.anon_key, email=user.email, password=user.password, timeout_s=120
    )
    session = await client.auth.get_session()
    assert session is not None
    floor = Floor(stack.url, stack.anon_key, session.access_token, org)
    runners: dict[str, Runner] = {
        "sequential floor": floor.sequential,
        "parallel floor": floor.parallel,
        "kit": functools.partial(kit_sync, client, org),
    }
    print(f"\n{size} contacts x (3 notes + 1 assignment), median of {repeats}:", flush=True)
    seconds: dict[str, list[float]] = {label: [] for label in runners}
    growth: list[float] = []
    await floor.sequential(Path())  # warm the server's caches before anything is timed
    for attempt in range(repeats):
        for label, runner in runners.items():  # interleaved: each sees the same machine
            took, mib, items = await timed(runner)
            if label != "parallel floor":
                assert items == size, (label, items, size)
            seconds[label].append(took)
            if label == "kit":
                growth.append(mib)
        print(
            f"  run {attempt + 1}/{repeats}: "
            + ", ".join(f"{label} {values[-1] * 1000:.0f} ms" for label, values in seconds.items())
            + f", kit RSS +{growth[-1]:.0f} MiB",
            flush=True,
        )
    row: Row = {label: statistics.median(values) for label, values in seconds.items()}
    row["rss"] = max(growth)
    row["naive"] = None
    if size <= naive_limit:
        naive: list[float] = []
        for _ in range(min(repeats, 3)):  # slow: three runs give a fair median
            took, _mib, items = await timed(functools.partial(naive_sync, client, org))
            assert items == size, (items, size)
            naive.append(took)
        row["naive"] = statistics.median(naive)
    return row


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f} ms"


async def run(sizes: list[int], repeats: int, naive_limit: int) -> None:
    with DevStack.start() as stack:
        print(f"local stack at {stack.url} (PostgreSQL + PostgREST 12, db-max-rows 1000)")
        rows = {
            size: await measure_size(stack, size, index, repeats, naive_limit)
            for index, size in enumerate(sizes)
        }
    print(
        f"\n| contacts | kit | sequential floor | parallel floor ({PARALLEL} at a time) "
        "| kit / floor | kit RSS growth | naive (N+1) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size, row in rows.items():
        kit, floor = row["kit"], row["sequential floor"]
        assert kit is not None and floor is not None
        print(
            f"| {size:,} | {ms(kit)} | {ms(floor)} | {ms(row['parallel floor'])} | "
            f"{kit / floor:.2f} | {row['rss']:.0f} MiB | {ms(row['naive'])} |"
        )
    print(
        "\nTargets (issue 10): kit / floor <= 2 at 200, <= 1.3 at 20,000 and 100,000; "
        "RSS growth <= 100 MiB. Seed: 200 contacts with notes in under 3 s."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 20000, 100000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--naive-limit", type=int, default=200, help="largest size the slow naive variant runs at"
    )
    args = parser.parse_args(argv)
    asyncio.run(run(args.sizes, args.repeats, args.naive_limit))


if __name__ == "__main__":
    main()
