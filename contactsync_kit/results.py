"""What a sync returns: a `SyncSuccess` or a `SyncFailure`, never an exception."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = [
    "StageTimings",
    "SyncError",
    "SyncErrorKind",
    "SyncFailure",
    "SyncModeRan",
    "SyncResult",
    "SyncSuccess",
]

__io__ = "none"

#: What a sync ran: everything, or only what changed since the last verified sync.
SyncModeRan = Literal["full", "delta"]


class SyncErrorKind(enum.StrEnum):
    """Why a sync failed. Each kind maps to one action a person can take."""

    NETWORK = "network"
    TIMEOUT = "timeout"
    AUTH = "auth"
    REMOTE = "remote"
    INVALID_INPUT = "invalid_input"
    INVALID_DATA = "invalid_data"
    INCOMPLETE = "incomplete"
    LOCAL_WRITE = "local_write"
    IN_PROGRESS = "in_progress"
    CANCELLED = "cancelled"
    SIGNED_OUT = "signed_out"


@dataclass(frozen=True, slots=True)
class SyncError:
    """A failed sync's reason.

    `message` is for people and never holds personal data (no names, emails, note bodies).
    `code` is the server's error code when there was one (e.g. ``PGRST301``, ``42501``), and
    `status` its HTTP status.
    """

    kind: SyncErrorKind
    message: str
    code: str | None = None
    status: int | None = None

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.kind.value}{code}: {self.message}"


@dataclass(frozen=True, slots=True)
class StageTimings:
    """Milliseconds spent fetching, mapping and writing during one sync."""

    fetch_ms: int = 0
    map_ms: int = 0
    write_ms: int = 0


@dataclass(frozen=True, kw_only=True)
class _SyncOutcome:
    """The fields every sync result carries (not a result itself: see `SyncResult`).

    `items_synced` counts contacts; `notes_synced` and `assignments_synced` count the embedded
    rows (all zero for a failure).
    """

    organisation_id: str
    items_synced: int = 0
    notes_synced: int = 0
    assignments_synced: int = 0
    duration_ms: int = 0
    pages: int = 0
    timings: StageTimings = field(default_factory=StageTimings)
    # Verified incremental sync (issue 11). `mode` is what ran: "full" or "delta";
    # `verified` is True when the server's digest matched the cache after the sync;
    # `fallback_reason` says why a full sync ran when a delta was asked for (or why a sync
    # is not verified); `rows_changed` / `rows_deleted` count what a delta wrote and removed;
    # `reconciled` is True when the digest located differences that did not arrive as changes.
    mode: SyncModeRan = "full"
    verified: bool = False
    fallback_reason: str | None = None
    rows_changed: int = 0
    rows_deleted: int = 0
    reconciled: bool = False


@dataclass(frozen=True, kw_only=True)
class SyncSuccess(_SyncOutcome):
    """Every row the server showed this user for the organisation is now in the cache."""

    error: None = None

    @property
    def ok(self) -> Literal[True]:
        """Always True: the sync succeeded."""
        return True


@dataclass(frozen=True, kw_only=True)
class SyncFailure(_SyncOutcome):
    """Nothing was written; the cache holds exactly what it held before the call."""

    error: SyncError

    @property
    def ok(self) -> Literal[False]:
        """Always False: `error` says why the sync failed."""
        return False


SyncResult: TypeAlias = SyncSuccess | SyncFailure
"""The outcome of one `sync_contacts_for_organisation` call: exactly one of two cases.

`error` is None exactly when the sync succeeded. Branch with ``match`` (``case SyncSuccess():``
/ ``case SyncFailure(error=error):``) or `isinstance`; a type checker sees both cases.
"""
