"""One live owner per cache file: a session's lease on it, and how other sessions learn it ended.

Beside each cache file lies a lock file (``<cache>.lock``, 0600) holding a stamp: a random
token for the current generation, whose the generation is (a hash of project URL and user
id) and whether it ended at a sign-out. Every live session holds a shared ``flock`` on it,
like a browser's profile lock; the kernel drops it when the process dies.

* **Sign-in.** Under the folder's mutex (an ``flock`` on the folder), a session with no live
  holder before it starts a new generation. The same person joins the live generation (two
  tabs, two kernels). Another person takes the path over: the lock file is replaced by a new
  generation's, and the previous person's files are erased before anything is opened.
* **Sign-out** ends the generation for every session of it: the lock file is removed (or
  replaced by an ended stamp while other sessions still hold it), after the files are erased.
* **Every call** of a session compares its token with the stamp (one small read) and the
  cache file with the one it opened; a difference is a `SessionEndReason`, never a raw error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .cache_files import (
    CacheFileError,
    CacheLockedError,
    CacheOwner,
    erase_cache_files,
    reset_cache_file,
)
from .cache_paths import CACHE_SUFFIX, check_cache_entries, lock_path
from .errors import SessionEndedError, SessionEndReason

__all__ = ["CacheLease", "folder_mutex", "remove_unheld_lock", "sweep_unheld_caches"]

__io__ = "disk"

_POLL_S: Final = 0.02
_STAMP_LIMIT: Final = 4096


@dataclass(frozen=True)
class _Stamp:
    token: str
    owner: str
    ended: bool = False

    def encode(self) -> bytes:
        return json.dumps({"token": self.token, "owner": self.owner, "ended": self.ended}).encode()


def _owner_key(owner: CacheOwner | None) -> str:
    if owner is None:
        return ""
    return hashlib.sha256(f"{owner.project_url}\n{owner.user_id}".encode()).hexdigest()


def _open_no_follow(path: Path, flags: int) -> int:
    # O_NONBLOCK: a FIFO planted after the entry check still cannot block the open.
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)


def _read_stamp(path: Path) -> _Stamp | None:
    try:
        fd = _open_no_follow(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.read(fd, _STAMP_LIMIT)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
        return _Stamp(str(data["token"]), str(data["owner"]), bool(data.get("ended")))
    except (ValueError, KeyError, TypeError):
        return None


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


@contextlib.contextmanager
def folder_mutex(folder: Path, *, wait_s: float) -> Iterator[None]:
    """Hold the folder's sign-in mutex; `CacheLockedError` after `wait_s` (never hangs)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + wait_s
        while not _try_lock(fd, fcntl.LOCK_EX):
            if time.monotonic() >= deadline:
                raise CacheLockedError(
                    f"another session kept {folder} busy for {wait_s:.0f} s while signing in; "
                    "try again",
                    path=folder,
                )
            time.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _write_new_lock_file(target: Path, stamp: _Stamp) -> int:
    """A lock file holding `stamp`, put in place atomically; its descriptor, held shared."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}")
    fd = _open_no_follow(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, stamp.encode())
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.replace(temporary, target)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return fd


class CacheLease:
    """A live session's hold on one cache file (see the module's docstring)."""

    def __init__(self, path: Path, fd: int, stamp: _Stamp) -> None:
        self.path = path
        self.lock_path = lock_path(path)
        self._fd: int | None = fd
        self._stamp = stamp
        self._inode: int | None = None
        self._ended: SessionEndReason | None = None
        # Sign-out (a worker thread) and close (a cancelled sync's cleanup) may meet: one of
        # them closes the descriptor, once, and sign-out's use of it is never cut short.
        self._held = threading.RLock()

    @classmethod
    def acquire(cls, path: Path, owner: CacheOwner | None, *, wait_s: float) -> CacheLease:
        """Hold `path` for `owner`: a new generation, the live one (same person), or a takeover.

        Call with the folder's mutex held (`folder_mutex`). On a takeover from another person
        their files are erased here, before anything opens them. `owner` None (a tool opening
        the cache directly) joins whatever generation is live and never takes over.
        """
        check_cache_entries(path)
        mine = _owner_key(owner)
        target = lock_path(path)
        fd = _open_no_follow(target, os.O_RDWR | os.O_CREAT)
        try:
            os.fchmod(fd, 0o600)
            stamp = _read_stamp(target)
            if _try_lock(fd, fcntl.LOCK_EX):  # no live session: a new generation
                fresh = _Stamp(secrets.token_hex(16), mine)
                os.ftruncate(fd, 0)
                os.pwrite(fd, fresh.encode(), 0)
                fcntl.flock(fd, fcntl.LOCK_SH)  # safe to convert: the folder mutex is held
                return cls(path, fd, fresh)
            if stamp is not None and not stamp.ended and (owner is None or stamp.owner == mine):
                fcntl.flock(fd, fcntl.LOCK_SH)  # only the mutex holder ever locks exclusively
                return cls(path, fd, stamp)
        except BaseException:
            os.close(fd)
            raise
        # Another person's live session: theirs ends, and their content goes first. A live
        # kit session opened that file (encrypted or not), so it is the kit's to erase.
        os.close(fd)
        fresh = _Stamp(secrets.token_hex(16), mine)
        fd = _write_new_lock_file(target, fresh)
        try:
            erase_cache_files(path)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, fresh)

    def bind(self) -> None:
        """Remember the cache file now at the path as this session's (after opening it)."""
        with contextlib.suppress(FileNotFoundError):
            self._inode = os.lstat(self.path).st_ino

    def ended(self) -> SessionEndReason | None:
        """Why this session may no longer use the cache, or None while it may."""
        return self._ended or self._lost()

    def _lost(self) -> SessionEndReason | None:
        # Whether the file at the path is still this generation's, released or not.
        stamp = _read_stamp(self.lock_path)
        if stamp is None or (stamp.token != self._stamp.token and stamp.owner == self._stamp.owner):
            return SessionEndReason.SIGNED_OUT_ELSEWHERE
        if stamp.token != self._stamp.token:
            return SessionEndReason.OTHER_PERSON
        try:
            inode = os.lstat(self.path).st_ino
        except FileNotFoundError:
            return SessionEndReason.CACHE_REMOVED
        if self._inode is not None and inode != self._inode:
            return SessionEndReason.CACHE_REMOVED
        return None

    def check(self) -> None:
        """Raise `SessionEndedError` when the session may no longer use the cache."""
        reason = self.ended()
        if reason is not None:
            raise SessionEndedError(reason)

    def release(self, reason: SessionEndReason = SessionEndReason.CLOSED) -> None:
        """Let go of the file (idempotent, thread-safe); later checks say `reason`."""
        with self._held:
            if self._ended in (None, SessionEndReason.CLOSED):
                self._ended = reason
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def sign_out(self) -> list[Path]:
        """Erase the files and end the generation for every session of it; the files erased.

        Call with the folder's mutex held and the database closed. Nothing is erased when
        the file is no longer this generation's (another window signed out, another person
        signed in since): it is not this session's to erase. Works after `release` too.
        """
        erased: list[Path] = []
        with self._held:
            if self._lost() is None:
                erased = erase_cache_files(self.path)
                self._end_generation()
            self.release(SessionEndReason.SIGNED_OUT)
        return erased

    def _end_generation(self) -> None:
        fd = self._fd if self._fd is not None else _open_no_follow(self.lock_path, os.O_RDONLY)
        try:
            if _try_lock(fd, fcntl.LOCK_EX):  # nobody else holds it: no trace left
                self.lock_path.unlink(missing_ok=True)
            else:
                ended = _Stamp(secrets.token_hex(16), self._stamp.owner, ended=True)
                os.close(_write_new_lock_file(self.lock_path, ended))
        finally:
            if fd != self._fd:
                os.close(fd)


def remove_unheld_lock(cache_path: Path) -> None:
    """Remove the cache's lock file unless a live session holds it (after a reset)."""
    target = lock_path(cache_path)
    try:
        fd = _open_no_follow(target, os.O_RDONLY)
    except OSError:
        return
    try:
        if _try_lock(fd, fcntl.LOCK_EX):
            target.unlink(missing_ok=True)
    finally:
        os.close(fd)


def sweep_unheld_caches(folder: Path, keep: Path) -> list[Path]:
    """Erase every kit cache in `folder` but `keep` that no live session holds.

    Call with the folder's mutex held. A file the kit did not create, or one still held, is
    left alone. Returns the files erased.
    """
    erased: list[Path] = []
    for cache in sorted(folder.glob(f"*{CACHE_SUFFIX}")):
        if cache == keep:
            continue
        try:
            check_cache_entries(cache)
            fd = _open_no_follow(lock_path(cache), os.O_RDWR | os.O_CREAT)
        except (OSError, CacheFileError):
            continue
        try:
            if not _try_lock(fd, fcntl.LOCK_EX):
                continue
            with contextlib.suppress(Exception):  # not the kit's: left alone
                erased += reset_cache_file(cache)
            lock_path(cache).unlink(missing_ok=True)
        finally:
            os.close(fd)
    return erased
