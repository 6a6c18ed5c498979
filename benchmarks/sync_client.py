"""One timed client run of `make bench`, in a process of its own.

``python -m benchmarks.sync_client '<json>'`` signs in, then runs one of

* ``kit``: the public repository into a fresh file cache (``secure_delete`` on, as always);
* ``floor``: the sequential fetch floor: the same embedded select as the same user, keyset
  pages of 1,000 one after another with plain httpx, only read (no parsing, no writing);
* ``parallel``: the same pages, 4 at a time (id ranges from the count);
* ``naive``: the way the seed warns against: N+1 queries, a commit per record;

and prints one JSON line: wall seconds, this process's CPU seconds and peak RSS growth (MiB)
over the run, and the contacts received. A process per run: no run inherits another's heap,
threads or caches, and the CPU seconds are this client's alone.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from contactsync_kit import ContactCache, ContactCacheSyncRepository, SystemClock, sign_in
from contactsync_kit.cache import MIGRATIONS
from contactsync_kit.paging import id_ranges
from contactsync_kit.remote import last_row_key
from contactsync_kit.schemas import EMBEDDED_SELECT, TABLE_COLUMNS

PAGE = 1000
PARALLEL = 4


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
        for table in ("notes", "contact_assignments"):
            rows = (
                await client.table(table).select("*").eq("contact_id", contact["id"]).execute()
            ).data
            for row in rows:
                _naive_upsert(conn, table, row)
    conn.close()
    return len(contacts)


_KEPT: list[object] = []  # the repository outlives the run: its threads' CPU can be read


async def kit_sync(client: Any, organisation_id: str, path: Path) -> int:
    """The kit's way, through the public repository."""
    cache = ContactCache.open(path)
    repo = ContactCacheSyncRepository(client, cache, SystemClock())
    _KEPT.append(repo)
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
    """This process's peak resident memory over a block; `growth_mib` is peak - start.

    RSS, not tracemalloc: polars and SQLite allocate outside Python's allocator. The kernel
    keeps the peak (``VmHWM``); writing 5 to ``/proc/self/clear_refs`` resets it to the current
    RSS, so no sampling thread competes for the CPU being measured. `file_mib` is the growth of
    the file-backed part (``RssFile``): library code run for the first time in this process
    (polars' is most of it), shared and clean, and not freed when the run ends.
    """

    def __init__(self) -> None:
        self._start = self._peak = self._file_start = self._file_end = 0

    @staticmethod
    def _status(field: str) -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/self/status")

    def __enter__(self) -> PeakRss:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        self._start = self._status("VmRSS:")
        self._file_start = self._status("RssFile:")
        return self

    def __exit__(self, *_: object) -> None:
        self._peak = self._status("VmHWM:")
        self._file_end = self._status("RssFile:")

    @property
    def growth_mib(self) -> float:
        return (self._peak - self._start) / 2**20

    @property
    def file_mib(self) -> float:
        return (self._file_end - self._file_start) / 2**20


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    client = await sign_in(
        spec["url"],
        spec["anon_key"],
        email=spec["email"],
        password=spec["password"],
        timeout_s=120,
    )
    session = await client.auth.get_session()
    assert session is not None
    org = spec["organisation_id"]
    floor = Floor(spec["url"], spec["anon_key"], session.access_token, org)
    runner = {
        "kit": lambda path: kit_sync(client, org, path),
        "floor": floor.sequential,
        "parallel": floor.parallel,
        "naive": lambda path: naive_sync(client, org, path),
    }[spec["runner"]]
    gc.collect()
    threads = _thread_cpu()
    with tempfile.TemporaryDirectory() as workdir, PeakRss() as memory:
        cpu, started = time.process_time(), time.perf_counter()
        items = await runner(Path(workdir) / "cache.sqlite3")
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "wall": wall,
        "cpu": cpu,
        "rss": memory.growth_mib,
        "rss_file": memory.file_mib,
        "items": items,
        "threads": _thread_delta(threads, _thread_cpu()) if spec.get("threads") else None,
    }


def _thread_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items() if v > before.get(k, 0)}


#: Thread-name prefix -> the role its CPU is reported under: the pools' numbered names
#: (asyncio_0, asyncio_1, ...) shift between runs, so medians are taken per role.
THREAD_ROLES = {
    "MainThread": "event loop (HTTP)",
    "contactsync-map": "mapping and hashing",
    "asyncio_": "SQLite writes and commit",
    "polars": "polars' pool",
}


def _role(name: str) -> str:
    return next((role for prefix, role in THREAD_ROLES.items() if name.startswith(prefix)), "other")


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads so far, summed by role (`THREAD_ROLES`)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    ticks = os.sysconf("SC_CLK_TCK")
    result: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
            with open(f"/proc/self/task/{tid}/comm") as handle:
                comm = handle.read().strip()
        except FileNotFoundError:
            continue
        role = _role(names.get(int(tid)) or comm)
        result[role] = result.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return result


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(spec))), flush=True)


if __name__ == "__main__":
    main()
