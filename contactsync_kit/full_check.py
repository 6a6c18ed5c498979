"""A full sync verified: its rows checked against the server's digest before the commit.

`FullSyncCheck` gives the repository's full sync its `FullSyncHooks`: each page's ids and
timestamps are hashed as the pages come (in batches, off the event loop), the sum is compared
with the server's digest before anything is committed (a mismatch is `incomplete`), and the
digest state a later delta starts from is recorded inside the commit. `delta.py` runs it for
``mode="full"`` and whenever a delta falls back to a full sync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import polars as pl

from .attempt import settle
from .clock import Clock
from .delta_store import DeltaStore
from .digest import (
    DigestTotal,
    TableDigests,
    combine_digest_batches,
    fold_digest_batch,
    server_total,
    total,
)
from .mappers import MappedPage
from .remote import ContactSource, DeltaSource, DigestRow, DigestUnavailable
from .results import SyncError, SyncErrorKind
from .schemas import DATA_TABLES

__all__ = ["FullSyncCheck", "FullSyncHooks", "server_buckets", "server_totals"]

__io__ = "none"

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


def server_buckets(rows: list[DigestRow]) -> dict[str, dict[str, tuple[int, int]]]:
    """The server's digest rows as table -> bucket -> ``(row_count, digest)``."""
    result: dict[str, dict[str, tuple[int, int]]] = {t: {} for t in DATA_TABLES}
    for row in rows:
        result.setdefault(row.table, {})[row.bucket] = (row.count, row.digest)
    return result


def server_totals(server: dict[str, dict[str, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    """Each synced table's ``(row_count, digest)`` from the server's (bucketed) digest."""
    return {t: server_total(server.get(t, {})) for t in DATA_TABLES}


class FullSyncCheck:
    """One full sync verified: its pages hashed as they come, checked before the commit.

    The hooks it gives the repository's full sync fold each page's ids and timestamps into a
    running digest (in batches, on `cpu`), compare it with the server's digest before the
    commit, and record the digest state inside the commit.
    """

    def __init__(
        self, source: ContactSource, org: str, store: DeltaStore, clock: Clock, cpu: Executor | None
    ) -> None:
        self._digests = source if isinstance(source, DeltaSource) else None
        self._user = self._digests.user_id() if self._digests is not None else None
        self._org, self._store, self._clock, self._cpu = org, store, clock, cpu
        self.buckets: TableDigests = {t: {} for t in DATA_TABLES}
        self.changed_up_to: dict[str, str] = {}
        self.verified = False
        self.note: str | None = None
        # Pages' ids and timestamps are hashed in batches on a worker while more pages come,
        # folded into one running total: the memory of one total, whatever the sync's size.
        self._pending: list[pl.DataFrame] = []
        self._running: asyncio.Future[DigestTotal] | None = None
        # Asked for with the first page, so its answer is ready by the commit.
        self._server: asyncio.Future[list[DigestRow]] | None = None

    def hooks(self) -> FullSyncHooks:
        """The hooks to hand the repository's full sync."""
        return FullSyncHooks(
            self.on_page, self.before_commit, self.within_commit, lambda: self.verified
        )

    def settle(self) -> None:
        """Cancel or read what still runs: a failed sync leaves it unread."""
        settle(self._server, self._running)

    async def _fold(self, previous: asyncio.Future[DigestTotal] | None, frames: Any) -> DigestTotal:
        running = None if previous is None else await previous
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._cpu, fold_digest_batch, running, frames)

    def _flush(self) -> None:
        if self._pending:
            self._running = asyncio.ensure_future(self._fold(self._running, self._pending.copy()))
            self._pending.clear()

    def on_page(self, page: MappedPage) -> None:
        """Keep a page's hashed columns, and ask for the server's digest with the first."""
        if self._server is None and self._digests is not None:
            self._server = asyncio.ensure_future(self._digests.digest(self._org, 0))
        # Only the hashed columns are kept: the rest of the page can be freed once written.
        self._pending.extend(
            frame.select(pl.lit(table).alias("table"), "id", "updated_at")
            for table, frame in page.frames().items()
        )
        if sum(frame.height for frame in self._pending) >= _HASH_BATCH_ROWS:
            self._flush()

    async def before_commit(self) -> SyncError | None:
        """Compare the rows received with the server's digest: `incomplete` if they differ."""
        self._flush()
        sums, newest = await asyncio.get_running_loop().run_in_executor(
            self._cpu,
            combine_digest_batches,
            [] if self._running is None else [await self._running],
        )
        self.buckets.update(sums)
        self.changed_up_to.update(newest)
        if self._digests is None:
            self.note = "the source offers no digest: the sync is not verified"
            return None
        try:
            server = server_buckets(await (self._server or self._digests.digest(self._org, 0)))
        except DigestUnavailable as exc:
            self.note = f"the server offers no digest function ({exc}): the sync is not verified"
            return None
        expected = server_totals(server)
        differing = [t for t in DATA_TABLES if not total(self.buckets[t]).agrees_with(expected[t])]
        if differing:
            return SyncError(
                SyncErrorKind.INCOMPLETE,
                "the rows received do not match the "
                f"server's digest ({', '.join(differing)}): the server changed "
                "during the sync or rows went missing; nothing was written",
            )
        self.verified = True
        return None

    def within_commit(self, conn: Any) -> None:
        """Record the digest state (or drop a stale one) in the commit's transaction."""
        if self.verified and self._user is not None:
            self._store.remember_within(
                conn, self._org, self._user, self.buckets, self.changed_up_to, self._clock.now()
            )
        else:
            self._store.forget_within(conn, self._org)
