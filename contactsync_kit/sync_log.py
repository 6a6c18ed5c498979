"""`SyncLogEntry`: one sync attempt as the cache's sync log keeps it (no personal data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .results import SyncResult

__all__ = ["SyncLogEntry"]

__io__ = "none"


@dataclass(frozen=True)
class SyncLogEntry:
    """One sync attempt as the sync log stores it.

    The fields are `SYNC_LOG`'s columns, but for `rows`: rows written per synced table, one
    column each in the log.
    """

    organisation_id: str
    started_at: datetime
    duration_ms: int
    outcome: str
    error_kind: str | None = None
    error_code: str | None = None
    http_status: int | None = None
    message: str | None = None
    rows: Mapping[str, int] = field(default_factory=dict)
    pages: int = 0
    mode: str | None = None
    verified: bool | None = None

    @classmethod
    def of(cls, result: SyncResult, started_at: datetime) -> SyncLogEntry:
        """The log's record of `result`: counts, codes and mode, no personal data."""
        error = result.error
        return cls(
            organisation_id=result.organisation_id,
            started_at=started_at,
            duration_ms=result.duration_ms,
            outcome="success" if error is None else "failure",
            error_kind=error.kind.value if error else None,
            error_code=error.code if error else None,
            http_status=error.status if error else None,
            message=error.message if error else None,
            rows=result.rows_synced,
            pages=result.pages,
            mode=result.mode,
            verified=result.verified,
        )
