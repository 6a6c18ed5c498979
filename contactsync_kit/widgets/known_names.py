"""Organisation names remembered beside the cache, so the console can name them offline.

The server is the only source of organisation names; the console writes the names it last
read (id → name, and whose they are: the user id, never an email) into a small private file
next to the cache file, ``<cache>.organisations.json`` (0600). When the server does not
answer, the organisation list is the cached organisations, named from this file. Signing out
from the console deletes it with the cache; a file of another user is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..bootstrap import UserSession

__all__ = ["forget_names", "names_file", "read_names", "remember_names"]


def names_file(session: UserSession) -> Path | None:
    """Where the names of `session`'s organisations are kept (None for an in-memory cache)."""
    path = str(session.cache.store.path)
    if not path or path == ":memory:":
        return None
    return Path(f"{path}.organisations.json")


def _user(session: UserSession) -> str:
    token = session.token()
    return str(token.subject) if token is not None and token.subject else ""


def remember_names(session: UserSession, names: dict[str, str]) -> None:
    """Write id → name for `session`'s user (blocking; a failure to write is not an error)."""
    path = names_file(session)
    if path is None:
        return
    text = json.dumps({"user_id": _user(session), "names": names}, ensure_ascii=False)
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)


def read_names(session: UserSession) -> dict[str, str]:
    """The names last written for `session`'s user; empty when none (or another user's)."""
    path = names_file(session)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("user_id") != _user(session):
        return {}
    names = data.get("names")
    return {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


def forget_names(session: UserSession) -> None:
    """Delete the names file (signing out)."""
    path = names_file(session)
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
