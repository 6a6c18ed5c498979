"""`ContactCacheSyncRepository`: the one place a sync happens."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, TypeVar

from .attempt import (
    CANCELLED,
    Attempt,
    LocalWriteFailed,
    ProgressCallback,
    Refused,
    SyncProgress,
    check_count,
    fetch_rest,
    first_failure,
    report_progress,
    signed_out,
)
from .cache import ContactCache, SyncLogEntry
from .clock import Clock, ServerClock, SystemClock
from .delta import FullSyncHooks, IncrementalSync, SyncMode
from .delta_store import DeltaStore
from .errors import SyncStopped
from .mappers import MappedPage, MappingProblem, map_contacts_page
from .options import DEFAULT_OPTIONS, SyncOptions, resolve_options
from .paging import (
    PARALLEL_PAGES,
    WRITE_QUEUE,
)
from .remote import ContactSource, RemotePage, SupabaseDeltaSource
from .results import SyncError, SyncErrorKind, SyncFailure, SyncResult
from .schemas import DATA_TABLES, ROOT_TABLE

if TYPE_CHECKING:
    from supabase import AsyncClient

__all__ = ["ConcurrentPolicy", "ContactCacheSyncRepository", "SyncProgress"]

# Does no I/O itself: it drives a `ContactSource` (network) and a `ContactCache` (disk).
__io__ = "none"

ConcurrentPolicy = Literal["join", "reject"]
T = TypeVar("T")
_log = logging.getLogger(__name__)


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
        options: SyncOptions | None = None,
        page_size: int = DEFAULT_OPTIONS.page_size,
        max_rows: int | None = DEFAULT_OPTIONS.max_rows,
        on_concurrent: ConcurrentPolicy = "join",
        delta_window: timedelta = DEFAULT_OPTIONS.delta_window,
        clock_offset: timedelta = timedelta(0),
    ) -> None:
        self.options = resolve_options(
            options, page_size=page_size, max_rows=max_rows, delta_window=delta_window
        )
        self._clock = clock or SystemClock()
        if source is None:
            if client is None:
                raise ValueError("give a signed-in supabase client or a ContactSource")
            # The token's expiry is the server's: judged in its time, whatever this clock says.
            server_clock = ServerClock(self._clock, clock_offset)
            source = SupabaseDeltaSource(client, server_clock, page_size=self.options.page_size)
        self._source = source
        self._cache = cache
        self._on_concurrent = on_concurrent
        self._running: dict[str, asyncio.Task[SyncResult]] = {}
        self._write_lock = asyncio.Lock()
        # Bumped by clear_cache: a sync that started before a wipe may not write after it.
        self._epoch = 0
        self._delta_store = DeltaStore(cache)
        # Mapping and hashing (polars) on one thread: polars' allocator keeps freed memory a
        # while per thread, so peak memory grows with the threads the pages are spread over.
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contactsync-map")

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
                error=SyncError(
                    SyncErrorKind.INVALID_INPUT, "organisation_id must be a UUID string"
                ),
            )
        if (ended := self._cache.ended()) is not None:
            return signed_out(org, ended)
        running = self._running.get(org)
        if running is not None:
            if (on_concurrent or self._on_concurrent) == "reject":
                return SyncFailure(
                    organisation_id=org,
                    error=SyncError(
                        SyncErrorKind.IN_PROGRESS, "a sync for this organisation is already running"
                    ),
                )
            return await asyncio.shield(running)
        task = asyncio.create_task(self._dispatch(org, mode, progress), name=f"contactsync:{org}")
        self._running[org] = task
        task.add_done_callback(lambda done: self._forget(org, done))
        # Shielded: a caller that gives up does not take the joined callers' sync with it.
        result = await asyncio.shield(task)
        if (ended := self._cache.ended()) is not None:
            # Whatever it wrote went to a file that is no longer this session's.
            return signed_out(org, ended)
        return result

    def cancel_sync(self, organisation_id: str) -> bool:
        """Cancel the running sync of `organisation_id`: it ends ``cancelled`` and its
        all-or-nothing write is not made (unless it had already committed). True if one ran.
        """
        task = self._running.get(organisation_id.lower())
        if task is None or task.done():
            return False
        task.cancel()
        return True

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

    async def _dispatch(
        self, org: str, mode: SyncMode, progress: ProgressCallback | None
    ) -> SyncResult:
        return await IncrementalSync(
            source=self._source,
            store=self._delta_store,
            clock=self._clock,
            full=lambda hooks: self._sync(org, progress, hooks),
            write=self._exclusive_write,
            log=self._log,
            epoch=self._epoch,
            window=self.options.delta_window,
            cpu=self._cpu,
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

    async def _sync(
        self, org: str, progress: ProgressCallback | None, hooks: FullSyncHooks | None = None
    ) -> SyncResult:
        attempt = Attempt(org, self._epoch, self._clock.now(), self._cache.begin_sync(org))
        try:
            try:
                result = await self._attempt(attempt, progress, hooks)
            finally:
                # Roll back and release the write lock before logging: the log takes that
                # lock too, and a failure can leave this attempt holding it.
                await attempt.close()
            if hooks is not None and result.error is None:  # the log records the digest check
                result = dataclasses.replace(result, verified=hooks.verified())
            return await self._finish(attempt, result)
        except asyncio.CancelledError:
            return attempt.failure(CANCELLED)

    async def _attempt(
        self, attempt: Attempt, progress: ProgressCallback | None, hooks: FullSyncHooks | None
    ) -> SyncResult:
        try:
            problem = await self._source.check_session()
            if problem is not None:
                return attempt.failure(problem)
            counts = await self._fetch_and_stage(attempt, progress, hooks)
            if hooks is not None and (problem := await hooks.before_commit()) is not None:
                return attempt.failure(problem)
            await self._commit(attempt, progress, hooks)
            return attempt.success(counts)
        except SyncStopped as exc:  # the server's, the answer's or the cache's failure
            return attempt.failure(exc.error)

    async def _fetch_and_stage(
        self,
        attempt: Attempt,
        progress: ProgressCallback | None,
        hooks: FullSyncHooks | None = None,
    ) -> dict[str, int]:
        """Page through the organisation, writing each page; the rows counted per table.

        Everything overlaps: the next page is asked for as soon as the last id is read off
        the raw body, pages are mapped on worker threads and written by one writer while
        more arrive; a large organisation is fetched as id ranges, `PARALLEL_PAGES` at once.
        Raises `Refused` when a page cannot be cached or the server's count is not met.
        """
        counts = dict.fromkeys(DATA_TABLES, 0)
        # Pages being mapped, in the order they arrived: the writer takes them in that order.
        arrived: asyncio.Queue[asyncio.Task[MappedPage] | None] = asyncio.Queue()
        # A slot per page fetched but not yet taken by the writer: this bounds memory.
        slots = asyncio.Semaphore(PARALLEL_PAGES + WRITE_QUEUE)
        expected: int | None = None
        try:
            async with asyncio.TaskGroup() as group:

                async def fetched(
                    after: str | None, upto: str | None = None, *, first: bool = False
                ) -> tuple[int, str | None]:
                    """Fetch one page and hand it to a mapper; its row count and last id."""
                    await slots.acquire()
                    try:
                        page = await self._fetch(attempt, after, upto, with_count=first)
                    except BaseException:
                        slots.release()
                        raise
                    task = group.create_task(self._map(attempt, page))
                    arrived.put_nowait(task)
                    if page.rows is not None and (page.rows == 0 or page.last_key is not None):
                        return page.rows, page.last_key
                    mapped = await task  # the server did not say: wait for the mapper
                    ids = mapped[ROOT_TABLE].get_column("id")
                    return ids.len(), (ids[-1] if ids.len() else None)

                writer = group.create_task(
                    self._write_pages(
                        attempt, arrived, slots, counts, progress, lambda: expected, hooks
                    )
                )
                rows, last = await fetched(None, first=True)
                expected = attempt.total
                cap = self.options.max_rows or self._source.page_size
                limit = min(self._source.page_size, cap)
                await fetch_rest(fetched, rows, last, expected, limit)
                arrived.put_nowait(None)
                await writer
        except BaseExceptionGroup as failures:
            first = first_failure(failures)
            raise first from first.__cause__  # keep its cause: a local write failure names it
        check_count(counts[ROOT_TABLE], expected)
        return counts

    async def _write_pages(
        self,
        attempt: Attempt,
        arrived: asyncio.Queue[asyncio.Task[MappedPage] | None],
        slots: asyncio.Semaphore,
        counts: dict[str, int],
        progress: ProgressCallback | None,
        expected: Callable[[], int | None],
        hooks: FullSyncHooks | None,
    ) -> None:
        """The one writer: each mapped page into the cache, in the order pages arrived."""
        while (mapping := await arrived.get()) is not None:
            mapped = await mapping
            slots.release()
            if hooks is not None:
                hooks.on_page(mapped)
            if not attempt.pages_written:
                await self._claim_write_lock(attempt)
            # Written on a worker thread while the next pages are fetched and mapped.
            await attempt.stage(mapped)
            attempt.pages_written += 1
            for table, rows in mapped.counts().items():
                counts[table] += rows
            report_progress(
                progress,
                SyncProgress(
                    "fetch", attempt.org, attempt.pages_written, counts["contacts"], expected()
                ),
            )
        await attempt.wait_for_staging()

    async def _claim_write_lock(self, attempt: Attempt) -> None:
        # A file cache's sync writes inside one write transaction from its first page to its
        # commit, holding the write lock all along. If another organisation's sync holds it,
        # this one stages its pages aside and waits for the lock only to merge them.
        if attempt.epoch != self._epoch:
            raise asyncio.CancelledError
        staging = attempt.staging
        if not staging.allow_direct:
            return
        if self._write_lock.locked():
            staging.allow_direct = False
            return
        await self._write_lock.acquire()  # free: taken at once
        attempt.lock = self._write_lock

    async def _fetch(
        self, attempt: Attempt, after: str | None, upto: str | None, *, with_count: bool
    ) -> RemotePage:
        mark = time.perf_counter()
        page = await self._source.fetch_page(
            attempt.org, after=after, upto=upto, with_count=with_count
        )
        attempt.timer.fetch += time.perf_counter() - mark
        attempt.pages += 1
        if with_count:
            attempt.total = page.total
        return page

    async def _map(self, attempt: Attempt, page: RemotePage) -> MappedPage:
        mark = time.perf_counter()
        # polars releases the GIL: mapping on a worker thread keeps the event loop (and a
        # notebook's widgets) responsive during a long sync.
        result = await asyncio.get_running_loop().run_in_executor(
            self._cpu,
            functools.partial(
                map_contacts_page, page.body, attempt.org, embedded_cap=self.options.max_rows
            ),
        )
        attempt.timer.map += time.perf_counter() - mark
        if isinstance(result, MappingProblem):
            raise Refused(SyncError(SyncErrorKind(result.kind), result.message))
        ids = result[ROOT_TABLE].get_column("id")
        last = ids[-1] if ids.len() else None
        # The next page was asked for from what the server announced: it must be so.
        if (page.rows is not None and page.rows != ids.len()) or (
            page.last_key is not None and page.last_key.lower() != last
        ):
            raise Refused(
                SyncError(
                    SyncErrorKind.INVALID_DATA,
                    "a page's rows do not match the range the server announced for it",
                )
            )
        return result

    async def _commit(
        self, attempt: Attempt, progress: ProgressCallback | None, hooks: FullSyncHooks | None
    ) -> None:
        loop = asyncio.get_running_loop()
        written = 0

        def table_written(table: str, _rows: int) -> None:
            nonlocal written
            written += 1
            report = SyncProgress("write", attempt.org, table=table, tables_written=written)
            loop.call_soon_threadsafe(report_progress, progress, report)

        held = attempt.lock
        if held is not None:  # this sync's write transaction holds the lock already
            await self._commit_locked(attempt, table_written, hooks)
            attempt.lock = None
            held.release()
            return
        async with self._write_lock:
            await self._commit_locked(attempt, table_written, hooks)

    async def _commit_locked(
        self,
        attempt: Attempt,
        table_written: Callable[[str, int], None],
        hooks: FullSyncHooks | None,
    ) -> None:
        if attempt.epoch != self._epoch:
            raise asyncio.CancelledError
        mark = time.perf_counter()
        commit = asyncio.ensure_future(
            asyncio.to_thread(
                attempt.staging.commit,
                self._clock.now(),
                on_table_written=table_written,
                # The digest state goes with the rows it describes, atomically: a full sync's
                # open write transaction holds the write lock, so it cannot be a write of its own.
                also=(
                    hooks.within_commit
                    if hooks is not None
                    else lambda conn: self._delta_store.forget_within(conn, attempt.org)
                ),
            )
        )
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            # The thread cannot be stopped; hold the lock until it is done so a wipe
            # waiting on this lock runs after it, never before.
            await asyncio.wait([commit])
            raise
        except Exception as exc:  # the cache's own failure, whatever its class
            raise LocalWriteFailed(exc) from exc
        finally:
            attempt.timer.write += time.perf_counter() - mark

    async def _finish(self, attempt: Attempt, result: SyncResult) -> SyncResult:
        """Record `result` in the sync log (support's evidence), then hand it back."""
        await self._log(result, attempt.started_at, attempt.epoch)
        return result

    async def _log(self, result: SyncResult, started_at: datetime, epoch: int) -> None:
        entry = SyncLogEntry.of(result, started_at)
        async with self._write_lock:
            if epoch != self._epoch or self._cache.ended() is not None:
                return  # the log was wiped with the cache; this attempt predates the wipe
            try:
                await asyncio.to_thread(self._cache.record_attempt, entry)
            except Exception:
                # The sync's own outcome stands (the cache is consistent either way), but
                # support relies on this log: say loudly that this attempt is missing from it.
                _log.exception(
                    "could not write the sync log: the %s of organisation %s's "
                    "sync is not recorded",
                    entry.outcome,
                    entry.organisation_id,
                )
