"""What a failure means and what to do about it, written once.

One table, read by the Sync panel and by the stale-cache diagnosis alike.

Pure data: imports neither supabase nor SQLAlchemy, and touches neither network nor disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from .results import SyncErrorKind

__all__ = [
    "ACCESS_REVOKED",
    "ADVICE",
    "EXPIRED_TOKEN_CODES",
    "SYNC_NOW",
    "TOKEN_EXPIRED",
    "UNKNOWN_FAILURE",
    "Advice",
    "advise",
]

__io__ = "none"


@dataclass(frozen=True, slots=True)
class Advice:
    """One failure explained: a short cause code, what happened, and what to do.

    `problem` and `action` are lower-case clauses, so they read inside a sentence ("the last
    sync failed: {problem}") and as a sentence of their own (`sentence`).
    """

    cause: str
    problem: str
    action: str

    @property
    def sentence(self) -> str:
        """The action as a sentence, for a panel: ``"Sync now."``."""
        return f"{self.action[:1].upper()}{self.action[1:]}."


#: The action for a cache that is behind the server but otherwise healthy.
SYNC_NOW: Final = "sync now"

#: What every kind of failure means and what to do (`advise` refines ``auth``).
ADVICE: Final[Mapping[SyncErrorKind, Advice]] = MappingProxyType(
    {
        SyncErrorKind.NETWORK: Advice(
            "server_unreachable",
            "the server could not be reached",
            "check the network connection and that the server is up, then sync again",
        ),
        SyncErrorKind.TIMEOUT: Advice(
            "server_timeout",
            "the server did not answer in time",
            "sync again in a few minutes; if it keeps timing out, send the support bundle",
        ),
        SyncErrorKind.AUTH: Advice(
            "not_signed_in", "no valid user session", "sign out and sign in again"
        ),
        SyncErrorKind.REMOTE: Advice(
            "server_error",
            "the server answered with an error",
            "sync again later; if it persists, send the support bundle to the server team",
        ),
        SyncErrorKind.INVALID_INPUT: Advice(
            "invalid_organisation",
            "the organisation id is not valid",
            "pick the organisation from the list instead of typing its id",
        ),
        SyncErrorKind.INVALID_DATA: Advice(
            "invalid_server_data",
            "the server sent rows the kit refuses",
            "send the support bundle to the developers; the cache keeps its previous content",
        ),
        SyncErrorKind.INCOMPLETE: Advice(
            "incomplete_answer",
            "the server's answer did not add up (row cap or count mismatch)",
            "sync again; if it repeats, send the support bundle: the server's row cap "
            "(db-max-rows) may be cutting the answer, and syncing will not help until it is "
            "raised",
        ),
        SyncErrorKind.LOCAL_WRITE: Advice(
            "local_write_failed",
            "writing the local cache failed",
            "check free disk space and that no other program holds the cache file, then sync "
            "again; if it persists, clear the cache and sync again",
        ),
        SyncErrorKind.IN_PROGRESS: Advice(
            "sync_running", "a sync was already running", "wait for the running sync to finish"
        ),
        SyncErrorKind.CANCELLED: Advice(
            "interrupted",
            "the sync was stopped (the cache was cleared or the user signed out)",
            SYNC_NOW,
        ),
        SyncErrorKind.SIGNED_OUT: Advice(
            "session_ended",
            "this session no longer holds the cache (signed out here or in another window, or "
            "another person signed in on this computer)",
            "sign in again",
        ),
    }
)

#: An ``auth`` failure whose token ran out: signing in again is the whole fix.
TOKEN_EXPIRED: Final = Advice(
    "token_expired", "the session token has expired", "sign in again: token expired"
)
#: An ``auth`` failure the server denied: no new session brings the rows back.
ACCESS_REVOKED: Final = Advice(
    "access_revoked",
    "the server denied access",
    "access revoked: ask an organisation admin to restore the membership; a sync will then "
    "remove the rows this user may no longer see",
)
#: A kind this kit does not know (e.g. written by a newer version into the sync log).
UNKNOWN_FAILURE: Final = Advice(
    "unknown_failure", "an unexpected failure", "send the support bundle"
)

#: Codes that mean "the token expired": the kit's own, and PostgREST v12's and later's.
EXPIRED_TOKEN_CODES: Final = frozenset({"token_expired", "PGRST301", "PGRST303"})
_FORBIDDEN_CODE: Final = "42501"  # PostgreSQL's insufficient_privilege
_FORBIDDEN_STATUS: Final = 403


def advise(
    kind: SyncErrorKind | str | None, code: str | None = None, status: int | None = None
) -> Advice:
    """The advice for a failure of `kind`, refined by the server's `code` and HTTP `status`.

    `kind` may be the plain string the sync log stores; an unknown or missing kind gets
    `UNKNOWN_FAILURE`. Only ``auth`` has more than one fix: an expired token, a denied access
    (``42501`` / 403) and a missing session each get their own advice.
    """
    try:
        known = SyncErrorKind(kind) if kind is not None else None
    except ValueError:
        known = None
    if known is None:
        return UNKNOWN_FAILURE
    if known is SyncErrorKind.AUTH:
        if code in EXPIRED_TOKEN_CODES:
            return TOKEN_EXPIRED
        if code == _FORBIDDEN_CODE or status == _FORBIDDEN_STATUS:
            return ACCESS_REVOKED
    return ADVICE[known]
