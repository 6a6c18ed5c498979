"""One sync attempt's state and vocabulary: progress reports, timings, and the failures
that end it.

Used by `ContactCacheSyncRepository`; nothing here starts I/O of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from .errors import SessionEndReason, SyncStopped
from .mappers import MappedPage
from .paging import SEQUENTIAL_PAGES, IdRange, id_ranges, pages_needed
from .results import StageTimings, SyncError, SyncErrorKind, SyncFailure, SyncSuccess
from .schemas import DATA_TABLES, ROOT_TABLE, TABLES
from .staging import SyncStaging

__all__ = [
    "CANCELLED",
    "Attempt",
    "Fetcher",
    "LocalWriteFailed",
    "ProgressCallback",
    "Refused",
    "SyncProgress",
    "Timer",
    "check_count",
    "fetch_keyset",
    "fetch_range",
    "fetch_rest",
    "first_failure",
    "report_progress",
    "settle",
    "signed_out",
]

__io__ = "none"

_log = logging.getLogger(__name__)

#: Why a sync that was stopped by a wipe or shutdown wrote nothing (full and delta alike).
CANCELLED: Final = SyncError(
    SyncErrorKind.CANCELLED,
    "the sync was cancelled (the cache was cleared or the app is closing); nothing was written",
)


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


def report_progress(progress: ProgressCallback | None, event: SyncProgress) -> None:
    """Hand `event` to `progress`; a broken display never breaks the sync it displays."""
    if progress is None:
        return
    try:
        progress(event)
    except Exception:
        _log.exception("progress callback failed")


#: Fetches one page (``after < id <= upto``) and starts mapping it: its rows and last id.
Fetcher = Callable[..., Awaitable[tuple[int, str | None]]]


def first_failure(failures: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that stopped a group of tasks (not the cancellations it caused)."""
    leaves: list[BaseException] = []

    def walk(group: BaseExceptionGroup[BaseException]) -> None:
        for exc in group.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            else:
                leaves.append(exc)

    walk(failures)
    return next((e for e in leaves if not isinstance(e, asyncio.CancelledError)), leaves[0])


class LocalWriteFailed(SyncStopped):
    """The cache raised while staging or committing; `cause` (and `__cause__`) is its error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(
            SyncError(
                SyncErrorKind.LOCAL_WRITE,
                f"writing the cache failed ({type(cause).__name__}); "
                "the cache was rolled back to its previous content",
            )
        )
        self.cause = cause


class Refused(SyncStopped):
    """The server's answer cannot be cached (bad rows, counts that do not add up)."""


class Timer:
    """Wall time of one attempt, and the seconds spent fetching, mapping and writing."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.fetch = self.map = self.write = 0.0

    def elapsed_ms(self) -> int:
        """Milliseconds since the attempt started."""
        return round((time.perf_counter() - self.started) * 1000)

    def timings(self) -> StageTimings:
        """The stage seconds as `StageTimings` in milliseconds."""
        return StageTimings(
            round(self.fetch * 1000), round(self.map * 1000), round(self.write * 1000)
        )


class Attempt:
    """One run of a sync: when it started, its timings and pages, and the staging in flight."""

    def __init__(self, org: str, epoch: int, started_at: datetime, staging: SyncStaging) -> None:
        self.org = org
        self.epoch = epoch
        self.started_at = started_at
        self.staging = staging
        self.timer = Timer()
        self.pages = 0
        self.total: int | None = None  # the server's count, from the first page
        self.pages_written = 0
        # The repository's write lock, while this sync's open write transaction holds it.
        self.lock: asyncio.Lock | None = None
        self._staged: asyncio.Future[None] | None = None

    async def stage(self, page: MappedPage) -> None:
        """Stage `page` on a worker thread once the previous page is staged."""
        await self.wait_for_staging()
        self._staged = asyncio.ensure_future(asyncio.to_thread(self.staging.stage, page))

    async def wait_for_staging(self) -> None:
        """Wait for the page being staged; its failure becomes `LocalWriteFailed`."""
        if self._staged is None:
            return
        mark = time.perf_counter()
        try:
            await asyncio.shield(self._staged)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the cache's own failure, whatever its class
            raise LocalWriteFailed(exc) from exc
        finally:
            self.timer.write += time.perf_counter() - mark

    async def close(self) -> None:
        """Wait out a staging thread, roll back what was not committed, release the lock.

        The thread cannot be stopped; the lock goes to the next writer only after the
        rollback.
        """
        try:
            if self._staged is not None:
                await asyncio.wait([self._staged])
            await asyncio.to_thread(self.staging.discard)
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def success(self, counts: dict[str, int]) -> SyncSuccess:
        """This attempt as a `SyncSuccess` with `counts` rows per table."""
        return SyncSuccess(
            organisation_id=self.org,
            rows_synced=counts,
            duration_ms=self.timer.elapsed_ms(),
            pages=self.pages,
            timings=self.timer.timings(),
        )

    def failure(self, error: SyncError) -> SyncFailure:
        """This attempt as a `SyncFailure` for `error`."""
        return SyncFailure(
            organisation_id=self.org,
            error=error,
            duration_ms=self.timer.elapsed_ms(),
            pages=self.pages,
            timings=self.timer.timings(),
        )


async def fetch_keyset(fetched: Fetcher, last: str, received: int, expected: int) -> None:
    """Fetch page after page from `last` until the server's count is met or a page is empty.

    Each page is asked for as soon as the previous one's last id is known.
    """
    cursor: str | None = last
    while cursor is not None and received < expected:
        rows, cursor = await fetched(cursor)
        if not rows:
            return
        received += rows


async def fetch_range(fetched: Fetcher, bounds: IdRange, limit: int) -> None:
    """Keyset-page one id range to its end: a page short of `limit` is the last."""
    after, upto = bounds
    while True:
        rows, last = await fetched(after, upto)
        if rows < limit or last is None:
            return
        after = last


def settle(*futures: asyncio.Future[Any] | None) -> None:
    """Cancel what still runs and read what failed, so no error goes unretrieved."""
    for future in futures:
        if future is None:
            continue
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()


def signed_out(org: str, reason: SessionEndReason) -> SyncFailure:
    """The failure of a sync whose session no longer holds the cache, in `reason`'s words."""
    return SyncFailure(
        organisation_id=org, error=SyncError(SyncErrorKind.SIGNED_OUT, reason.message)
    )


async def fetch_rest(
    fetched: Fetcher, rows: int, last: str | None, expected: int | None, limit: int
) -> None:
    """After the first page: the rest, by keyset pages or, when many, by id ranges."""
    remaining = (expected or 0) - rows
    if not rows or last is None or remaining <= 0:
        return
    if pages_needed(remaining, limit) <= SEQUENTIAL_PAGES:
        await fetch_keyset(fetched, last, rows, expected or 0)
    else:
        ranges = id_ranges(last, remaining, limit)
        await asyncio.gather(*(fetch_range(fetched, r, limit) for r in ranges))


def check_count(received: int, expected: int | None) -> None:
    """Refuse (`Refused`, incomplete) a sync whose root rows miss the server's count."""
    if expected is None or received != expected:
        raise Refused(
            SyncError(
                SyncErrorKind.INCOMPLETE,
                f"received {received} {TABLES[ROOT_TABLE].plural} but the server counted "
                f"{'none' if expected is None else expected}; nothing was written",
            )
        )
