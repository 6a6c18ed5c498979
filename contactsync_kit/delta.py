"""Verified incremental sync: fetch what changed, prove the cache equals the server, or heal.

`IncrementalSync.run` is what `sync_contacts_for_organisation(org, mode=...)` dispatches to:

* **delta** — when this user has a verified earlier sync of this organisation and the server
  offers the digest: each table's rows changed since the newest change the cache holds
  (`DeltaState.changed_up_to`, minus a safety window), applied in one transaction that
  commits only if the cache's digest then equals the server's. Otherwise *reconcile*: the
  server's digest per id bucket locates the difference, ids and timestamps are listed inside
  those buckets only, the missing rows are deleted and the changed ones fetched, all in one
  transaction verified the same way. If still unequal, a full sync runs, inside the same
  call. The decisions (which buckets differ, which ids to fetch again or delete) are
  `delta_plan`'s pure functions; this module sequences the requests and the cache;
* **full** — the repository's full sync, its fetched rows checked against the server's digest
  before anything is written (a mismatch is `incomplete`), then the digest state recorded
  (`full_check.FullSyncCheck`'s hooks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

import polars as pl

from .attempt import CANCELLED, LocalWriteFailed, Refused, settle
from .clock import Clock
from .delta_plan import changed_since, differing_buckets, newest_change, plan_reconcile
from .delta_store import DeltaChanges, DeltaState, DeltaStore
from .digest import BUCKET_PREFIX, TableDigests
from .errors import SyncStopped
from .full_check import FullSyncCheck, FullSyncHooks, server_buckets, server_totals
from .mappers import MappingProblem, map_table_rows, map_versions
from .paging import PARALLEL_PAGES
from .remote import ContactSource, DeltaSource, DigestRow, DigestUnavailable
from .results import SyncError, SyncErrorKind, SyncFailure, SyncResult, SyncSuccess
from .schemas import DATA_TABLES

__all__ = ["FullSyncHooks", "IncrementalSync", "SyncMode"]

__io__ = "none"

SyncMode = Literal["auto", "full", "delta"]
T = TypeVar("T")
_IDS_PER_REQUEST = 100  # keeps `id=in.(...)` URLs a few kB
# Buckets listed per request: at 100,000 contacts a dozen hold under a page of notes, and the
# requests run side by side.
_BUCKETS_PER_REQUEST = 12
# More differing buckets than this and listing them costs about what a full sync does.
_MAX_RECONCILE_BUCKETS = 1500
_NO_STATE = "no verified earlier sync of this organisation by this user"


class Writer(Protocol):
    """Exclusive, epoch-guarded cache write: runs `work` on a worker thread."""

    def __call__(self, epoch: int, work: Callable[[], T]) -> Awaitable[T]:
        """`work()`'s result; raises `asyncio.CancelledError` when the cache was wiped since."""
        ...


class _Fallback(Exception):
    """The delta cannot prove the cache; run a full sync for this reason."""


def _local_failure(exc: Exception) -> SyncStopped:
    if isinstance(exc, SyncStopped):
        return exc
    return SyncStopped(
        SyncError(
            SyncErrorKind.LOCAL_WRITE,
            f"reading the cache failed ({type(exc).__name__}); nothing was written",
        )
    )


@dataclass
class _Run:
    """One delta: where it reads, for whom, since when, and the pages it fetched."""

    source: DeltaSource
    org: str
    user: str
    started_at: datetime
    mark: float = dataclasses.field(default_factory=time.perf_counter)
    #: Keyset pages of rows fetched (each a request; the digest requests are not pages).
    pages: int = 0
    # The digest per id bucket, once asked for: it locates what the changes did not say.
    bucketed: asyncio.Future[list[DigestRow]] | None = None

    def bucketed_digest(self) -> asyncio.Future[list[DigestRow]]:
        """The server's digest per id bucket, asked for once."""
        if self.bucketed is None:
            self.bucketed = asyncio.ensure_future(self.source.digest(self.org, BUCKET_PREFIX))
        return self.bucketed

    def elapsed_ms(self) -> int:
        """Milliseconds since the delta started."""
        return round((time.perf_counter() - self.mark) * 1000)


class IncrementalSync:
    """One organisation's sync in a given mode; built by the repository for each call."""

    def __init__(
        self,
        *,
        source: ContactSource,
        store: DeltaStore,
        clock: Clock,
        full: Callable[[FullSyncHooks | None], Awaitable[SyncResult]],
        write: Writer,
        log: Callable[[SyncResult, datetime, int], Awaitable[None]],
        epoch: int,
        window: timedelta,
        cpu: Executor | None = None,
    ) -> None:
        self._source = source
        self._cpu = cpu  # where a full sync's pages are hashed (None: asyncio's default)
        self._store = store
        self._clock = clock
        self._full = full
        self._write = write
        self._log = log
        self._epoch = epoch
        self._window = window
        # Requests of one delta in flight at once: listings and fetches run side by side.
        self._gate = asyncio.Semaphore(PARALLEL_PAGES)

    async def run(self, org: str, mode: SyncMode) -> SyncResult:
        """Sync `org` in `mode`; never raises for expected failures."""
        if mode not in ("auto", "full", "delta"):
            return SyncFailure(
                organisation_id=org,
                error=SyncError(
                    SyncErrorKind.INVALID_INPUT, "mode must be 'auto', 'full' or 'delta'"
                ),
            )
        if mode == "full":
            return await self._verified_full(org, None)
        source = self._source
        if not isinstance(source, DeltaSource):
            return await self._verified_full(org, "the source offers no digest")
        if await source.check_session() is not None:
            return await self._full(None)  # the full path reports the session problem
        user = source.user_id()
        if user is None:
            return await self._verified_full(org, _NO_STATE)
        return await self._delta_or_full(_Run(source, org, user, self._clock.now()))

    async def _delta_or_full(self, run: _Run) -> SyncResult:
        """The delta; a full sync when it cannot prove the cache; a failure as a result."""
        try:
            try:
                return await self._delta(run)
            finally:
                settle(run.bucketed)  # unread when the changes alone made the cache equal
        except _Fallback as fallback:
            return await self._verified_full(run.org, str(fallback))
        except DigestUnavailable as exc:
            return await self._verified_full(
                run.org, f"the server offers no digest function ({exc}); ran a full sync"
            )
        except SyncStopped as exc:  # the server's, the answer's or the cache's failure
            return await self._fail(run, exc.error)
        except asyncio.CancelledError:
            return SyncFailure(organisation_id=run.org, error=CANCELLED)

    async def _verified_full(self, org: str, reason: str | None) -> SyncResult:
        check = FullSyncCheck(self._source, org, self._store, self._clock, self._cpu)
        try:
            result = await self._full(check.hooks())
        finally:
            check.settle()
        return dataclasses.replace(
            result,
            mode="full",
            verified=check.verified and result.error is None,
            fallback_reason="; ".join(r for r in (reason, check.note) if r) or None,
            rows_changed=sum(result.rows_synced.values()),
        )

    # -- delta: fetch the changes, apply them verified, else locate and reconcile -----------

    async def _delta(self, run: _Run) -> SyncResult:
        state = await self._read(self._store.load, run.org, run.user)
        if state is None or not state.verified:
            raise _Fallback(_NO_STATE)
        changes, expected, newest = await self._fetch(run, state)
        # Changes only add rows or keep their number: fewer rows on the server than in the
        # cache means deletions, which the apply would only find by failing.
        lost = any(expected[t][0] < state.counts[t] for t in DATA_TABLES)
        committed, buckets = (
            (False, None) if lost else await self._apply(run, changes, expected, newest)
        )
        reconciled = not committed
        if reconciled:
            expected = await self._reconcile(run, changes, buckets)
            committed, _ = await self._apply(run, changes, expected, newest)
            if not committed:
                raise _Fallback("the digest still differed after reconciling; ran a full sync")
        written, deleted = changes.counts()
        # The counts are of what the cache now holds, as after a full sync; `rows_changed`
        # and `rows_deleted` say what this delta did.
        result = SyncSuccess(
            organisation_id=run.org,
            rows_synced={table: count for table, (count, _) in expected.items()},
            duration_ms=run.elapsed_ms(),
            pages=run.pages,
            mode="delta",
            verified=True,
            reconciled=reconciled,
            rows_changed=written,
            rows_deleted=deleted,
        )
        await self._log(result, run.started_at, self._epoch)
        return result

    async def _fetch(
        self, run: _Run, state: DeltaState
    ) -> tuple[DeltaChanges, dict[str, tuple[int, int]], dict[str, str]]:
        """Every table's changes beside the server's digest per table.

        Returns the changes, the server's ``(row_count, digest)`` per table, and the newest
        change per table the cache will hold once they are applied.
        """
        # The digest scans every row of the organisation; the changes come back long before it.
        totals = asyncio.ensure_future(run.source.digest(run.org, 0))
        try:
            frames = await asyncio.gather(*(self._changed(run, state, t) for t in DATA_TABLES))
            changes = DeltaChanges(upserts=dict(zip(DATA_TABLES, frames, strict=True)))
            if any(
                (newest_change(changes.upserts[t], None) or "") > state.changed_up_to.get(t, "")
                for t in DATA_TABLES
            ):
                # Rows newer than the last sync: the server changed, so rows may have gone
                # too, which only the bucketed digest locates. Ask for it now, beside the
                # total, so it is ready when the apply or the reconcile needs it (the safety
                # window's rows, seen before, are no such sign).
                run.bucketed_digest()
            digest_rows = await totals
        finally:
            settle(totals)
        newest = {
            t: stamp
            for t in DATA_TABLES
            if (stamp := newest_change(changes.upserts[t], state.changed_up_to.get(t)))
        }
        return changes, server_totals(server_buckets(digest_rows)), newest

    async def _changed(self, run: _Run, state: DeltaState, table: str) -> pl.DataFrame:
        """`table`'s rows changed since the newest change the cache holds (minus the window)."""
        newest = state.changed_up_to.get(table)
        since = None if newest is None else changed_since(newest, self._window)
        return await self._rows(run, table, since=since)

    async def _reconcile(
        self, run: _Run, changes: DeltaChanges, cached: TableDigests | None
    ) -> dict[str, tuple[int, int]]:
        """Locate by bucket what the changes did not say, and fix it in `changes`.

        Deletions, lost visibility and late commits do not arrive as changes: the buckets
        whose digest differs are listed (ids and timestamps only), the rows gone are deleted
        and the changed ones fetched. `cached` is the cache's digest after the changes (None:
        not known yet). Returns the server's ``(row_count, digest)`` per table.
        """
        locating = run.bucketed_digest()
        if cached is None:
            cached = await self._read(self._store.digests_after, run.org, run.user, changes)
        server = server_buckets(await locating)
        differing = differing_buckets(cached, server)
        if sum(len(differing.get(t, ())) for t in DATA_TABLES) > _MAX_RECONCILE_BUCKETS:
            raise _Fallback("the cache differs from the server in too many places; ran a full sync")
        await asyncio.gather(
            *(
                self._reconcile_table(run, table, differing[table], changes)
                for table in DATA_TABLES
                if differing.get(table)
            )
        )
        return server_totals(server)

    async def _reconcile_table(
        self, run: _Run, table: str, buckets: set[str], changes: DeltaChanges
    ) -> None:
        """Compare ids and timestamps inside the differing buckets; plan deletes and fetches."""
        ordered = sorted(buckets)
        listed = await asyncio.gather(
            *(
                self._pages(
                    run,
                    table,
                    map_versions,
                    buckets=ordered[i : i + _BUCKETS_PER_REQUEST],
                    columns="id,updated_at",
                )
                for i in range(0, len(ordered), _BUCKETS_PER_REQUEST)
            )
        )
        cached = await self._read(self._store.versions, table, run.org, buckets)
        stale, gone = plan_reconcile(pl.concat(listed), cached, changes.upserts[table], buckets)
        fetched = await asyncio.gather(
            *(
                self._rows(run, table, ids=stale[i : i + _IDS_PER_REQUEST])
                for i in range(0, len(stale), _IDS_PER_REQUEST)
            )
        )
        merged = pl.concat([changes.upserts[table], *fetched])
        changes.upserts[table] = merged.unique("id", keep="last", maintain_order=True).filter(
            ~pl.col("id").is_in(sorted(gone))
        )
        changes.deletes[table] = gone
        changes.recount[table] = buckets

    # -- the delta's reads and writes ---------------------------------------------------------

    async def _pages(
        self,
        run: _Run,
        table: str,
        parse: Callable[[bytes], pl.DataFrame | MappingProblem],
        *,
        since: str | None = None,
        ids: list[str] | None = None,
        buckets: list[str] | None = None,
        columns: str = "*",
    ) -> pl.DataFrame:
        """Every keyset page of one query, parsed.

        Stops at an empty page, never at a short one: the server's row cap may have cut it.
        """
        frames: list[pl.DataFrame] = []
        cursor: str | None = None
        while True:
            async with self._gate:
                page = await run.source.fetch_rows(
                    table,
                    run.org,
                    since=since,
                    ids=ids,
                    buckets=buckets,
                    columns=columns,
                    after=cursor,
                )
            run.pages += 1
            parsed = await asyncio.to_thread(parse, page.body)
            if isinstance(parsed, MappingProblem):
                raise Refused(SyncError(SyncErrorKind(parsed.kind), parsed.message))
            if parsed.height == 0:
                return pl.concat(frames) if frames else parsed
            frames.append(parsed)
            cursor = parsed.get_column("id")[-1]

    async def _rows(
        self,
        run: _Run,
        table: str,
        *,
        since: str | None = None,
        ids: list[str] | None = None,
    ) -> pl.DataFrame:
        return await self._pages(
            run, table, lambda body: map_table_rows(body, table, run.org), since=since, ids=ids
        )

    async def _read(self, read: Callable[..., T], *args: Any) -> T:
        """`read(*args)` on a worker thread: the cache's failure reported as local."""
        try:
            return await asyncio.to_thread(read, *args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the cache's own failure, whatever its class
            raise _local_failure(exc) from exc

    async def _apply(
        self,
        run: _Run,
        changes: DeltaChanges,
        expected: dict[str, tuple[int, int]],
        newest: dict[str, str],
    ) -> tuple[bool, TableDigests]:
        """`DeltaStore.apply` under the write lock: (committed, the cache's digest after)."""
        try:
            return await self._write(
                self._epoch,
                lambda: self._store.apply(
                    run.org, run.user, changes, expected, newest, self._clock.now()
                ),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the cache's own failure, whatever its class
            raise LocalWriteFailed(exc) from exc

    async def _fail(self, run: _Run, error: SyncError) -> SyncResult:
        result = SyncFailure(
            organisation_id=run.org,
            error=error,
            mode="delta",
            duration_ms=run.elapsed_ms(),
            pages=run.pages,
        )
        await self._log(result, run.started_at, self._epoch)
        return result
