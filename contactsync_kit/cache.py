"""The local SQLite cache: versioned migrations, the sync's unit of work, reads for people.

The cache's disk I/O happens here and in `storage` / `staging` (SQLAlchemy Core over SQLite).
A sync's frames are written in one transaction: one bulk upsert per table, then the delete of
that organisation's rows the server no longer returned, then `last_synced_at`. Readers keep
seeing the previous content until the commit (WAL journal).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl
from sqlalchemy import Connection

from .cache_files import (
    CacheOwner,
    claim,
    erase_cache_files,
    private_folder,
    read_owner,
    reset_cache_file,
)
from .cache_paths import check_cache_entries
from .cache_schema import MIGRATIONS, SCHEMA_VERSION, FileShape, create_table_sql, spec_gaps_sql
from .errors import ContactSyncError, SessionEndedError, SessionEndReason
from .lease import CacheLease, folder_mutex, remove_unheld_lock
from .mappers import MappedPage
from .options import DEFAULT_OPTIONS
from .schemas import (
    CACHE_TABLES,
    DATA_TABLES,
    ORGANISATION_NAMES,
    SYNC_LOG,
    SYNC_STATE,
    TABLES,
)
from .staging import SyncStaging
from .storage import SqliteStore, StorageFaults, iso_utc
from .sync_log import SyncLogEntry

__all__ = [
    "DATA_TABLES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CacheVersionError",
    "ContactCache",
    "SyncLogEntry",
    "SyncStaging",
    "create_table_sql",
    "spec_gaps_sql",
]

__io__ = "disk"


class CacheVersionError(ContactSyncError, RuntimeError):
    """The cache file was written by a newer version of the kit than this one.

    No `SyncErrorKind` fits (`kind` is None). Also a `RuntimeError`, as before
    `ContactSyncError`.
    """


def _file_shape(conn: Connection) -> FileShape:
    shape: dict[str, tuple[set[str], set[str]]] = {}
    for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_schema WHERE type = 'table'"):
        columns = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({name})")}
        indexes = {row[1] for row in conn.exec_driver_sql(f"PRAGMA index_list({name})")}
        shape[str(name)] = (columns, indexes)
    return shape


_LOG_SQL: Final = (
    f"INSERT INTO {SYNC_LOG.name} ({', '.join(SYNC_LOG.written)}) "
    f"VALUES ({', '.join('?' for _ in SYNC_LOG.written)})"
)


def _log_row(entry: SyncLogEntry) -> tuple[object, ...]:
    values = (
        entry.rows.get(name, 0) if name in DATA_TABLES else getattr(entry, name)
        for name in SYNC_LOG.written
    )
    return tuple(iso_utc(v) if isinstance(v, datetime) else v for v in values)


class ContactCache:
    """The offline cache: contacts, notes, assignments, per-organisation sync state and log.

    Open it with `ContactCache.open(path)` (or ``":memory:"`` in tests); opening migrates the
    file to the current schema version. Methods are synchronous and thread-safe; the
    repository calls them from a worker thread so an event loop is never blocked.
    """

    def __init__(self, store: SqliteStore, lease: CacheLease | None = None) -> None:
        self._store = store
        self._lease = lease
        self.path: str = store.path
        self._staging_ids = itertools.count(1)

    @property
    def store(self) -> SqliteStore:
        """The connections under the cache, for units of work that write in its transactions."""
        return self._store

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        target_version: int = SCHEMA_VERSION,
        owner: CacheOwner | None = None,
        key: str | None = None,
        busy_timeout_s: float = DEFAULT_OPTIONS.busy_timeout_s,
        faults: StorageFaults | None = None,
    ) -> ContactCache:
        """Open (creating if needed) the cache at `path` and migrate it to `target_version`.

        A new file and the folders made for it are private (0600 / 0700) from birth. With an
        `owner`, content of anyone else (or of no recorded owner) is securely erased before
        use. A file cache is held by this session until `close` (one live owner per file:
        the same person's other sessions share it; another person's sign-in takes it over,
        and this cache then raises `SessionEndedError`). With a `key`, the file is encrypted
        with SQLCipher (the ``encrypted`` extra). `busy_timeout_s` bounds waiting for another
        process's lock. `faults` is the test hook for the write path
        (`contactsync_kit.testing.StorageFaults`).

        Raises `CacheVersionError` for a newer file, else a `CacheFileError`:
        `UnsafeCachePathError` (a link, FIFO, folder or another user's file at the path),
        `CorruptCacheError`, `ForeignCacheFileError` (a file the kit never touches),
        `CacheKeyError` or `CacheLockedError`, each with what to do.
        """
        if str(path) == ":memory:":
            return cls._opened(str(path), None, target_version, owner, key, busy_timeout_s, faults)
        file = Path(path)
        check_cache_entries(file)
        private_folder(file.parent)
        with folder_mutex(file.parent, wait_s=busy_timeout_s):
            lease = CacheLease.acquire(file, owner, wait_s=busy_timeout_s)
            try:
                cache = cls._opened(file, lease, target_version, owner, key, busy_timeout_s, faults)
            except BaseException:
                lease.release()
                raise
            lease.bind()
        return cache

    @classmethod
    def _opened(
        cls,
        path: str | Path,
        lease: CacheLease | None,
        target_version: int,
        owner: CacheOwner | None,
        key: str | None,
        busy_timeout_s: float,
        faults: StorageFaults | None,
    ) -> ContactCache:
        guard = None if lease is None else lease.check

        def opened() -> tuple[ContactCache, bool]:
            store = SqliteStore.open(
                path, faults=faults, key=key, busy_timeout_s=busy_timeout_s, guard=guard
            )
            cache = cls(store, lease)
            with store.open_errors_translated():
                cache._migrate(target_version)
                with store.write() as conn:
                    claimed = claim(conn, owner, CACHE_TABLES)
                store.compact(vacuum=False)
            return cache, claimed

        cache, claimed = opened()
        if not claimed:
            # Someone else's (or nobody's) content: gone before this owner can see any of it.
            cache.store.close()
            if cache.path != ":memory:":
                erase_cache_files(cache.path)
            cache, _ = opened()
        return cache

    @staticmethod
    def reset(path: str | Path, *, key: str | None = None) -> list[Path]:
        """Securely remove the cache at `path` and its sidecars; return the files erased.

        The documented way out of a damaged, newer or unwanted cache (also ``contactsync
        cache reset``). A session still open on it is told on its next call
        (`SessionEndedError`). A file the kit did not create is never removed
        (`ForeignCacheFileError`); an encrypted one is recognised by its `key`.
        """
        file = Path(path)
        erased = reset_cache_file(file, key=key)
        remove_unheld_lock(file)
        return erased

    def ended(self) -> SessionEndReason | None:
        """Why this cache may no longer be used (closed, signed out, taken over), or None."""
        try:
            self._store.check()
        except SessionEndedError as exc:
            return exc.reason
        return None

    def close(self) -> None:
        """Release the database connections and the file (idempotent).

        Later uses raise `SessionEndedError`: for the reason the session had already ended,
        if it had, else ``closed``.
        """
        reason = self.ended() or SessionEndReason.CLOSED
        self._store.close(reason)
        if self._lease is not None:
            self._lease.release(reason)

    def erase(self) -> list[Path]:
        """The sign-out path: securely delete the files, and end every session on them.

        Returns the files erased. Idempotent, and works after `close`; when the file is no
        longer this session's (another window signed out, another person signed in), nothing
        is erased: it is not this session's to erase.
        """
        self._store.close(SessionEndReason.SIGNED_OUT)
        if self._lease is None:  # in memory: closing drops the only copy
            return []
        with folder_mutex(Path(self.path).parent, wait_s=30.0):
            return self._lease.sign_out()

    def owner(self) -> CacheOwner | None:
        """Whose cache this is (project URL and user id), or None if not recorded."""
        with self._store.read() as conn:
            return read_owner(conn)

    # -- schema -----------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The schema version of the open file (SQLite ``user_version``)."""
        with self._store.read() as conn:
            return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())

    def _migrate(self, target_version: int) -> None:
        with self._store.write() as conn:
            current = int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
            if current > SCHEMA_VERSION:
                raise CacheVersionError(
                    f"cache schema version {current} is newer than this kit supports "
                    f"({SCHEMA_VERSION}); upgrade contactsync_kit or clear the cache file"
                )
            for version in range(current + 1, target_version + 1):
                for statement in MIGRATIONS[version]:
                    conn.exec_driver_sql(statement)
                conn.exec_driver_sql(f"PRAGMA user_version = {version}")
            if target_version == SCHEMA_VERSION:
                for statement in spec_gaps_sql(_file_shape(conn)):
                    conn.exec_driver_sql(statement)

    # -- writing ----------------------------------------------------------------------------

    def begin_sync(self, organisation_id: str) -> SyncStaging:
        """Start one organisation's sync: a unit of work that stages pages as they arrive.

        Nothing a reader sees changes until `SyncStaging.commit`; `discard` drops the staged
        rows. Use it as a context manager to discard on any exit without a commit.
        """
        return SyncStaging(self._store, organisation_id, next(self._staging_ids))

    def apply_sync(
        self,
        organisation_id: str,
        page: MappedPage,
        synced_at: datetime,
        *,
        on_table_written: Callable[[str, int], None] | None = None,
    ) -> None:
        """Make the cache hold exactly `page` for `organisation_id`, in one transaction.

        The one-page form of `begin_sync` / `stage` / `commit`.
        """
        with self.begin_sync(organisation_id) as staging:
            staging.stage(page)
            staging.commit(synced_at, on_table_written=on_table_written)

    def record_attempt(self, entry: SyncLogEntry) -> None:
        """Append one sync attempt to the sync log."""
        row = _log_row(entry)
        with self._store.write() as conn:
            self._store.reached("log", entry.organisation_id)
            conn.exec_driver_sql(_LOG_SQL, row)

    def clear(self) -> dict[str, int]:
        """Wipe every table, every `last_synced_at` and the sync log; return rows removed.

        Erasure, not just deletion: no file of the cache keeps a deleted value afterwards.
        The organisations' remembered names go too; the count covers the synced tables,
        `sync_state` and `sync_log`.
        """
        removed: dict[str, int] = {}
        with self._store.write() as conn:
            for table in CACHE_TABLES:
                rows = conn.exec_driver_sql(f"DELETE FROM {table}").rowcount
                if table != ORGANISATION_NAMES.name:
                    removed[table] = rows
        # secure_delete zeroed the rows in place; no WAL frame or free page keeps them.
        self._store.compact()
        return removed

    def remember_organisation_names(self, names: Mapping[str, str]) -> None:
        """Keep the organisations' names as the server last gave them (id -> name)."""
        table = ORGANISATION_NAMES.name
        with self._store.write() as conn:
            conn.exec_driver_sql(f"DELETE FROM {table}")
            if names:
                conn.exec_driver_sql(f"INSERT INTO {table} VALUES (?, ?)", list(names.items()))

    # -- reading ----------------------------------------------------------------------------

    def organisation_names(self) -> dict[str, str]:
        """The organisations' names last remembered (id -> name), for naming them offline."""
        with self._store.read() as conn:
            rows = conn.exec_driver_sql(f"SELECT * FROM {ORGANISATION_NAMES.name}").all()
        return {str(row[0]): str(row[1]) for row in rows}

    def last_synced_at(self, organisation_id: str) -> datetime | None:
        """When `organisation_id` last synced successfully (aware UTC), or None."""
        with self._store.read() as conn:
            value = conn.exec_driver_sql(
                f"SELECT last_synced_at FROM {SYNC_STATE.name} WHERE {SYNC_STATE.key} = ?",
                (organisation_id,),
            ).scalar_one_or_none()
        return None if value is None else datetime.fromisoformat(value)

    def counts(self, organisation_id: str | None = None) -> dict[str, int]:
        """Rows per data table, for one organisation or for all."""
        where, params = (
            ("WHERE organisation_id = ?", (organisation_id,)) if organisation_id else ("", ())
        )
        with self._store.read() as conn:
            return {
                table: int(
                    conn.exec_driver_sql(
                        f"SELECT count(*) FROM {table} {where}", params
                    ).scalar_one()
                )
                for table in DATA_TABLES
            }

    def overview(self) -> pl.DataFrame:
        """One row per organisation in the cache: `last_synced_at` and row counts."""
        with self._store.read() as conn:
            rows = conn.exec_driver_sql(_OVERVIEW_SQL).all()
        frame = pl.DataFrame(
            [tuple(row) for row in rows],
            schema={
                "organisation_id": pl.String,
                "last_synced_at": pl.String,
                **dict.fromkeys(DATA_TABLES, pl.Int64),
            },
            orient="row",
        )
        return frame.with_columns(
            pl.col("last_synced_at").str.to_datetime(time_zone="UTC", strict=False)
        )

    def read_table(
        self,
        table: str,
        organisation_id: str | None = None,
        columns: list[str] | tuple[str, ...] | None = None,
    ) -> pl.DataFrame:
        """A data table (or ``sync_state`` / ``sync_log``) as a frame, optionally one org's.

        Name `columns` to read only those (e.g. ids and timestamps, leaving personal data on
        disk); all columns otherwise. The frame has the spec's types (`table_schema(table)`).
        """
        if table not in CACHE_TABLES:
            raise ValueError(f"unknown cache table {table!r}")
        with self._store.read() as conn:
            known = [row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
        unknown = sorted(set(columns or ()) - set(known))
        if unknown:
            raise ValueError(f"unknown columns of {table}: {', '.join(unknown)}")
        selected = ", ".join(columns) if columns else "*"
        where, params = (
            ("WHERE organisation_id = ?", (organisation_id,)) if organisation_id else ("", ())
        )
        with self._store.read() as conn:
            result = conn.exec_driver_sql(
                f"SELECT {selected} FROM {table} {where} ORDER BY rowid", params
            )
            columns = list(result.keys())
            rows = [tuple(row) for row in result]
        # The spec's types, not inferred ones: a column of nulls is still String (or Int64).
        spec = TABLES[table]
        return pl.DataFrame(rows, schema={c: spec[c].dtype for c in columns}, orient="row")


def _overview_sql() -> str:
    root = DATA_TABLES[0]
    counts = ",\n".join(
        f"(SELECT count(*) FROM {table} t WHERE t.organisation_id = o.organisation_id)"
        for table in DATA_TABLES
    )
    return f"""
        WITH orgs AS (
            SELECT organisation_id FROM {SYNC_STATE.name}
            UNION SELECT organisation_id FROM {root})
        SELECT o.organisation_id, s.last_synced_at,
            {counts}
        FROM orgs o LEFT JOIN {SYNC_STATE.name} s USING (organisation_id)
        ORDER BY o.organisation_id"""


_OVERVIEW_SQL: Final = _overview_sql()
