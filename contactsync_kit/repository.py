"""`ContactCacheSyncRepository`: the one place a sync happens."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from supabase import AsyncClient

from .cache import DATA_TABLES, ContactCache, SyncLogEntry, SyncStaging
from .clock import Clock, SystemClock
from .delta import FullSyncHooks, IncrementalSync, SyncMode
from .delta_store import DeltaStore
from .mappers import MappingProblem, map_contacts_page
from .remote import ContactSource, RemoteFailure, SupabaseDeltaSource
from .results import StageTimings, SyncError, SyncErrorKind, SyncFailure, SyncResult, SyncSuccess

__all__ = ["ConcurrentPolicy", "ContactCacheSyncRepository", "SyncProgress"]

ConcurrentPolicy = Literal["join", "reject"]
T = TypeVar("T")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncProgress:
    """A progress report: a page arrived (`stage="fetch"`) or a table was written."""

    stage: Literal["fetch", "write"]
    organisation_id: str
    pages: int = 0
    contacts_received: int = 0
    contacts_expected: int | None = None
    table: str | None = None
    tables_written: int = 0
    tables_total: int = 3


ProgressCallback = Callable[[SyncProgress], None]


def _report(progress: ProgressCallback | None, event: SyncProgress) -> None:
    # A broken progress display must not break the sync it displays.
    if progress is None:
        return
    try:
        progress(event)
    except Exception:
        _log.exception("progress callback failed")


class _LocalWriteFailed(Exception):
    """The cache raised while staging or committing; `__cause__` is its exception."""


async def _wait_for_staging(staged: asyncio.Future[None] | None, timer: _Timer) -> None:
    if staged is None:
        return
    mark = time.perf_counter()
    try:
        await asyncio.shield(staged)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the cache's own failure, whatever its class
        raise _LocalWriteFailed from exc
    finally:
        timer.write += time.perf_counter() - mark


class _Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.fetch = self.map = self.write = 0.0

    def elapsed_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)

    def timings(self) -> StageTimings:
        return StageTimings(round(self.fetch * 1000), round(self.map * 1000),
                            round(self.write * 1000))


class ContactCacheSyncRepository:
    """Keeps the offline cache of an organisation's contacts in step with the server.

    The client must be signed in as a user: the server's Row Level Security policies decide
    which rows come back, and the kit adds no client-side filter. It does verify that every
    row it receives belongs to the organisation asked for.

    `sync_contacts_for_organisation` never raises for expected failures; it returns a
    `SyncFailure` and leaves the cache exactly as it was. A second call for an organisation
    already syncing joins the running sync (``on_concurrent="join"``, the default) or returns
    ``in_progress`` at once (``"reject"``). Writes of different organisations never
    interleave, and `clear_cache` makes sure no running sync writes after the wipe.
    """

    def __init__(
        self,
        client: AsyncClient | None,
        cache: ContactCache,
        clock: Clock | None = None,
        *,
        source: ContactSource | None = None,
        page_size: int = 1000,
        max_rows: int | None = 1000,
        on_concurrent: ConcurrentPolicy = "join",
        delta_window: timedelta = timedelta(seconds=60),
    ) -> None:
        self._clock = clock or SystemClock()
        if source is None:
            if client is None:
                raise ValueError("give a signed-in supabase client or a ContactSource")
            source = SupabaseDeltaSource(client, self._clock, page_size=page_size)
        self._source = source
        self._cache = cache
        self._max_rows = max_rows
        self._on_concurrent = on_concurrent
        self._running: dict[str, asyncio.Task[SyncResult]] = {}
        self._write_lock = asyncio.Lock()
        # Bumped by clear_cache: a sync that started before a wipe may not write after it.
        self._epoch = 0
        self._delta_store = DeltaStore(cache)
        self._delta_window = delta_window

    @property
    def cache(self) -> ContactCache:
        """The cache this repository writes to."""
        return self._cache

    def last_synced_at(self, organisation_id: str) -> datetime | None:
        """When `organisation_id` last synced successfully (aware UTC), or None."""
        return self._cache.last_synced_at(organisation_id.lower())

    def is_syncing(self, organisation_id: str | None = None) -> bool:
        """Whether a sync (for `organisation_id`, or any) is running."""
        if organisation_id is None:
            return bool(self._running)
        return organisation_id.lower() in self._running

    async def sync_contacts_for_organisation(
        self,
        organisation_id: str,
        *,
        on_concurrent: ConcurrentPolicy | None = None,
        progress: ProgressCallback | None = None,
        mode: SyncMode = "auto",
    ) -> SyncResult:
        """Fetch the organisation's contacts, notes and assignments and cache them.

        Returns `SyncSuccess` with the counts and timings, or `SyncFailure` whose
        `error.kind` says why; never raises for expected failures. `mode` is ``"auto"``
        (a delta after a verified sync by this user, else full), ``"delta"`` (the same, and
        `fallback_reason` says why a full one ran) or ``"full"``; `result.mode` says what
        ran and `result.verified` whether the server's digest matched the cache after it.
        """
        try:
            org = str(uuid.UUID(organisation_id)) if isinstance(organisation_id, str) else ""
        except ValueError:
            org = ""
        if not org:
            return SyncFailure(
                organisation_id=str(organisation_id),
                error=SyncError(SyncErrorKind.INVALID_INPUT,
                                "organisation_id must be a UUID string"),
            )
        running = self._running.get(org)
        if running is not None:
            if (on_concurrent or self._on_concurrent) == "reject":
                return SyncFailure(organisation_id=org, error=SyncError(
                    SyncErrorKind.IN_PROGRESS, "a sync for this organisation is already running"))
            return await asyncio.shield(running)
        task = asyncio.create_task(self._dispatch(org, mode, progress),
                                   name=f"contactsync:{org}")
        self._running[org] = task
        task.add_done_callback(lambda done: self._forget(org, done))
        # Shielded: a caller that gives up does not take the joined callers' sync with it.
        return await asyncio.shield(task)

    def _forget(self, org: str, task: asyncio.Task[SyncResult]) -> None:
        if self._running.get(org) is task:
            del self._running[org]

    async def clear_cache(self) -> dict[str, int]:
        """Wipe every cached row, every `last_synced_at` and the sync log (the logout path).

        Running syncs are cancelled first and cannot write afterwards. Returns the number of
        rows removed per table.
        """
        self._epoch += 1
        running = list(self._running.values())
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
        async with self._write_lock:
            return await asyncio.to_thread(self._cache.clear)

    # -- verified incremental sync (issue 11): dispatch by mode, see delta.py ----------------

    async def _dispatch(self, org: str, mode: SyncMode,
                        progress: ProgressCallback | None) -> SyncResult:
        return await IncrementalSync(
            source=self._source, store=self._delta_store, clock=self._clock,
            full=lambda hooks: self._sync(org, progress, hooks),
            write=self._exclusive_write, log=self._log, epoch=self._epoch,
            window=self._delta_window,
        ).run(org, mode)

    async def _exclusive_write(self, epoch: int, work: Callable[[], T]) -> T:
        """Run `work` on a thread holding the write lock, unless the cache was wiped since."""
        async with self._write_lock:
            if epoch != self._epoch:
                raise asyncio.CancelledError
            running = asyncio.ensure_future(asyncio.to_thread(work))
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                await asyncio.wait([running])  # a thread cannot be stopped: hold the lock
                raise

    # -- the full sync ----------------------------------------------------------------------

    async def _sync(self, org: str, progress: ProgressCallback | None,
                    hooks: FullSyncHooks | None = None) -> SyncResult:
        epoch = self._epoch
        started_at = self._clock.now()
        timer = _Timer()
        pages_seen = 0
        staging = self._cache.begin_sync(org)
        staged: asyncio.Future[None] | None = None
        try:
            problem = await self._source.check_session()
            if problem is not None:
                return await self._finish(org, started_at, timer, epoch, pages_seen, problem)
            counts = dict.fromkeys(DATA_TABLES, 0)
            expected: int | None = None
            cursor: str | None = None
            while True:
                mark = time.perf_counter()
                page = await self._source.fetch_page(org, after=cursor, with_count=not pages_seen)
                fetched = time.perf_counter()
                timer.fetch += fetched - mark
                if not pages_seen:
                    expected = page.total
                pages_seen += 1
                # polars releases the GIL: mapping on a worker thread keeps the event loop (and
                # a notebook's widgets) responsive during a long sync.
                result = await asyncio.to_thread(
                    map_contacts_page, page.body, org, embedded_cap=self._max_rows)
                timer.map += time.perf_counter() - fetched
                if isinstance(result, MappingProblem):
                    return await self._finish(org, started_at, timer, epoch, pages_seen,
                                              SyncError(SyncErrorKind(result.kind),
                                                        result.message))
                if hooks is not None:
                    hooks.on_page(result)
                # Each page is staged on a worker thread while the next one is fetched, so
                # memory holds about one page however large the organisation is.
                await _wait_for_staging(staged, timer)
                staged = asyncio.ensure_future(asyncio.to_thread(staging.stage, result))
                for table, rows in result.counts().items():
                    counts[table] += rows
                received = counts["contacts"]
                _report(progress, SyncProgress("fetch", org, pages_seen, received, expected))
                if result.contacts.height == 0 or expected is None or received >= expected:
                    break
                # Keyset paging: the page is ordered by id, so its last id is the cursor.
                cursor = result.contacts.get_column("id")[-1]
            await _wait_for_staging(staged, timer)
            if expected is None or received != expected:
                return await self._finish(org, started_at, timer, epoch, pages_seen, SyncError(
                    SyncErrorKind.INCOMPLETE,
                    f"received {received} contacts but the server counted "
                    f"{'none' if expected is None else expected}; nothing was written"))
            if hooks is not None and (problem := await hooks.before_commit()) is not None:
                return await self._finish(org, started_at, timer, epoch, pages_seen, problem)
            await self._commit(staging, org, epoch, timer, progress)
            return await self._finish(org, started_at, timer, epoch, pages_seen, None, counts)
        except RemoteFailure as exc:
            return await self._finish(org, started_at, timer, epoch, pages_seen, exc.error)
        except _LocalWriteFailed as exc:
            return await self._finish(org, started_at, timer, epoch, pages_seen, SyncError(
                SyncErrorKind.LOCAL_WRITE,
                f"writing the cache failed ({type(exc.__cause__).__name__}); "
                "the cache was rolled back to its previous content"))
        except asyncio.CancelledError:
            return SyncFailure(
                organisation_id=org, duration_ms=timer.elapsed_ms(), pages=pages_seen,
                timings=timer.timings(),
                error=SyncError(SyncErrorKind.CANCELLED,
                                "the sync was cancelled (the cache was cleared or the app "
                                "is closing); nothing was written"))
        finally:
            if staged is not None:
                await asyncio.wait([staged])  # a staging thread cannot be stopped
            await asyncio.to_thread(staging.discard)

    async def _commit(
        self, staging: SyncStaging, org: str, epoch: int, timer: _Timer,
        progress: ProgressCallback | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        written = 0

        def table_written(table: str, _rows: int) -> None:
            nonlocal written
            written += 1
            report = SyncProgress("write", org, table=table, tables_written=written)
            loop.call_soon_threadsafe(_report, progress, report)

        async with self._write_lock:
            if epoch != self._epoch:
                raise asyncio.CancelledError
            mark = time.perf_counter()
            commit = asyncio.ensure_future(asyncio.to_thread(
                staging.commit, self._clock.now(), on_table_written=table_written))
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                # The thread cannot be stopped; hold the lock until it is done so a wipe
                # waiting on this lock runs after it, never before.
                await asyncio.wait([commit])
                raise
            except Exception as exc:  # the cache's own failure, whatever its class
                raise _LocalWriteFailed from exc
            finally:
                timer.write += time.perf_counter() - mark

    async def _finish(
        self, org: str, started_at: datetime, timer: _Timer, epoch: int, pages: int,
        error: SyncError | None, counts: dict[str, int] | None = None,
    ) -> SyncResult:
        counts = counts or {}
        fields = dict(
            organisation_id=org,
            items_synced=counts.get("contacts", 0) if error is None else 0,
            notes_synced=counts.get("notes", 0) if error is None else 0,
            assignments_synced=counts.get("contact_assignments", 0) if error is None else 0,
            duration_ms=timer.elapsed_ms(),
            pages=pages,
            timings=timer.timings(),
        )
        result: SyncResult = (SyncSuccess(**fields) if error is None  # type: ignore[arg-type]
                              else SyncFailure(error=error, **fields))  # type: ignore[arg-type]
        await self._log(result, started_at, epoch)
        return result

    async def _log(self, result: SyncResult, started_at: datetime, epoch: int) -> None:
        error = result.error
        entry = SyncLogEntry(
            organisation_id=result.organisation_id, started_at=started_at,
            duration_ms=result.duration_ms, outcome="success" if error is None else "failure",
            error_kind=error.kind.value if error else None,
            error_code=error.code if error else None,
            http_status=error.status if error else None,
            message=error.message if error else None,
            contacts=result.items_synced, notes=result.notes_synced,
            contact_assignments=result.assignments_synced, pages=result.pages)
        async with self._write_lock:
            if epoch != self._epoch:
                return  # the log was wiped with the cache; this attempt predates the wipe
            try:
                await asyncio.to_thread(self._cache.record_attempt, entry)
            except Exception:
                return
