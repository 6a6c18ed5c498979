"""`ContactSyncError`: the one base class of every exception the kit raises on purpose.

A sync never raises for expected failures (it returns a `SyncFailure`); the exceptions are
for calls that cannot return a result: signing in (`SignInError`), offering a key that
bypasses Row Level Security (`PrivilegedKeyError`), opening a cache file from a newer kit
(`CacheVersionError`), and a translated server failure below the repository
(`RemoteFailure`). Catch `ContactSyncError` to handle them all; its `kind` says which action
fits, when a `SyncErrorKind` does.
"""

from __future__ import annotations

import enum

from .results import SyncError, SyncErrorKind

__all__ = ["ContactSyncError", "SessionEndReason", "SessionEndedError", "SyncStopped"]

__io__ = "none"


class ContactSyncError(Exception):
    """Base of the kit's exceptions. `kind` is the fitting `SyncErrorKind`, or None."""

    kind: SyncErrorKind | None = None


class SyncStopped(ContactSyncError):
    """An expected failure that stops a sync, translated where it entered; `error` says why.

    Its subclasses say where: `RemoteFailure` (the server), `Refused` (an answer the kit will
    not cache) and `LocalWriteFailed` (the cache). A sync turns each into a `SyncFailure`.
    """

    def __init__(self, error: SyncError) -> None:
        super().__init__(str(error))
        self.error = error
        self.kind: SyncErrorKind | None = error.kind


class SessionEndReason(enum.StrEnum):
    """Why a session can no longer use its cache; each value has one sentence for people."""

    SIGNED_OUT = "signed_out"
    SIGNED_OUT_ELSEWHERE = "signed_out_elsewhere"
    OTHER_PERSON = "other_person"
    CACHE_REMOVED = "cache_removed"
    CLOSED = "closed"

    @property
    def message(self) -> str:
        """What happened and what to do, in words."""
        return _END_MESSAGES[self]


_END_MESSAGES = {
    SessionEndReason.SIGNED_OUT: "this session has signed out; sign in again",
    SessionEndReason.SIGNED_OUT_ELSEWHERE: "signed out in another window; sign in again",
    SessionEndReason.OTHER_PERSON: (
        "another person signed in on this computer with this cache; sign in again"
    ),
    SessionEndReason.CACHE_REMOVED: (
        "the cache file was removed outside this session (a reset?); sign in again"
    ),
    SessionEndReason.CLOSED: "this cache was closed; sign in again",
}


class SessionEndedError(ContactSyncError):
    """The session's cache is no longer this session's to use; `reason` says why.

    Raised by every cache read after sign-out, after close, or after another session signed
    out or signed in as someone else on the same file. A sync returns the same as a
    `SyncFailure` of kind ``signed_out`` instead of raising.
    """

    kind: SyncErrorKind | None = SyncErrorKind.SIGNED_OUT

    def __init__(self, reason: SessionEndReason) -> None:
        super().__init__(reason.message)
        self.reason = reason
        self.message = reason.message
