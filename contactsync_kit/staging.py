"""`SyncStaging`: one organisation's sync as a unit of work on the cache's SQLite store.

A file cache is written **directly**: the sync's own connection opens ONE write transaction at
its first page, each page is upserted straight into the real tables as it arrives (each row
written once), and the commit sweeps the organisation's rows this sync did not write, stamps
`last_synced_at` and commits. Readers keep seeing the previous commit (WAL) until then; an
error, a cancel or a killed process rolls everything back.

When the write lock is taken (another organisation's sync holds it) or the cache is in memory
(one shared connection, so an open transaction would be visible to readers), pages are staged
into per-sync TEMP tables instead and merged in one transaction at the commit. The SQL is
derived from the table spec in `schemas`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import polars as pl
from sqlalchemy.engine import Connection, RootTransaction

from .mappers import MappedPage
from .schemas import DATA_TABLES, SYNC_STATE, TABLES
from .storage import SqliteStore, iso_utc, writing
from .table_writer import ColumnsWriter, TableWriter

__all__ = ["SyncStaging"]

__io__ = "disk"

#: The sync connection's page cache during a direct write, in KiB (SQLite's negative form).
#: Since notes and assignments are written in key-ordered batches (below), a larger cache saves
#: no measurable CPU (single-threaded write of 100,000 contacts: 2, 4 and 8 MiB within noise;
#: before the batches, 32 MiB saved 0.2 CPU-s for 45 MiB more memory). Released when the sync's
#: connection closes.
BULK_CACHE_KIB: Final = 2 * 1024
#: A direct write holds back the rows of tables whose pages do not arrive in key order (notes
#: and assignments: their uuid keys are random) and writes them sorted by key, this many at a
#: time. Unsorted, nearly every row lands on a primary-key B-tree page the page cache no longer
#: holds (read back, written out again); sorted, each such page is visited once per batch.
#: Single-threaded write of 100,000 contacts: 4.1 CPU-s unbatched, 3.6 / 3.3 / 3.0 with
#: batches of 6,000 / 12,000 / 24,000 rows; each 12,000 rows held cost about 4 MiB.
SORTED_BATCH_ROWS: Final = 12_000
_GATHER_ROWS: Final = 4096
# SQLite gives a new row max(rowid) + 1 until rowids reach 2**63 - 1, then random free ones:
# far below that, "rowid above the watermark" means "written by this sync".
_ROWID_LIMIT: Final = 2**62


def _merge_sql(table: str) -> str:
    spec = TABLES[table]
    columns = ", ".join(spec.names)
    updates = ", ".join(f"{c} = excluded.{c}" for c in spec.names if c != spec.key)
    # "WHERE true" keeps SQLite from reading ON CONFLICT as part of the SELECT's join.
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM temp.{{staged}} "
        f"WHERE true ORDER BY {spec.key} ON CONFLICT ({spec.key}) DO UPDATE SET {updates}"
    )


def _sweep_sql(table: str) -> str:
    # This organisation's rows the server no longer returned.
    spec = TABLES[table]
    return (
        f"DELETE FROM {table} WHERE {spec.scope} = ? "
        f"AND {spec.key} NOT IN (SELECT {spec.key} FROM temp.{{staged}})"
    )


def _insert_sql(table: str, target: str, verb: str = "INSERT") -> str:
    names = TABLES[table].names
    return f"{verb} INTO {target} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"


def _stamp_sql() -> str:
    key, (stamp,) = SYNC_STATE.key, SYNC_STATE.written[1:]
    return (
        f"INSERT INTO {SYNC_STATE.name} ({key}, {stamp}) VALUES (?, ?) "
        f"ON CONFLICT ({key}) DO UPDATE SET {stamp} = excluded.{stamp}"
    )


_MERGE_SQL: Final = {table: _merge_sql(table) for table in DATA_TABLES}
_SWEEP_SQL: Final = {table: _sweep_sql(table) for table in DATA_TABLES}
_STAGE_SQL: Final = {table: _insert_sql(table, "temp.{staged}") for table in DATA_TABLES}
# REPLACE, not an upsert: a row that was cached before is deleted and written anew, so it gets
# a rowid above the sync's watermark; what stays at or below it was not returned, and is swept.
# A row cached under another organisation moves to this one, as the upsert did.
_REPLACE_SQL: Final = {
    table: _insert_sql(table, table, "INSERT OR REPLACE") for table in DATA_TABLES
}
_DIRECT_SWEEP_SQL: Final = {
    table: f"DELETE FROM {table} WHERE {TABLES[table].scope} = ? AND rowid <= ?"
    for table in DATA_TABLES
}
_STAMP_SQL: Final = _stamp_sql()


class SyncStaging:
    """One organisation's sync as a unit of work (get it from `ContactCache.begin_sync`).

    `stage` writes a page while the next one is being fetched, so memory stays bounded by a
    page and readers keep seeing the previous cache. `commit` makes the cache hold exactly
    the staged pages for the organisation — the sweep of its vanished rows, `last_synced_at` —
    in ONE transaction, or nothing. Steps must be called one at a time (from any thread).

    `direct` says how (None until the first `stage`): True when the pages go straight into the
    real tables inside the sync's open write transaction (a file cache whose write lock was
    free), False when they are staged aside in TEMP tables and merged by `commit`.
    """

    def __init__(
        self,
        store: SqliteStore,
        organisation_id: str,
        number: int,
        *,
        direct: bool = True,
        writer: TableWriter | None = None,
    ) -> None:
        self._store = store
        self._writer: TableWriter = writer or ColumnsWriter()
        self.organisation_id = organisation_id
        self._staged = {table: f"sync_{number}_{table}" for table in DATA_TABLES}
        self._conn: Connection | None = None
        self._transaction: RootTransaction | None = None
        #: Whether `stage` may write straight into the tables (set False before the first
        #: `stage` to stage aside, e.g. while another organisation's sync holds the lock).
        self.allow_direct = direct and not store.in_memory
        self.direct: bool | None = None
        self._watermarks: dict[str, int] = {}
        self._deferred_indexes: list[str] = []
        self._written = dict.fromkeys(DATA_TABLES, 0)
        self._held: dict[str, list[pl.DataFrame]] = {t: [] for t in DATA_TABLES}
        self._cache_size: int | None = None  # the connection's own, while the bulk one is set
        self._broken = False

    def __enter__(self) -> SyncStaging:
        return self

    def __exit__(self, *_: object) -> None:
        self.discard()

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._store.connect()
            self._conn = conn
            if self.allow_direct and self._begin_direct(conn):
                self.direct = True
                return conn
            self.direct = False
            # TEMP tables belong to one connection: the sync keeps its own until it ends.
            with self._store.serialised():
                for table, staged in self._staged.items():
                    conn.exec_driver_sql(
                        f"CREATE TEMP TABLE {staged} AS SELECT * FROM main.{table} WHERE 0"
                    )
                conn.commit()
        return self._conn

    def _begin_direct(self, conn: Connection) -> bool:
        """Open the sync's write transaction if the lock is free now; never wait for it."""
        raw = _raw(conn)
        # Raw pragmas: through SQLAlchemy they would autobegin a transaction.
        busy = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            self._transaction = writing(conn).begin()
        except Exception as exc:
            if not _is_locked(exc):
                raise
            conn.rollback()
            return False
        finally:
            raw.execute(f"PRAGMA busy_timeout = {busy}")
        self._cache_size = int(raw.execute("PRAGMA cache_size").fetchone()[0])
        raw.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        for table in DATA_TABLES:
            top = int(
                conn.exec_driver_sql(f"SELECT coalesce(max(rowid), 0) FROM {table}").scalar_one()
            )
            if top >= _ROWID_LIMIT:  # rowids no longer tell new rows from old: start clean
                conn.exec_driver_sql(
                    f"DELETE FROM {table} WHERE {TABLES[table].scope} = ?", (self.organisation_id,)
                )
                top = -1
            self._watermarks[table] = top
            if top == 0:
                self._defer_indexes(conn, table)
        return True

    def _defer_indexes(self, conn: Connection, table: str) -> None:
        # An empty table (a first sync): building its secondary indexes once at the commit,
        # from sorted keys, is cheaper than maintaining them row by row. The definitions come
        # from the file itself; a rollback restores them with everything else.
        for name, sql in conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (table,),
        ).all():
            conn.exec_driver_sql(f"DROP INDEX {name}")
            self._deferred_indexes.append(sql)

    def stage(self, page: MappedPage) -> None:
        """Write one page's frames; nothing readers see changes until `commit`."""
        if self._broken:
            raise RuntimeError("a previous step of this sync failed; discard it")
        conn = self._connection()
        try:
            if self.direct:
                with self._store.serialised():
                    self._check_open(conn)
                    self._write_direct(conn, page)
            else:
                # Only this connection's TEMP tables change: a deferred BEGIN, so staging
                # never waits on another organisation's commit.
                with self._store.serialised(), writing(conn, False).begin():
                    self._write_frames(
                        conn,
                        page,
                        {
                            table: sql.format(staged=self._staged[table])
                            for table, sql in _STAGE_SQL.items()
                        },
                    )
        except BaseException:
            self._broken = True
            raise

    def _write_frames(self, conn: Connection, page: MappedPage, sql: dict[str, str]) -> None:
        for table, frame in page.frames().items():
            if frame.height:
                self._store.reached("stage", self.organisation_id, table)
                self._writer.write(conn, sql[table], frame.select(TABLES[table].names))
                self._written[table] += frame.height

    def _write_direct(self, conn: Connection, page: MappedPage) -> None:
        for table, frame in page.frames().items():
            if not frame.height:
                continue
            self._store.reached("stage", self.organisation_id, table)
            if TABLES[table].parent is None:  # a keyset page: in key order already
                self._write(conn, table, frame)
                continue
            held = self._held[table]
            held.append(frame)
            if sum(f.height for f in held) >= SORTED_BATCH_ROWS:
                self._flush(conn, table)

    def _flush(self, conn: Connection, table: str) -> None:
        held, self._held[table] = self._held[table], []
        if not held:
            return
        batch = pl.concat(held, rechunk=False)
        del held
        # A stable order: a row that came twice (moved between pages) keeps its last copy. The
        # rows are gathered into that order a slice at a time, never the whole batch at once.
        order = batch.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).sort_by(TABLES[table].key, maintain_order=True)
        ).to_series()
        for start in range(0, order.len(), _GATHER_ROWS):
            self._write(conn, table, batch[order.slice(start, _GATHER_ROWS)])

    def _write(self, conn: Connection, table: str, frame: pl.DataFrame) -> None:
        self._writer.write(conn, _REPLACE_SQL[table], frame.select(TABLES[table].names))
        self._written[table] += frame.height

    def commit(
        self,
        synced_at: datetime,
        *,
        on_table_written: Callable[[str, int], None] | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> None:
        """Make the cache hold what was staged, in one transaction, then release the sync.

        `also` writes more in that same transaction (the delta drops the organisation's
        digest state, which no longer describes its rows). On any exception the transaction
        rolls back, the cache keeps its previous content, and the exception propagates.
        """
        stamp = iso_utc(synced_at)
        if self._broken:
            raise RuntimeError("a previous step of this sync failed; discard it")
        conn = self._connection()
        try:
            with self._store.serialised():
                if self.direct:
                    self._commit_direct(conn, stamp, on_table_written, also)
                else:
                    with writing(conn).begin():
                        self._merge(conn, stamp, on_table_written)
                        if also is not None:
                            also(conn)
        except BaseException:
            self._broken = True
            raise
        self.discard()

    def _commit_direct(
        self,
        conn: Connection,
        stamp: str,
        on_table_written: Callable[[str, int], None] | None,
        also: Callable[[Connection], None] | None,
    ) -> None:
        assert self._transaction is not None
        self._check_open(conn)
        for table in DATA_TABLES:
            self._flush(conn, table)
        for table in DATA_TABLES:
            self._store.reached("merge", self.organisation_id, table)
            conn.exec_driver_sql(
                _DIRECT_SWEEP_SQL[table], (self.organisation_id, self._watermarks[table])
            )
            if on_table_written is not None:
                on_table_written(table, self._written[table])
        for sql in self._deferred_indexes:
            conn.exec_driver_sql(sql)
        self._store.reached("sync_state", self.organisation_id)
        conn.exec_driver_sql(_STAMP_SQL, (self.organisation_id, stamp))
        if also is not None:
            also(conn)
        self._check_open(conn)
        self._transaction.commit()

    def _merge(
        self, conn: Connection, stamp: str, on_table_written: Callable[[str, int], None] | None
    ) -> None:
        for table in DATA_TABLES:
            self._store.reached("merge", self.organisation_id, table)
            # One bulk upsert per table, in key order (B-tree friendly), then the sweep.
            staged = self._staged[table]
            written = conn.exec_driver_sql(_MERGE_SQL[table].format(staged=staged)).rowcount
            conn.exec_driver_sql(_SWEEP_SQL[table].format(staged=staged), (self.organisation_id,))
            if on_table_written is not None:
                on_table_written(table, int(written))
        self._store.reached("sync_state", self.organisation_id)
        conn.exec_driver_sql(_STAMP_SQL, (self.organisation_id, stamp))

    @staticmethod
    def _check_open(conn: Connection) -> None:
        # SQLite ends a transaction by itself on some errors (a full disk, say); anything
        # after that would autocommit piecemeal, which the all-or-nothing rule forbids.
        if not _raw(conn).in_transaction:
            raise sqlite3.OperationalError("the sync's write transaction is no longer open")

    def discard(self) -> None:
        """Roll back whatever was not committed and release the connection (idempotent)."""
        conn, self._conn = self._conn, None
        self._transaction = None
        self._held = {t: [] for t in DATA_TABLES}
        if conn is None:
            return
        if conn.invalidated:
            # Its TEMP tables went with the broken connection; reconnecting here could
            # put a connection opened during a storage fault (read-only) into the pool.
            conn.close()
            return
        try:
            with self._store.serialised():
                if conn.in_transaction():
                    conn.rollback()
                if self._cache_size is not None:
                    # The connection goes back to the pool: give the bulk page cache back.
                    raw = _raw(conn)
                    raw.execute(f"PRAGMA cache_size = {self._cache_size}")
                    raw.execute("PRAGMA shrink_memory")
                if self.direct is False:
                    for staged in self._staged.values():
                        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{staged}")
                    conn.commit()
        finally:
            conn.close()


def _raw(conn: Connection) -> Any:
    # sqlite3's, or sqlcipher3's for an encrypted cache: the same API, but not a subclass.
    raw = conn.connection.dbapi_connection
    assert raw is not None
    return raw


def _is_locked(exc: BaseException) -> bool:
    cause = getattr(exc, "orig", exc)
    # By name: sqlcipher3's OperationalError is not sqlite3's.
    return type(cause).__name__ == "OperationalError" and "locked" in str(cause)
