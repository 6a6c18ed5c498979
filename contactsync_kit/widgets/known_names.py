"""Organisation names remembered in the cache, so the console can name them offline.

The server is the only source of organisation names; the console keeps the names it last
read in the cache itself (`ContactCache.remember_organisation_names`), where they are erased
with everything else at sign-out or when another person's session takes the file. When the
server does not answer, the organisation list is the cached organisations, named from there.
"""

from __future__ import annotations

import contextlib

from ..bootstrap import UserSession
from ..cache_files import CacheFileError

__all__ = ["read_names", "remember_names"]

__io__ = "none"


def remember_names(session: UserSession, names: dict[str, str]) -> None:
    """Keep id -> name in the session's cache (blocking; a failed write only loses names)."""
    with contextlib.suppress(CacheFileError):
        session.cache.remember_organisation_names(names)


def read_names(session: UserSession) -> dict[str, str]:
    """The names last remembered in the session's cache; empty when none."""
    return session.cache.organisation_names()
