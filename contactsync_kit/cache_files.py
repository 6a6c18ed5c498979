"""The cache's files on disk: private from birth, owned by one person, recognised, erased.

* Folders the kit creates are 0700 and the cache file is created 0600 by the kit itself (an
  exclusive ``os.open`` with that mode, before SQLite ever sees it), whatever the umask.
  SQLite gives ``-wal``, ``-shm`` and ``-journal`` the main file's mode, so they are born
  0600 too. SQLite is only ever asked to open the file, never to create it (``mode=rw``).
* The cache records its owner (project URL and user id, never the email) in the file.
* A file is the kit's when SQLite's ``application_id`` says so (or it is empty, or it is a
  cache written before the id existed); only such files are ever erased.
* Erasure overwrites every file of the cache (main, ``-wal``, ``-shm``, ``-journal``) with
  zeros, syncs, and unlinks it.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .errors import ContactSyncError
from .extras import require_extra
from .results import SyncErrorKind

__all__ = [
    "KIT_APPLICATION_ID",
    "OWNER_TABLE",
    "OWNER_TABLE_DDL",
    "SIDECAR_SUFFIXES",
    "CacheFileError",
    "CacheKeyError",
    "CacheLockedError",
    "CacheOwner",
    "CorruptCacheError",
    "ForeignCacheFileError",
    "cache_file_paths",
    "check_existing_file",
    "claim",
    "compact",
    "connector",
    "describe_open_failure",
    "erase_cache_files",
    "file_engine",
    "is_kit_cache_file",
    "open_errors_translated",
    "prepare_private_file",
    "private_folder",
    "read_owner",
    "reset_cache_file",
    "sqlcipher_module",
]

__io__ = "disk"

# "CSK1": stamped into the SQLite header (offset 68) of every cache the kit creates.
KIT_APPLICATION_ID: Final = 0x43534B31
SIDECAR_SUFFIXES: Final = ("-wal", "-shm", "-journal")
# Outside the data schema's versions: whose data a file holds is checked before anything else.
OWNER_TABLE: Final = "cache_owner"
OWNER_TABLE_DDL: Final = f"""CREATE TABLE IF NOT EXISTS {OWNER_TABLE} (
    id INTEGER PRIMARY KEY CHECK (id = 1), project_url TEXT NOT NULL, user_id TEXT NOT NULL)"""
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_ERASE_CHUNK: Final = 1 << 20


class CacheFileError(ContactSyncError, RuntimeError):
    """The cache file cannot be used as it is; `message` says what a person can do."""

    kind: SyncErrorKind | None = SyncErrorKind.LOCAL_WRITE

    def __init__(self, message: str, *, path: str | Path) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path)


class CorruptCacheError(CacheFileError):
    """The file is a kit cache but damaged (truncated, half-copied, a disk error)."""


class ForeignCacheFileError(CacheFileError):
    """The file at the cache path is not a contactsync cache: the kit will not touch it."""


class CacheKeyError(CacheFileError):
    """An encrypted cache could not be read with the key given (or is not encrypted)."""


class CacheLockedError(CacheFileError):
    """Another process held the cache file locked for longer than the busy timeout."""


@dataclass(frozen=True)
class CacheOwner:
    """Whose cache this is: a project and a user id (the JWT's ``sub``), never an email."""

    project_url: str
    user_id: str

    @classmethod
    def of(cls, project_url: str, user_id: str) -> CacheOwner:
        """The owner with a normalised project URL (scheme and host lower case, no slash)."""
        parts = urlsplit(project_url.strip())
        url = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
        return cls(project_url=url, user_id=user_id.strip().lower())


def cache_file_paths(path: str | Path) -> list[Path]:
    """The main file and every sidecar SQLite may keep beside it."""
    main = Path(path)
    return [main, *(main.with_name(main.name + suffix) for suffix in SIDECAR_SUFFIXES)]


def private_folder(folder: Path, *, tighten: bool = False) -> None:
    """Create `folder` (and missing parents) 0700; with `tighten`, also an existing one.

    An existing folder the kit does not own (e.g. the working directory) is left as it is
    unless `tighten` is set, which is for the kit's own default folder.
    """
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for created in reversed(missing):
        try:
            os.mkdir(created, 0o700)
        except FileExistsError:
            continue
        # The umask may have cut the owner's bits; the folder is still empty here.
        os.chmod(created, 0o700)
    if tighten and folder.stat().st_mode & 0o077:
        os.chmod(folder, 0o700)


def prepare_private_file(path: Path) -> bool:
    """Make sure `path` exists as a 0600 file in a private folder; True if created now.

    The file is created empty with mode 0600 before SQLite writes a byte into it; an existing
    file is left as it is (it is checked by the caller before use).
    """
    private_folder(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)  # the umask may have cut the owner's bits; nothing written yet
    finally:
        os.close(fd)
    return True


def _header(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(100)


def is_kit_cache_file(path: str | Path, *, key: str | None = None) -> bool:
    """Whether the kit created the file at `path` (so it may erase it).

    True for an empty file, a SQLite file stamped with the kit's application id, or a cache
    of an earlier kit version (unstamped, holding the kit's tables). An encrypted file can
    only be recognised with its `key`.
    """
    main = Path(path)
    header = _header(main)
    if not header:
        return True
    if key is None and not header.startswith(_SQLITE_MAGIC):
        return False
    if key is None and int.from_bytes(header[68:72], "big") == KIT_APPLICATION_ID:
        return True
    try:
        module = sqlite3 if key is None else sqlcipher_module()
        conn = connector(main, key=key, busy_timeout_s=1.0, module=module, read_only=True)()
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        finally:
            conn.close()
    except Exception:
        return False
    return bool(
        app_id == KIT_APPLICATION_ID
        or (app_id == 0 and {"contacts", "notes", "sync_state"} <= tables)
    )


def erase_cache_files(path: str | Path) -> list[Path]:
    """Overwrite every file of the cache with zeros, sync it, unlink it; return those erased.

    Call only with the database closed. Zero-filling defeats reading the old file back
    through the filesystem; it cannot reach copies a journaling or copy-on-write
    filesystem, an SSD's wear levelling or a backup already made (full-disk encryption does).
    """
    erased: list[Path] = []
    for file in cache_file_paths(path):
        try:
            fd = os.open(file, os.O_WRONLY)
        except FileNotFoundError:
            continue
        try:
            remaining = os.fstat(fd).st_size
            zeros = bytes(min(remaining, _ERASE_CHUNK))
            while remaining > 0:
                remaining -= os.write(fd, zeros[:remaining])
            os.fsync(fd)
        finally:
            os.close(fd)
        # A connection still closing (a cancelled sync's) may remove its -wal meanwhile.
        file.unlink(missing_ok=True)
        erased.append(file)
    return erased


def sqlcipher_module() -> ModuleType:
    """SQLCipher's DB-API module, or `MissingExtraError` naming the ``encrypted`` extra."""
    require_extra("an encrypted cache", "encrypted")
    return importlib.import_module("sqlcipher3.dbapi2")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connector(
    path: Path,
    *,
    key: str | None,
    busy_timeout_s: float,
    module: ModuleType = sqlite3,
    read_only: bool = False,
) -> Callable[[], Any]:
    """A DB-API connect function for the cache file at `path`.

    SQLite may only open the file (``mode=rw``, or ``ro``), never create it: the kit creates
    it private. With a `key` (SQLCipher), the key is the connection's first statement.
    """
    uri = f"{path.resolve().as_uri()}?mode={'ro' if read_only else 'rw'}"

    def connect() -> Any:
        conn = module.connect(uri, uri=True, timeout=busy_timeout_s, check_same_thread=False)
        if key is not None:
            # SQLCipher logs a wrong key to stderr itself; the kit raises CacheKeyError.
            conn.execute("PRAGMA cipher_log_level = NONE")
            conn.execute(f"PRAGMA key = {_quote(key)}")
        return conn

    return connect


def check_existing_file(path: Path, *, key: str | None, busy_timeout_s: float) -> None:
    """Check, before the kit writes to it, that an existing file is a sound contactsync cache.

    Read-only, so a file that turns out not to be the kit's is left exactly as it was.
    Raises `CorruptCacheError`, `ForeignCacheFileError`, `CacheKeyError` or
    `CacheLockedError`.
    """
    if not _header(path):
        return  # empty: SQLite makes it a database
    module = sqlite3 if key is None else sqlcipher_module()
    try:
        conn = connector(
            path, key=key, busy_timeout_s=busy_timeout_s, module=module, read_only=True
        )()
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        finally:
            conn.close()
    except module.Error as exc:
        raise describe_open_failure(exc, path, encrypted=key is not None) from exc
    if problems != ["ok"]:
        raise CorruptCacheError(
            f"the cache file {path} is damaged ({'; '.join(map(str, problems[:3]))}); "
            f"{_reset_advice(path)}",
            path=path,
        )
    if app_id != KIT_APPLICATION_ID and not (
        app_id == 0 and (not tables or {"contacts", "sync_state"} <= tables)
    ):
        raise ForeignCacheFileError(
            f"{path} is a SQLite database of another application, not a contactsync cache; "
            "the kit leaves it alone. Choose another cache_path",
            path=path,
        )


def _reset_advice(path: Path) -> str:
    return (
        f"run `contactsync cache reset --path {path}` (or `ContactCache.reset(path)`) to "
        "remove it securely, then sign in and sync again"
    )


def describe_open_failure(exc: BaseException, path: Path, *, encrypted: bool) -> CacheFileError:
    """Translate the database driver's error on opening `path` into a typed, actionable one."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    reset = _reset_advice(path)
    if "locked" in text or "busy" in text:
        return CacheLockedError(
            f"the cache file {path} is locked by another process (another notebook or kernel "
            "using the same cache?); close it and try again",
            path=path,
        )
    header = _header(path) if path.exists() else b""
    if encrypted and "not a database" in text:
        return CacheKeyError(
            f"the cache file {path} cannot be read with this key: the key is wrong, or the "
            f"file is not an encrypted contactsync cache. Use the right key, or {reset}",
            path=path,
        )
    if header and not header.startswith(_SQLITE_MAGIC):
        return ForeignCacheFileError(
            f"{path} is not a contactsync cache (not a SQLite file, or one encrypted with a "
            "key you did not give); the kit leaves it alone. Move it away or choose another "
            "cache_path",
            path=path,
        )
    if "disk is full" in text:
        return CacheFileError(
            f"the disk holding the cache file {path} is full; free some space and try again",
            path=path,
        )
    if "readonly" in text or "read-only" in text:
        return CacheFileError(
            f"the cache file {path} cannot be written (a read-only file or folder); make it "
            "writable, or choose another cache_path",
            path=path,
        )
    if "malformed" in text or "not a database" in text or "corrupt" in text or "disk i/o" in text:
        return CorruptCacheError(f"the cache file {path} is damaged ({text}); {reset}", path=path)
    return CorruptCacheError(f"the cache file {path} cannot be opened ({text}); {reset}", path=path)


def file_engine(file: Path, *, key: str | None, busy_timeout_s: float) -> Engine:
    """A SQLAlchemy engine on the cache file, made private and checked first.

    A missing file is created 0600; an existing one must be a sound kit cache
    (`check_existing_file`) before anything writes to it.
    """
    module = sqlite3 if key is None else sqlcipher_module()
    if not prepare_private_file(file):
        check_existing_file(file, key=key, busy_timeout_s=busy_timeout_s)
    return sa.create_engine(
        f"sqlite:///{file}",
        module=module,
        creator=connector(file, key=key, busy_timeout_s=busy_timeout_s, module=module),
    )


@contextmanager
def open_errors_translated(engine: Engine, file: Path, *, encrypted: bool) -> Iterator[None]:
    """On any failure while opening, release `engine`; driver errors become typed ones."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise describe_open_failure(exc, file, encrypted=encrypted) from exc
    except BaseException:
        engine.dispose()
        raise


def claim(conn: Connection, owner: CacheOwner | None, tables: Iterable[str]) -> bool:
    """Stamp the file as the kit's and record `owner`, inside the caller's write transaction.

    False when the file holds content that is not `owner`'s: another owner's, or data of no
    recorded owner in any of `tables`. Then nothing is recorded and the caller must erase.
    """
    conn.exec_driver_sql(f"PRAGMA application_id = {KIT_APPLICATION_ID}")
    conn.exec_driver_sql(OWNER_TABLE_DDL)
    if owner is None:
        return True
    recorded = read_owner(conn)
    if recorded is not None:
        return recorded == owner
    if any(conn.exec_driver_sql(f"SELECT 1 FROM {table} LIMIT 1").first() for table in tables):
        return False
    conn.exec_driver_sql(
        "INSERT INTO cache_owner (id, project_url, user_id) VALUES (1, ?, ?)",
        (owner.project_url, owner.user_id),
    )
    return True


def read_owner(conn: Connection) -> CacheOwner | None:
    """The owner recorded in the file, or None."""
    row = conn.exec_driver_sql("SELECT project_url, user_id FROM cache_owner").first()
    return None if row is None else CacheOwner(row[0], row[1])


def compact(raw: Any, path: str, *, vacuum: bool = True) -> None:
    """Fold the WAL into the main file and truncate it; with `vacuum`, rebuild the file.

    `raw` is a DB-API connection outside any transaction. After a secure delete, this leaves
    no free page and no old WAL frame holding a deleted value.
    """
    steps = ["PRAGMA wal_checkpoint(TRUNCATE)"]
    if vacuum:
        steps += ["VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"]
    for step in steps:
        row = raw.execute(step).fetchone()
        if step.startswith("PRAGMA") and row is not None and row[0]:
            raise CacheLockedError(
                f"another process is reading the cache file {path}, so its journal could not "
                "be emptied; close other notebooks using it and try again",
                path=path,
            )


def reset_cache_file(file: Path, *, key: str | None = None) -> list[Path]:
    """Erase the cache at `file` and its sidecars, unless the kit did not create it."""
    if file.exists() and not is_kit_cache_file(file, key=key):
        raise ForeignCacheFileError(
            f"{file} was not created by contactsync_kit (or is encrypted and no key was "
            "given); it was left untouched. Remove it yourself if you are sure.",
            path=file,
        )
    return erase_cache_files(file)
