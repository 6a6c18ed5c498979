"""The local SQLite cache (SQLAlchemy 2.x Core). All of the kit's disk I/O lives here.

A sync's frames are written in one transaction: one bulk upsert per table, then the delete of
that organisation's rows the server no longer returned, then `last_synced_at`. Readers keep
seeing the previous content until the commit (WAL journal).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from .mappers import MappedPage
from .schemas import DATA_TABLES, TABLE_COLUMNS

__all__ = [
    "DATA_TABLES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CacheVersionError",
    "ContactCache",
    "SyncLogEntry",
    "SyncStaging",
]


# Each migration is frozen SQL: never edit one that has shipped, add the next instead.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE contacts (
            id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, chapter_id TEXT,
            full_name TEXT NOT NULL, phone TEXT, email TEXT, address TEXT,
            status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        "CREATE INDEX contacts_organisation ON contacts (organisation_id)",
        """CREATE TABLE notes (
            id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, organisation_id TEXT NOT NULL,
            author_id TEXT, body TEXT NOT NULL, created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        "CREATE INDEX notes_organisation ON notes (organisation_id)",
        "CREATE INDEX notes_contact ON notes (contact_id)",
        """CREATE TABLE contact_assignments (
            id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, organisation_id TEXT NOT NULL,
            assignee_id TEXT NOT NULL, role TEXT NOT NULL, assigned_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        "CREATE INDEX contact_assignments_organisation ON contact_assignments (organisation_id)",
        "CREATE INDEX contact_assignments_contact ON contact_assignments (contact_id)",
        # Holds no personal data: an organisation id and an ISO-8601 UTC timestamp.
        """CREATE TABLE sync_state (
            organisation_id TEXT PRIMARY KEY, last_synced_at TEXT NOT NULL)""",
    ),
    2: (
        # Every sync attempt, for stale-cache diagnosis. Counts and codes only: no personal data.
        """CREATE TABLE sync_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT, organisation_id TEXT NOT NULL,
            started_at TEXT NOT NULL, duration_ms INTEGER NOT NULL, outcome TEXT NOT NULL,
            error_kind TEXT, error_code TEXT, http_status INTEGER, message TEXT,
            contacts INTEGER NOT NULL DEFAULT 0, notes INTEGER NOT NULL DEFAULT 0,
            contact_assignments INTEGER NOT NULL DEFAULT 0, pages INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX sync_log_organisation ON sync_log (organisation_id, started_at)",
    ),
    3: (
        # Verified incremental sync (delta_store.py): per organisation and user, the server
        # watermarks, the mode and outcome of the last sync, and the digest of the cached rows
        # per table and id bucket. Ids, timestamps and numbers only: no personal data.
        """CREATE TABLE sync_digest_state (
            organisation_id TEXT NOT NULL, user_id TEXT NOT NULL, mode TEXT NOT NULL,
            verified INTEGER NOT NULL, synced_at TEXT NOT NULL, watermarks TEXT NOT NULL,
            PRIMARY KEY (organisation_id, user_id))""",
        """CREATE TABLE sync_digest_buckets (
            organisation_id TEXT NOT NULL, user_id TEXT NOT NULL, table_name TEXT NOT NULL,
            bucket TEXT NOT NULL, row_count INTEGER NOT NULL, s1 INTEGER NOT NULL,
            s2 INTEGER NOT NULL,
            PRIMARY KEY (organisation_id, user_id, table_name, bucket))""",
        # Wiped with the cache: clear() deletes sync_state, and the digest goes with it.
        """CREATE TRIGGER sync_state_wipes_digest AFTER DELETE ON sync_state BEGIN
            DELETE FROM sync_digest_buckets WHERE organisation_id = OLD.organisation_id;
            DELETE FROM sync_digest_state WHERE organisation_id = OLD.organisation_id;
        END""",
    ),
}
SCHEMA_VERSION: Final = max(MIGRATIONS)


class CacheVersionError(RuntimeError):
    """The cache file was written by a newer version of the kit than this one."""


@dataclass(frozen=True)
class SyncLogEntry:
    """One sync attempt as the sync log stores it."""

    organisation_id: str
    started_at: datetime
    duration_ms: int
    outcome: str
    error_kind: str | None = None
    error_code: str | None = None
    http_status: int | None = None
    message: str | None = None
    contacts: int = 0
    notes: int = 0
    contact_assignments: int = 0
    pages: int = 0


def _merge_sql(table: str) -> str:
    columns = ", ".join(TABLE_COLUMNS[table])
    updates = ", ".join(f"{c} = excluded.{c}" for c in TABLE_COLUMNS[table] if c != "id")
    # "WHERE true" keeps SQLite from reading ON CONFLICT as part of the SELECT's join.
    return (f"INSERT INTO {table} ({columns}) SELECT {columns} FROM temp.{{staged}} "
            f"WHERE true ORDER BY id ON CONFLICT (id) DO UPDATE SET {updates}")


_MERGE_SQL: Final = {table: _merge_sql(table) for table in DATA_TABLES}


class ContactCache:
    """The offline cache: contacts, notes, assignments, per-organisation sync state and log.

    Open it with `ContactCache.open(path)` (or ``":memory:"`` in tests); opening migrates the
    file to the current schema version. Methods are synchronous and thread-safe; the
    repository calls them from a worker thread so an event loop is never blocked.
    """

    def __init__(self, engine: Engine, *, in_memory: bool) -> None:
        self._engine = engine
        # One shared connection serves an in-memory database, so every use is serialised. A
        # plain lock: a sync's steps may run on different worker threads.
        self._lock: threading.Lock | None = threading.Lock() if in_memory else None
        self.path: str = ":memory:" if in_memory else str(engine.url.database)
        self._staging_ids = itertools.count(1)

    @classmethod
    def open(cls, path: str | Path, *, target_version: int = SCHEMA_VERSION) -> ContactCache:
        """Open (creating if needed) the cache at `path` and migrate it to `target_version`.

        Raises `CacheVersionError` if the file is newer than this kit understands.
        """
        in_memory = str(path) == ":memory:"
        if in_memory:
            engine = sa.create_engine(
                "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(
                f"sqlite:///{Path(path)}", connect_args={"check_same_thread": False, "timeout": 30}
            )
        _install_transaction_control(engine, wal=not in_memory)
        cache = cls(engine, in_memory=in_memory)
        cache._migrate(target_version)
        return cache

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    # -- schema -----------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The schema version of the open file (SQLite ``user_version``)."""
        with self._read() as conn:
            return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())

    def _migrate(self, target_version: int) -> None:
        with self._write() as conn:
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

    # -- writing ----------------------------------------------------------------------------

    def begin_sync(self, organisation_id: str) -> SyncStaging:
        """Start one organisation's sync: a unit of work that stages pages as they arrive.

        Nothing a reader sees changes until `SyncStaging.commit`; `discard` drops the staged
        rows. Use it as a context manager to discard on any exit without a commit.
        """
        return SyncStaging(self, organisation_id, next(self._staging_ids))

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

    def _stage_frame(self, conn: Connection, staged: str, table: str,
                     frame: pl.DataFrame) -> None:
        # The hot path: the DBAPI cursor's executemany (SQLAlchemy's adds 20-40% here), fed
        # from polars' row iterator so no list of every row's tuple is built. Same connection,
        # so same transaction.
        columns = list(TABLE_COLUMNS[table])
        rows = frame.select(columns).iter_rows(buffer_size=2048)
        cursor = conn.connection.cursor()
        try:
            # sqlite3 takes any iterable of rows; the DBAPI stub says Sequence.
            cursor.executemany(
                f"INSERT INTO temp.{staged} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})", rows)  # type: ignore[arg-type]
        finally:
            cursor.close()

    def _merge(self, conn: Connection, organisation_id: str, staged: dict[str, str],
               synced_at: datetime, on_table_written: Callable[[str, int], None] | None) -> None:
        """Inside one transaction: every staged table upserted and swept, then the timestamp."""
        for table, staged_table in staged.items():
            written = self._merge_table(conn, organisation_id, table, staged_table)
            if on_table_written is not None:
                on_table_written(table, written)
        conn.exec_driver_sql(
            "INSERT INTO sync_state (organisation_id, last_synced_at) VALUES (?, ?) "
            "ON CONFLICT (organisation_id) DO UPDATE "
            "SET last_synced_at = excluded.last_synced_at",
            (organisation_id, _iso(synced_at)),
        )

    def _merge_table(self, conn: Connection, organisation_id: str, table: str,
                     staged: str) -> int:
        # One bulk upsert per table, in id order (B-tree friendly), then the delete of this
        # organisation's rows the server no longer returned.
        written = conn.exec_driver_sql(_MERGE_SQL[table].format(staged=staged)).rowcount
        conn.exec_driver_sql(
            f"DELETE FROM {table} WHERE organisation_id = ? "
            f"AND id NOT IN (SELECT id FROM temp.{staged})", (organisation_id,))
        return int(written)

    def record_attempt(self, entry: SyncLogEntry) -> None:
        """Append one sync attempt to the sync log."""
        with self._write() as conn:
            conn.exec_driver_sql(
                "INSERT INTO sync_log (organisation_id, started_at, duration_ms, outcome, "
                "error_kind, error_code, http_status, message, contacts, notes, "
                "contact_assignments, pages) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.organisation_id, _iso(entry.started_at), entry.duration_ms,
                    entry.outcome, entry.error_kind, entry.error_code, entry.http_status,
                    entry.message, entry.contacts, entry.notes, entry.contact_assignments,
                    entry.pages,
                ),
            )

    def clear(self) -> dict[str, int]:
        """Wipe every table, every `last_synced_at` and the sync log; return rows removed."""
        removed: dict[str, int] = {}
        with self._write() as conn:
            for table in (*DATA_TABLES, "sync_state", "sync_log"):
                removed[table] = conn.exec_driver_sql(f"DELETE FROM {table}").rowcount
        return removed

    # -- reading ----------------------------------------------------------------------------

    def last_synced_at(self, organisation_id: str) -> datetime | None:
        """When `organisation_id` last synced successfully (aware UTC), or None."""
        with self._read() as conn:
            value = conn.exec_driver_sql(
                "SELECT last_synced_at FROM sync_state WHERE organisation_id = ?",
                (organisation_id,),
            ).scalar_one_or_none()
        return None if value is None else datetime.fromisoformat(value)

    def counts(self, organisation_id: str | None = None) -> dict[str, int]:
        """Rows per data table, for one organisation or for all."""
        where, params = ("WHERE organisation_id = ?", (organisation_id,)) if organisation_id \
            else ("", ())
        with self._read() as conn:
            return {
                table: int(conn.exec_driver_sql(
                    f"SELECT count(*) FROM {table} {where}", params).scalar_one())
                for table in DATA_TABLES
            }

    def overview(self) -> pl.DataFrame:
        """One row per organisation in the cache: `last_synced_at` and row counts."""
        query = """
            WITH orgs AS (
                SELECT organisation_id FROM sync_state
                UNION SELECT organisation_id FROM contacts)
            SELECT o.organisation_id, s.last_synced_at,
                (SELECT count(*) FROM contacts c WHERE c.organisation_id = o.organisation_id),
                (SELECT count(*) FROM notes n WHERE n.organisation_id = o.organisation_id),
                (SELECT count(*) FROM contact_assignments a
                    WHERE a.organisation_id = o.organisation_id)
            FROM orgs o LEFT JOIN sync_state s USING (organisation_id)
            ORDER BY o.organisation_id"""
        with self._read() as conn:
            rows = conn.exec_driver_sql(query).all()
        frame = pl.DataFrame(
            [tuple(row) for row in rows],
            schema={"organisation_id": pl.String, "last_synced_at": pl.String,
                    "contacts": pl.Int64, "notes": pl.Int64, "contact_assignments": pl.Int64},
            orient="row",
        )
        return frame.with_columns(
            pl.col("last_synced_at").str.to_datetime(time_zone="UTC", strict=False)
        )

    def read_table(
        self, table: str, organisation_id: str | None = None,
        columns: list[str] | tuple[str, ...] | None = None,
    ) -> pl.DataFrame:
        """A data table (or ``sync_state`` / ``sync_log``) as a frame, optionally one org's.

        Name `columns` to read only those (e.g. ids and timestamps, leaving personal data on
        disk); all columns otherwise.
        """
        if table not in (*DATA_TABLES, "sync_state", "sync_log"):
            raise ValueError(f"unknown cache table {table!r}")
        with self._read() as conn:
            known = [row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
        unknown = sorted(set(columns or ()) - set(known))
        if unknown:
            raise ValueError(f"unknown columns of {table}: {', '.join(unknown)}")
        selected = ", ".join(columns) if columns else "*"
        where, params = ("WHERE organisation_id = ?", (organisation_id,)) if organisation_id \
            else ("", ())
        with self._read() as conn:
            result = conn.exec_driver_sql(
                f"SELECT {selected} FROM {table} {where} ORDER BY rowid", params)
            columns = list(result.keys())
            rows = [tuple(row) for row in result]
        return pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)

    # -- connections ------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._serialised(), self._engine.connect() as conn:
            yield conn
            conn.rollback()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._serialised(), self._engine.connect() as conn:
            conn = conn.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _serialised(self) -> Iterator[None]:
        if self._lock is None:
            yield
        else:
            with self._lock:
                yield


class SyncStaging:
    """One organisation's sync as a unit of work (get it from `ContactCache.begin_sync`).

    `stage` copies a page into per-sync TEMP tables on the sync's own connection while the
    next page is being fetched, so memory stays bounded by a page and readers keep seeing
    the previous cache. `commit` merges everything in ONE transaction — one bulk upsert per
    table, the sweep of this organisation's vanished rows, `last_synced_at` — or nothing.
    Steps must be called one at a time (from any thread).
    """

    def __init__(self, cache: ContactCache, organisation_id: str, number: int) -> None:
        self._cache = cache
        self.organisation_id = organisation_id
        self._staged = {table: f"sync_{number}_{table}" for table in DATA_TABLES}
        self._conn: Connection | None = None
        self.committed = False

    def __enter__(self) -> SyncStaging:
        return self

    def __exit__(self, *_: object) -> None:
        self.discard()

    def _connection(self) -> Connection:
        if self._conn is None:
            # TEMP tables belong to one connection: the sync keeps its own until it ends.
            self._conn = self._cache._engine.connect()
            with self._cache._serialised():
                for table, staged in self._staged.items():
                    self._conn.exec_driver_sql(
                        f"CREATE TEMP TABLE {staged} AS SELECT * FROM main.{table} WHERE 0")
                self._conn.commit()
        return self._conn

    def stage(self, page: MappedPage) -> None:
        """Copy one page's frames aside; nothing readers see changes."""
        # Only this connection's TEMP tables change: a deferred BEGIN, so staging never waits
        # on another organisation's commit.
        conn = self._connection().execution_options(**{_WRITE_OPTION: False})
        with self._cache._serialised(), conn.begin():
            for table, frame in page.frames().items():
                if frame.height:
                    self._cache._stage_frame(conn, self._staged[table], table, frame)

    def commit(self, synced_at: datetime, *,
               on_table_written: Callable[[str, int], None] | None = None) -> None:
        """Merge everything staged into the cache in one transaction, then drop the stage.

        On any exception the transaction rolls back, the cache keeps its previous content,
        and the exception propagates.
        """
        conn = self._connection().execution_options(**{_WRITE_OPTION: True})
        with self._cache._serialised(), conn.begin():
            self._cache._merge(conn, self.organisation_id, self._staged, synced_at,
                               on_table_written)
        self.committed = True
        self.discard()

    def discard(self) -> None:
        """Drop the staged rows and release the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            with self._cache._serialised():
                if conn.in_transaction():
                    conn.rollback()
                for staged in self._staged.values():
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{staged}")
                conn.commit()
        finally:
            conn.close()


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps stored in the cache must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


_WRITE_OPTION: Final = "contactsync_write"


def _install_transaction_control(engine: Engine, *, wal: bool) -> None:
    # pysqlite's own transaction handling defers BEGIN and ignores SAVEPOINT semantics; take
    # control so a writer's `begin()` is a real `BEGIN IMMEDIATE` (no lock-upgrade deadlocks).
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # Writers take the write lock up front; readers stay deferred, so under WAL they keep
        # reading the last committed cache while a sync writes.
        writing = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
