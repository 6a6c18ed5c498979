"""Where caches live, whose file is whose, and which entries at a cache path are safe to use.

* The default folder, ``~/.cache/contactsync_kit/private``, holds one file per person: its
  name is a keyed hash of (project URL, user id), so two people on one machine never share a
  file and the names say nothing about who they are. The hash key is a random secret kept
  0600 in the folder.
* Before the kit opens or creates anything at a cache path, every entry it would use (the
  main file, ``-wal``, ``-shm``, ``-journal`` and the lease's ``.lock``) must be absent or a
  regular file of this OS user; it is never followed through a symbolic link, and a FIFO or
  device is never opened (so nothing can block). Existing files are tightened to 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from .cache_files import SIDECAR_SUFFIXES, CacheFileError, CacheOwner, private_folder

__all__ = [
    "CACHE_SUFFIX",
    "LOCK_SUFFIX",
    "UnsafeCachePathError",
    "check_cache_entries",
    "default_cache_folder",
    "lock_path",
    "person_cache_path",
]

__io__ = "disk"

CACHE_SUFFIX: Final = ".sqlite3"
LOCK_SUFFIX: Final = ".lock"
_NAME_KEY_FILE: Final = ".names.key"
_UNSAFE_KINDS: Final = {
    stat.S_IFLNK: "a symbolic link (the kit never follows one to a cache)",
    stat.S_IFDIR: "a folder, not a file",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class UnsafeCachePathError(CacheFileError):
    """Something at the cache path is not a regular file of this OS user; nothing was opened."""


def default_cache_folder() -> Path:
    """The kit's private folder for caches: ``~/.cache/contactsync_kit/private`` (kept 0700)."""
    return Path.home() / ".cache" / "contactsync_kit" / "private"


def lock_path(cache_path: str | Path) -> Path:
    """The lease's lock file beside the cache at `cache_path`."""
    main = Path(cache_path)
    return main.with_name(main.name + LOCK_SUFFIX)


def person_cache_path(folder: Path, owner: CacheOwner) -> Path:
    """The cache file of `owner` in `folder`: ``cache-<keyed hash>.sqlite3``.

    The key is created on first use (0600); without it the names cannot be linked to people.
    """
    private_folder(folder, tighten=True)
    key_file = folder / _NAME_KEY_FILE
    check_entry(key_file)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        key = key_file.read_bytes()
    else:
        key = secrets.token_bytes(32)
        try:
            os.fchmod(fd, 0o600)  # the umask may have cut the owner's bits
            os.write(fd, key)
        finally:
            os.close(fd)
    digest = hmac.new(key, f"{owner.project_url}\n{owner.user_id}".encode(), hashlib.sha256)
    return folder / f"cache-{digest.hexdigest()[:24]}{CACHE_SUFFIX}"


def check_entry(path: Path) -> None:
    """Pass when `path` is absent or a regular file of this user (tightened to 0600).

    Raises `UnsafeCachePathError` naming the entry, what it is and what to do; never opens it.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UnsafeCachePathError(
            f"{path} cannot be inspected ({exc.strerror}); choose another cache_path", path=path
        ) from exc
    kind = _UNSAFE_KINDS.get(stat.S_IFMT(info.st_mode))
    if kind is not None:
        raise UnsafeCachePathError(
            f"{path} is {kind}; the kit only keeps a cache in a regular file it created. "
            "Remove it or choose another cache_path",
            path=path,
        )
    if info.st_nlink > 1:
        raise UnsafeCachePathError(
            f"{path} has {info.st_nlink} names (a hard link): personal data written to it "
            "would also appear under the other name. Remove it or choose another cache_path",
            path=path,
        )
    if info.st_uid != os.geteuid():
        raise UnsafeCachePathError(
            f"{path} belongs to another OS user (uid {info.st_uid}); the kit will not use it. "
            "Choose a cache_path in a folder of your own",
            path=path,
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o600)  # not a link (checked above): only the owner may read a cache


def check_cache_entries(cache_path: Path) -> None:
    """`check_entry` for the cache file, each sidecar and the lease's lock file."""
    if cache_path.parent.exists() and not cache_path.parent.is_dir():
        raise UnsafeCachePathError(
            f"{cache_path.parent} is not a folder; choose another cache_path", path=cache_path
        )
    check_entry(cache_path)
    for suffix in SIDECAR_SUFFIXES:
        check_entry(cache_path.with_name(cache_path.name + suffix))
    check_entry(lock_path(cache_path))
