"""`ContactCacheSyncRepository`: the one place a sync happens."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, TypeVar

from .cache import ContactCache, SyncLogEntry
from .clock import Clock, SystemClock
from .delta import FullSyncHooks, IncrementalSync, SyncMode
from .delta_store import DeltaStore
from .mappers import MappedPage, MappingProblem, map_contacts_page
from .remote import ContactSource, RemoteFailure, RemotePage, SupabaseDeltaSource
from .results import StageTimings, SyncError, SyncErrorKind, SyncFailure, SyncResult, SyncSuccess
from .schemas import DATA_TABLES
from .staging import SyncStaging

if TYPE_CHECKING:
    from supabase import AsyncClient

__all__ = ["ConcurrentPolicy", "ContactCacheSyncRepository", "SyncProgress"]

# Does no I/O itself: it drives a `ContactSource` (network) and a `ContactCache` (disk).
__io__ = "none"

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
    tables_total: int = len(DATA_TABLES)


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


class _Refused(Exception):
    """The server's answer cannot be cached (bad rows, counts that do not add up)."""

    def __init__(self, error: SyncError) -> None:
        super().__init__(str(error))
        self.error = error


class _Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.fetch = self.map = self.write = 0.0

    def elapsed_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)

    def timings(self) -> StageTimings:
        return StageTimings(round(self.fetch * 1000), round(self.map * 1000),
                            round(self.write * 1000))


class _Attempt:
    """One run of a sync: when it started, its timings and pages, and the staging in flight."""

    def __init__(self, org: str, epoch: int, started_at: datetime, staging: SyncStaging) -> None:
        self.org = org
        self.epoch = epoch
        self.started_at = started_at
        self.staging = staging
        self.timer = _Timer()
        self.pages = 0
        self._staged: asyncio.Future[None] | None = None

    async def stage(self, page: MappedPage) -> None:
        """Stage `page` on a worker thread once the previous page is staged."""
        await self.wait_for_staging()
        self._staged = asyncio.ensure_future(asyncio.to_thread(self.staging.stage, page))

    async def wait_for_staging(self) -> None:
        """Wait for the page being staged; its failure becomes `_LocalWriteFailed`."""
        if self._staged is None:
            return
        mark = time.perf_counter()
        try:
            await asyncio.shield(self._staged)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the cache's own failure, whatever its class
            raise _LocalWriteFailed from exc
        finally:
            self.timer.write += time.perf_counter() - mark

    async def close(self) -> None:
        """Wait out a staging thread (it cannot be stopped), then drop the staged rows."""
        if self._staged is not None:
            await asyncio.wait([self._staged])
        await asyncio.to_thread(self.staging.discard)

    def success(self, counts: dict[str, int]) -> SyncSuccess:
        return SyncSuccess(
            organisation_id=self.org, items_synced=counts["contacts"],
            notes_synced=counts["notes"], assignments_synced=counts["contact_assignments"],
            duration_ms=self.timer.elapsed_ms(), pages=self.pages, timings=self.timer.timings())

    def failure(self, error: SyncError) -> SyncFailure:
        return SyncFailure(organisation_id=self.org, error=error,
                           duration_ms=self.timer.elapsed_ms(), pages=self.pages,
                           timings=self.timer.timings())


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
        attempt = _Attempt(org, self._epoch, self._clock.now(), self._cache.begin_sync(org))
        try:
            problem = await self._source.check_session()
            if problem is not None:
                return await self._finish(attempt, attempt.failure(problem))
            counts = await self._fetch_and_stage(attempt, progress, hooks)
            if hooks is not None and (problem := await hooks.before_commit()) is not None:
                return await self._finish(attempt, attempt.failure(problem))
            await self._commit(attempt, progress)
            return await self._finish(attempt, attempt.success(counts))
        except (RemoteFailure, _Refused) as exc:
            return await self._finish(attempt, attempt.failure(exc.error))
        except _LocalWriteFailed as exc:
            return await self._finish(attempt, attempt.failure(SyncError(
                SyncErrorKind.LOCAL_WRITE,
                f"writing the cache failed ({type(exc.__cause__).__name__}); "
                "the cache was rolled back to its previous content")))
        except asyncio.CancelledError:
            return attempt.failure(SyncError(
                SyncErrorKind.CANCELLED, "the sync was cancelled (the cache was cleared or the "
                "app is closing); nothing was written"))
        finally:
            await attempt.close()

    async def _fetch_and_stage(
        self, attempt: _Attempt, progress: ProgressCallback | None,
        hooks: FullSyncHooks | None = None,
    ) -> dict[str, int]:
        """Page through the organisation, staging each page; the rows counted per table.

        Raises `_Refused` when a page cannot be cached or the server's count is not met.
        """
        counts = dict.fromkeys(DATA_TABLES, 0)
        expected: int | None = None
        cursor: str | None = None
        while True:
            page = await self._fetch(attempt, cursor)
            if attempt.pages == 1:
                expected = page.total
            mapped = await self._map(attempt, page)
            if hooks is not None:
                hooks.on_page(mapped)
            # Each page is staged on a worker thread while the next one is fetched, so
            # memory holds about one page however large the organisation is.
            await attempt.stage(mapped)
            for table, rows in mapped.counts().items():
                counts[table] += rows
            received = counts["contacts"]
            _report(progress, SyncProgress("fetch", attempt.org, attempt.pages, received,
                                           expected))
            if mapped.contacts.height == 0 or expected is None or received >= expected:
                break
            # Keyset paging: the page is ordered by id, so its last id is the cursor.
            cursor = mapped.contacts.get_column("id")[-1]
        await attempt.wait_for_staging()
        if expected is None or received != expected:
            raise _Refused(SyncError(
                SyncErrorKind.INCOMPLETE,
                f"received {received} contacts but the server counted "
                f"{'none' if expected is None else expected}; nothing was written"))
        return counts

    async def _fetch(self, attempt: _Attempt, cursor: str | None) -> RemotePage:
        mark = time.perf_counter()
        page = await self._source.fetch_page(attempt.org, after=cursor,
                                             with_count=not attempt.pages)
        attempt.timer.fetch += time.perf_counter() - mark
        attempt.pages += 1
        return page

    async def _map(self, attempt: _Attempt, page: RemotePage) -> MappedPage:
        mark = time.perf_counter()
        # polars releases the GIL: mapping on a worker thread keeps the event loop (and a
        # notebook's widgets) responsive during a long sync.
        result = await asyncio.to_thread(
            map_contacts_page, page.body, attempt.org, embedded_cap=self._max_rows)
        attempt.timer.map += time.perf_counter() - mark
        if isinstance(result, MappingProblem):
            raise _Refused(SyncError(SyncErrorKind(result.kind), result.message))
        return result

    async def _commit(self, attempt: _Attempt, progress: ProgressCallback | None) -> None:
        loop = asyncio.get_running_loop()
        written = 0

        def table_written(table: str, _rows: int) -> None:
            nonlocal written
            written += 1
            report = SyncProgress("write", attempt.org, table=table, tables_written=written)
            loop.call_soon_threadsafe(_report, progress, report)

        async with self._write_lock:
            if attempt.epoch != self._epoch:
                raise asyncio.CancelledError
            mark = time.perf_counter()
            commit = asyncio.ensure_future(asyncio.to_thread(
                attempt.staging.commit, self._clock.now(), on_table_written=table_written))
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
                attempt.timer.write += time.perf_counter() - mark

    async def _finish(self, attempt: _Attempt, result: SyncResult) -> SyncResult:
        """Record `result` in the sync log (support's evidence), then hand it back."""
        await self._log(result, attempt.started_at, attempt.epoch)
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
                # The sync's own outcome stands (the cache is consistent either way), but
                # support relies on this log: say loudly that this attempt is missing from it.
                _log.exception("could not write the sync log: the %s of organisation %s's "
                               "sync is not recorded", entry.outcome, entry.organisation_id)
