"""`SyncOptions`: the sync's tunable numbers, with their defaults written once.

Accepted by `start_session`, `ContactCacheSyncRepository` and the console's panels; each
default lives here and nowhere else. Pure data: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any, Final

from .errors import ContactSyncError

__all__ = ["DEFAULT_OPTIONS", "InvalidOptionsError", "SyncOptions", "resolve_options"]

__io__ = "none"


class InvalidOptionsError(ContactSyncError, ValueError):
    """A `SyncOptions` value that cannot work; the message names it and the allowed range."""


@dataclass(frozen=True, kw_only=True)
class SyncOptions:
    """How a sync pages, caps, overlaps and waits.

    `page_size` is the contacts asked for per request (never more than `max_rows`).
    `max_rows` is the server's PostgREST ``db-max-rows`` (1,000 on Supabase; None for no
    cap): an embedded array that reaches it may have been cut short silently, so such a sync
    fails as ``incomplete`` instead of caching a cut list. `delta_window` is how far before
    the last change seen an incremental sync asks again (transactions that commit late with
    an older ``updated_at``).
    `request_timeout_s` bounds each server request; `busy_timeout_s` bounds waiting for
    another process's lock on the cache file.
    """

    page_size: int = 1000
    max_rows: int | None = 1000
    delta_window: timedelta = timedelta(seconds=60)
    request_timeout_s: float = 15.0
    busy_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        problems = [
            f"page_size must be a whole number of at least 1 (got {self.page_size!r})"
            if not _whole(self.page_size, 1)
            else None,
            f"max_rows must be None or a whole number of at least 1 (got {self.max_rows!r})"
            if self.max_rows is not None and not _whole(self.max_rows, 1)
            else None,
            f"delta_window must be a timedelta of 0 or more (got {self.delta_window!r})"
            if not isinstance(self.delta_window, timedelta) or self.delta_window < timedelta(0)
            else None,
            *(
                f"{name} must be a number of seconds above 0 (got {value!r})"
                for name, value in (
                    ("request_timeout_s", self.request_timeout_s),
                    ("busy_timeout_s", self.busy_timeout_s),
                )
                if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
            ),
        ]
        if found := [p for p in problems if p]:
            raise InvalidOptionsError("; ".join(found))

    def updated(self, **changes: Any) -> SyncOptions:
        """A copy with `changes`, checked like a new one; unknown names are refused."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise InvalidOptionsError(f"no sync option called {', '.join(sorted(unknown))}")
        return replace(self, **changes)


def resolve_options(options: SyncOptions | None, **singles: Any) -> SyncOptions:
    """`options` (or the defaults) with the single options a caller gave beside it.

    Signatures keep single keywords (``max_rows=500``) next to ``options=``; a single keyword
    that differs from its default overrides the same field of `options`.
    """
    base = options or DEFAULT_OPTIONS
    given = {k: v for k, v in singles.items() if v != getattr(DEFAULT_OPTIONS, k)}
    return base.updated(**given) if given else base


def _whole(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


#: The defaults, for signatures that take single options beside a `SyncOptions`.
DEFAULT_OPTIONS: Final = SyncOptions()
