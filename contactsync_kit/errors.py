"""`ContactSyncError`: the one base class of every exception the kit raises on purpose.

A sync never raises for expected failures (it returns a `SyncFailure`); the exceptions are
for calls that cannot return a result: signing in (`SignInError`), offering a key that
bypasses Row Level Security (`PrivilegedKeyError`), opening a cache file from a newer kit
(`CacheVersionError`), and a translated server failure below the repository
(`RemoteFailure`). Catch `ContactSyncError` to handle them all; its `kind` says which action
fits, when a `SyncErrorKind` does.
"""

from __future__ import annotations

from .results import SyncErrorKind

__all__ = ["ContactSyncError"]

__io__ = "none"


class ContactSyncError(Exception):
    """Base of the kit's exceptions. `kind` is the fitting `SyncErrorKind`, or None."""

    kind: SyncErrorKind | None = None
