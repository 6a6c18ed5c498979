"""What a sync returns: a `SyncSuccess` or a `SyncFailure`, never an exception."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from .schemas import ROOT_TABLE

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

    `rows_synced` counts the rows written per synced table, keyed by the spec's table names
    (``{"contacts": 40, "notes": 120, "contact_assignments": 40}``; empty for a failure).
    `items_synced` is its contacts count.
    """

    organisation_id: str
    rows_synced: Mapping[str, int] = field(default_factory=dict, hash=False)
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

    @property
    def items_synced(self) -> int:
        """The contacts synced (the table a sync pages through); 0 for a failure."""
        return self.rows_synced.get(ROOT_TABLE, 0)

    # Named counts from before `rows_synced`, kept so callers written against them still work.
    @property
    def notes_synced(self) -> int:
        """``rows_synced["notes"]`` (0 when absent)."""
        return self.rows_synced.get("notes", 0)

    @property
    def assignments_synced(self) -> int:
        """``rows_synced["contact_assignments"]`` (0 when absent)."""
        return self.rows_synced.get("contact_assignments", 0)


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
