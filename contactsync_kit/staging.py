"""`SyncStaging`: one organisation's sync as a unit of work on the cache's SQLite store.

Pages are staged into per-sync TEMP tables as they arrive; the commit merges them in ONE
transaction. The SQL is derived from the table spec in `schemas`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import polars as pl
from sqlalchemy.engine import Connection

from .mappers import MappedPage
from .schemas import DATA_TABLES, SYNC_STATE, TABLES
from .storage import SqliteStore, iso_utc, writing

__all__ = ["SyncStaging"]

__io__ = "disk"


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


def _stage_sql(table: str) -> str:
    names = TABLES[table].names
    return (
        f"INSERT INTO temp.{{staged}} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    )


def _stamp_sql() -> str:
    key, (stamp,) = SYNC_STATE.key, SYNC_STATE.written[1:]
    return (
        f"INSERT INTO {SYNC_STATE.name} ({key}, {stamp}) VALUES (?, ?) "
        f"ON CONFLICT ({key}) DO UPDATE SET {stamp} = excluded.{stamp}"
    )


_MERGE_SQL: Final = {table: _merge_sql(table) for table in DATA_TABLES}
_SWEEP_SQL: Final = {table: _sweep_sql(table) for table in DATA_TABLES}
_STAGE_SQL: Final = {table: _stage_sql(table) for table in DATA_TABLES}
_STAMP_SQL: Final = _stamp_sql()


class SyncStaging:
    """One organisation's sync as a unit of work (get it from `ContactCache.begin_sync`).

    `stage` copies a page into per-sync TEMP tables on the sync's own connection while the
    next page is being fetched, so memory stays bounded by a page and readers keep seeing
    the previous cache. `commit` merges everything in ONE transaction — one bulk upsert per
    table, the sweep of this organisation's vanished rows, `last_synced_at` — or nothing.
    Steps must be called one at a time (from any thread).
    """

    def __init__(self, store: SqliteStore, organisation_id: str, number: int) -> None:
        self._store = store
        self.organisation_id = organisation_id
        self._staged = {table: f"sync_{number}_{table}" for table in DATA_TABLES}
        self._conn: Connection | None = None

    def __enter__(self) -> SyncStaging:
        return self

    def __exit__(self, *_: object) -> None:
        self.discard()

    def _connection(self) -> Connection:
        if self._conn is None:
            # TEMP tables belong to one connection: the sync keeps its own until it ends.
            self._conn = self._store.connect()
            with self._store.serialised():
                for table, staged in self._staged.items():
                    self._conn.exec_driver_sql(
                        f"CREATE TEMP TABLE {staged} AS SELECT * FROM main.{table} WHERE 0"
                    )
                self._conn.commit()
        return self._conn

    def stage(self, page: MappedPage) -> None:
        """Copy one page's frames aside; nothing readers see changes."""
        # Only this connection's TEMP tables change: a deferred BEGIN, so staging never waits
        # on another organisation's commit.
        conn = writing(self._connection(), False)
        with self._store.serialised(), conn.begin():
            for table, frame in page.frames().items():
                if frame.height:
                    self._store.reached("stage", self.organisation_id, table)
                    self._stage_frame(conn, table, frame)

    def _stage_frame(self, conn: Connection, table: str, frame: pl.DataFrame) -> None:
        # The hot path: the DBAPI cursor's executemany (SQLAlchemy's adds 20-40% here), fed
        # from polars' row iterator so no list of every row's tuple is built. Same connection,
        # so same transaction.
        rows = frame.select(TABLES[table].names).iter_rows(buffer_size=2048)
        cursor = conn.connection.cursor()
        try:
            # sqlite3 takes any iterable of rows; the DBAPI stub says Sequence.
            cursor.executemany(_STAGE_SQL[table].format(staged=self._staged[table]), rows)  # type: ignore[arg-type]
        finally:
            cursor.close()

    def commit(
        self, synced_at: datetime, *, on_table_written: Callable[[str, int], None] | None = None
    ) -> None:
        """Merge everything staged into the cache in one transaction, then drop the stage.

        On any exception the transaction rolls back, the cache keeps its previous content,
        and the exception propagates.
        """
        stamp = iso_utc(synced_at)
        conn = writing(self._connection())
        with self._store.serialised(), conn.begin():
            for table in DATA_TABLES:
                self._store.reached("merge", self.organisation_id, table)
                written = self._merge_table(conn, table)
                if on_table_written is not None:
                    on_table_written(table, written)
            self._store.reached("sync_state", self.organisation_id)
            conn.exec_driver_sql(_STAMP_SQL, (self.organisation_id, stamp))
        self.discard()

    def _merge_table(self, conn: Connection, table: str) -> int:
        # One bulk upsert per table, in key order (B-tree friendly), then the sweep.
        staged = self._staged[table]
        written = conn.exec_driver_sql(_MERGE_SQL[table].format(staged=staged)).rowcount
        conn.exec_driver_sql(_SWEEP_SQL[table].format(staged=staged), (self.organisation_id,))
        return int(written)

    def discard(self) -> None:
        """Drop the staged rows and release the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            with self._store.serialised():
                if conn.in_transaction():
                    conn.rollback()
                for staged in self._staged.values():
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{staged}")
                conn.commit()
        finally:
            conn.close()
