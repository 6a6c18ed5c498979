"""Verified incremental sync: fetch what changed, prove the cache equals the server, or heal.

`IncrementalSync.run` is what `sync_contacts_for_organisation(org, mode=...)` dispatches to:

* **delta** — when this user has a verified earlier sync of this organisation and the server
  offers the digest: each table's rows changed since its watermark (minus a safety window),
  applied in one transaction that commits only if the cache's digest then equals the
  server's. Otherwise *reconcile*: the server's digest per id bucket locates the difference,
  ids and timestamps are listed inside those buckets only, the missing rows are deleted and
  the changed ones fetched, all in one transaction verified the same way. If still unequal,
  a full sync runs, inside the same call;
* **full** — the repository's full sync, its fetched rows checked against the server's digest
  before anything is written (a mismatch is `incomplete`), then the digest state recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import polars as pl

from .attempt import CANCELLED, LocalWriteFailed, Refused, settle
from .clock import Clock
from .delta_store import DeltaChanges, DeltaState, DeltaStore
from .digest import (
    BUCKET_PREFIX,
    Digest,
    DigestTotal,
    TableDigests,
    combine_digest_batches,
    fold_digest_batch,
    server_total,
    total,
)
from .errors import SyncStopped
from .mappers import MappedPage, MappingProblem, map_table_rows, map_versions
from .paging import PARALLEL_PAGES
from .remote import ContactSource, DeltaSource, DigestRow, DigestUnavailable
from .results import SyncError, SyncErrorKind, SyncFailure, SyncResult, SyncSuccess
from .schemas import DATA_TABLES

__all__ = ["FullSyncHooks", "IncrementalSync", "SyncMode"]

__io__ = "none"

SyncMode = Literal["auto", "full", "delta"]
T = TypeVar("T")
#: Exclusive, epoch-guarded cache write: runs the callable on a worker thread.
Writer = Callable[[int, Callable[[], T]], Awaitable[T]]
_IDS_PER_REQUEST = 100  # keeps `id=in.(...)` URLs a few kB
# Buckets listed per request: at 100,000 contacts a dozen hold under a page of notes, and the
# requests run side by side.
_BUCKETS_PER_REQUEST = 12
# More differing buckets than this and listing them costs about what a full sync does.
_MAX_RECONCILE_BUCKETS = 1500
# Hashed together: few calls, and the last batch adds little to the sync's tail.
_HASH_BATCH_ROWS = 20_000


@dataclass
class FullSyncHooks:
    """Called by the repository's full sync: each mapped page, then before and in the commit.

    `within_commit` writes the organisation's digest state inside the commit's transaction
    (a worker thread holding the cache's write connection), so the state and the rows it
    describes are committed together. `verified` says whether the rows matched the server's
    digest (for the sync log).
    """

    on_page: Callable[[MappedPage], None]
    before_commit: Callable[[], Awaitable[SyncError | None]]
    within_commit: Callable[[Any], None]
    verified: Callable[[], bool]


@dataclass
class _FullCheck:
    """What the hooks learn while a full sync runs."""

    buckets: TableDigests = field(default_factory=lambda: {t: {} for t in DATA_TABLES})
    watermarks: dict[str, str] = field(default_factory=dict)
    verified: bool = False
    note: str | None = None


class _Fallback(Exception):
    """The delta cannot prove the cache; run a full sync for this reason."""


def _max_updated(frame: pl.DataFrame, previous: str | None) -> str | None:
    if frame.height == 0:
        return previous
    newest = str(frame.get_column("updated_at").max())
    return newest if previous is None or newest > previous else previous


def _server_digests(rows: list[DigestRow]) -> dict[str, dict[str, tuple[int, int]]]:
    result: dict[str, dict[str, tuple[int, int]]] = {t: {} for t in DATA_TABLES}
    for row in rows:
        result.setdefault(row.table, {})[row.bucket] = (row.count, row.digest)
    return result


def _micros(column: str) -> pl.Expr:
    return pl.col(column).str.to_datetime(time_zone="UTC", time_unit="us").dt.epoch("us")


class IncrementalSync:
    """One organisation's sync in a given mode; built by the repository for each call."""

    def __init__(
        self,
        *,
        source: ContactSource,
        store: DeltaStore,
        clock: Clock,
        full: Callable[[FullSyncHooks | None], Awaitable[SyncResult]],
        write: Writer[object],
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
        self._requests = 0
        # The digest per id bucket, once asked for: it locates what the changes did not say.
        self._bucketed: asyncio.Future[list[DigestRow]] | None = None
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
        state = None if user is None else await asyncio.to_thread(self._store.load, org, user)
        if user is None or state is None or not state.verified:
            return await self._verified_full(
                org, "no verified earlier sync of this organisation by this user"
            )
        started_at, mark = self._clock.now(), time.perf_counter()
        try:
            try:
                return await self._delta(source, org, user, state, started_at, mark)
            finally:
                settle(self._bucketed)  # unread when the changes alone made the cache equal
        except _Fallback as fallback:
            return await self._verified_full(org, f"{fallback}; ran a full sync")
        except DigestUnavailable as exc:
            return await self._verified_full(
                org, f"the server offers no digest function ({exc}); ran a full sync"
            )
        except SyncStopped as exc:  # the server's, the answer's or the cache's failure
            return await self._fail(org, started_at, mark, exc.error)
        except asyncio.CancelledError:
            return SyncFailure(organisation_id=org, error=CANCELLED)

    # -- full ---------------------------------------------------------------------------------

    async def _verified_full(self, org: str, reason: str | None) -> SyncResult:
        check = _FullCheck()
        source = self._source
        # Pages' ids and timestamps are hashed in batches on a worker while more pages come,
        # folded into one running total: the memory of one total, whatever the sync's size.
        pending: list[pl.DataFrame] = []
        running: asyncio.Future[DigestTotal] | None = None
        # Asked for with the first page, so its answer is ready by the commit.
        server: asyncio.Future[list[DigestRow]] | None = None

        async def fold(previous: asyncio.Future[DigestTotal] | None, frames: Any) -> DigestTotal:
            total, loop = None if previous is None else await previous, asyncio.get_running_loop()
            return await loop.run_in_executor(self._cpu, fold_digest_batch, total, frames)

        def flush() -> None:
            nonlocal running
            if pending:
                running = asyncio.ensure_future(fold(running, pending.copy()))
                pending.clear()

        def on_page(page: MappedPage) -> None:
            nonlocal server
            if server is None and isinstance(source, DeltaSource):
                server = asyncio.ensure_future(source.digest(org, 0))
            # Only the hashed columns are kept: the rest of the page can be freed once written.
            pending.extend(
                frame.select(pl.lit(table).alias("table"), "id", "updated_at")
                for table, frame in page.frames().items()
            )
            if sum(frame.height for frame in pending) >= _HASH_BATCH_ROWS:
                flush()

        async def before_commit() -> SyncError | None:
            flush()
            sums, newest = await asyncio.get_running_loop().run_in_executor(
                self._cpu, combine_digest_batches, [] if running is None else [await running]
            )
            check.buckets.update(sums)
            check.watermarks.update(newest)
            if not isinstance(source, DeltaSource):
                check.note = "the source offers no digest: the sync is not verified"
                return None
            try:
                digests = _server_digests(await (server or source.digest(org, 0)))
            except DigestUnavailable as exc:
                check.note = (
                    f"the server offers no digest function ({exc}): the sync is not verified"
                )
                return None
            differing = [
                t
                for t in DATA_TABLES
                if not total(check.buckets[t]).agrees_with(digests[t].get(""))
            ]
            if differing:
                return SyncError(
                    SyncErrorKind.INCOMPLETE,
                    "the rows received do not match the "
                    f"server's digest ({', '.join(differing)}): the server changed "
                    "during the sync or rows went missing; nothing was written",
                )
            check.verified = True
            return None

        user = source.user_id() if isinstance(source, DeltaSource) else None

        def within_commit(conn: Any) -> None:
            if check.verified and user is not None:
                self._store.remember_within(
                    conn, org, user, check.buckets, check.watermarks, self._clock.now()
                )
            else:
                self._store.forget_within(conn, org)

        try:
            result = await self._full(
                FullSyncHooks(on_page, before_commit, within_commit, lambda: check.verified)
            )
        finally:
            settle(server, running)  # a failed sync leaves them unread
        return dataclasses.replace(
            result,
            mode="full",
            verified=check.verified and result.error is None,
            fallback_reason="; ".join(r for r in (reason, check.note) if r) or None,
            rows_changed=sum(result.rows_synced.values()),
        )

    # -- delta --------------------------------------------------------------------------------

    async def _pages(
        self,
        source: DeltaSource,
        table: str,
        org: str,
        parse: Callable[[bytes], pl.DataFrame | MappingProblem],
        **query: object,
    ) -> pl.DataFrame:
        """Every keyset page of one query, parsed.

        Stops at an empty page, never at a short one: the server's row cap may have cut it.
        """
        frames: list[pl.DataFrame] = []
        cursor: str | None = None
        while True:
            async with self._gate:
                page = await source.fetch_rows(table, org, after=cursor, **query)  # type: ignore[arg-type]
            self._requests += 1
            parsed = await asyncio.to_thread(parse, page.body)
            if isinstance(parsed, MappingProblem):
                raise Refused(SyncError(SyncErrorKind(parsed.kind), parsed.message))
            if parsed.height == 0:
                return pl.concat(frames) if frames else parsed
            frames.append(parsed)
            cursor = parsed.get_column("id")[-1]

    async def _rows(
        self, source: DeltaSource, table: str, org: str, **query: object
    ) -> pl.DataFrame:
        return await self._pages(
            source, table, org, lambda body: map_table_rows(body, table, org), **query
        )

    async def _delta(
        self,
        source: DeltaSource,
        org: str,
        user: str,
        state: DeltaState,
        started_at: datetime,
        mark: float,
    ) -> SyncResult:
        self._requests = 0

        async def changed(table: str) -> pl.DataFrame:
            watermark = state.watermarks.get(table)
            if watermark is None:
                return await self._rows(source, table, org)
            since = datetime.fromisoformat(watermark.replace("Z", "+00:00")) - self._window
            return await self._rows(
                source, table, org, since=since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            )

        async def changes_seen() -> list[pl.DataFrame]:
            frames = await asyncio.gather(*(changed(t) for t in DATA_TABLES))
            if any(
                (_max_updated(frame, None) or "") > state.watermarks.get(table, "")
                for table, frame in zip(DATA_TABLES, frames, strict=True)
            ):
                # Rows newer than the last sync: the server changed, so rows may have gone
                # too, which only the bucketed digest locates. Ask for it now, beside the
                # plain one (the safety window's rows, seen before, are no such sign).
                self._bucketed = asyncio.ensure_future(source.digest(org, BUCKET_PREFIX))
                self._requests += 1
            return frames

        digest_rows, frames = await asyncio.gather(source.digest(org, 0), changes_seen())
        self._requests += 1
        changes = DeltaChanges(upserts=dict(zip(DATA_TABLES, frames, strict=True)))
        watermarks = {
            t: w
            for t in DATA_TABLES
            if (w := _max_updated(changes.upserts[t], state.watermarks.get(t)))
        }
        server = _server_digests(digest_rows)
        expected = {t: server_total(server[t]) for t in DATA_TABLES}
        # Changes only add rows or keep their number: fewer rows on the server than in the
        # cache means deletions, which the apply would only find by failing.
        lost = any(expected[t][0] < state.counts[t] for t in DATA_TABLES)
        committed, buckets = (
            (False, {}) if lost else await self._apply(org, user, changes, expected, watermarks)
        )
        reconciled = False
        if not committed:
            # Deletions, lost visibility and late commits do not arrive as changes: locate
            # them by bucket, list ids and timestamps only there, then fix and verify again.
            before = buckets

            async def after_changes() -> TableDigests:
                # The cache's buckets with this delta's changes, as the apply has them.
                if not lost:
                    return before
                return await asyncio.to_thread(self._store.digests_after, org, user, changes)

            if self._bucketed is None:
                self._bucketed = asyncio.ensure_future(source.digest(org, BUCKET_PREFIX))
                self._requests += 1
            by_bucket, buckets = await asyncio.gather(self._bucketed, after_changes())
            server = _server_digests(by_bucket)
            differing = {
                t: {
                    b
                    for b in buckets[t].keys() | server[t].keys()
                    if not buckets[t].get(b, Digest()).agrees_with(server[t].get(b))
                }
                for t in DATA_TABLES
            }
            if sum(map(len, differing.values())) > _MAX_RECONCILE_BUCKETS:
                raise _Fallback("the cache differs from the server in too many places")
            await asyncio.gather(
                *(
                    self._reconcile(source, table, org, differing[table], changes)
                    for table in DATA_TABLES
                    if differing[table]
                )
            )
            expected = {t: server_total(server[t]) for t in DATA_TABLES}
            committed, _ = await self._apply(org, user, changes, expected, watermarks)
            if not committed:
                raise _Fallback("the digest still differed after reconciling")
            reconciled = True
        written, deleted = changes.counts()
        # The counts are of what the cache now holds, as after a full sync; `rows_changed`
        # and `rows_deleted` say what this delta did.
        result = SyncSuccess(
            organisation_id=org,
            rows_synced={table: count for table, (count, _) in expected.items()},
            duration_ms=round((time.perf_counter() - mark) * 1000),
            pages=self._requests,
            mode="delta",
            verified=True,
            reconciled=reconciled,
            rows_changed=written,
            rows_deleted=deleted,
        )
        await self._log(result, started_at, self._epoch)
        return result

    async def _reconcile(
        self, source: DeltaSource, table: str, org: str, buckets: set[str], changes: DeltaChanges
    ) -> None:
        """Compare ids and timestamps inside the differing buckets; plan deletes and fetches."""
        ordered = sorted(buckets)
        listed = await asyncio.gather(
            *(
                self._pages(
                    source,
                    table,
                    org,
                    map_versions,
                    buckets=ordered[i : i + _BUCKETS_PER_REQUEST],
                    columns="id,updated_at",
                )
                for i in range(0, len(ordered), _BUCKETS_PER_REQUEST)
            )
        )
        server = pl.concat(listed).select("id", _micros("updated_at").alias("server_us"))
        local = await asyncio.to_thread(self._store.versions, table, org, buckets)
        upserts = changes.upserts[table]
        mine = (
            pl.concat([local, upserts.select("id", "updated_at")])
            .unique("id", keep="last", maintain_order=True)
            .filter(pl.col("id").str.slice(0, BUCKET_PREFIX).is_in(ordered))
            .select("id", _micros("updated_at").alias("local_us"))
        )
        joined = server.join(mine, on="id", how="full", coalesce=True)
        stale = joined.filter(
            pl.col("server_us").is_not_null()
            & (pl.col("local_us").is_null() | (pl.col("local_us") != pl.col("server_us")))
        )
        gone = set(joined.filter(pl.col("server_us").is_null()).get_column("id").to_list())
        ids = stale.get_column("id").to_list()
        fetched = await asyncio.gather(
            *(
                self._rows(source, table, org, ids=ids[i : i + _IDS_PER_REQUEST])
                for i in range(0, len(ids), _IDS_PER_REQUEST)
            )
        )
        merged = pl.concat([upserts, *fetched]).unique("id", keep="last", maintain_order=True)
        changes.upserts[table] = merged.filter(~pl.col("id").is_in(sorted(gone)))
        changes.deletes[table] = gone
        changes.recount[table] = buckets

    async def _apply(
        self,
        org: str,
        user: str,
        changes: DeltaChanges,
        expected: dict[str, tuple[int, int]],
        watermarks: dict[str, str],
    ) -> tuple[bool, TableDigests]:
        try:
            outcome = await self._write(
                self._epoch,
                lambda: self._store.apply(
                    org, user, changes, expected, watermarks, self._clock.now()
                ),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the cache's own failure, whatever its class
            raise LocalWriteFailed(exc) from exc
        return outcome  # type: ignore[return-value]

    async def _fail(
        self, org: str, started_at: datetime, mark: float, error: SyncError
    ) -> SyncResult:
        result = SyncFailure(
            organisation_id=org,
            error=error,
            mode="delta",
            duration_ms=round((time.perf_counter() - mark) * 1000),
            pages=self._requests,
        )
        await self._log(result, started_at, self._epoch)
        return result
