"""Disk side of the verified incremental sync: digest state and the all-or-nothing delta apply.

The cache keeps, per organisation and user, the newest change it holds per table
(`DeltaState.changed_up_to`: the greatest ``updated_at``, where the next delta's changes start)
and the digest of its rows per table and id bucket (cache migration 3, whose column for the
former is still called ``watermarks``). A delta is applied in ONE transaction that also
updates that digest from the rows it replaces and the rows it writes, and commits only when
the result equals the server's digest; otherwise it rolls back and says what it would have
held. Uses the cache's own engine and locks; the SQL lives here because it is only the delta's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import polars as pl
from sqlalchemy.engine import Connection

from .cache import ContactCache
from .digest import (
    BUCKET_PREFIX,
    Digest,
    TableDigests,
    bucket_bounds,
    bucket_sums,
    merge_buckets,
    table_bucket_sums,
    total,
)
from .schemas import DATA_TABLES, SYNC_STATE, TABLE_COLUMNS
from .storage import iso_utc
from .table_writer import ColumnsWriter

__all__ = ["DIGEST_TABLES", "DeltaChanges", "DeltaState", "DeltaStore"]

__io__ = "disk"

#: The cache tables of migration 3 (outside the table spec: composite keys, no personal data).
DIGEST_TABLES: Final = ("sync_digest_state", "sync_digest_buckets")
_VERSION_SCHEMA: Final = pl.Schema({"id": pl.String, "updated_at": pl.String})
_WRITER: Final = ColumnsWriter()
_CHUNK: Final = 900  # ids per IN (...) list: below every SQLite's variable limit
# The queries by id below say `+organisation_id`: it keeps SQLite from choosing the
# organisation index (a scan of every row of the organisation) over the id index.


@dataclass(frozen=True)
class DeltaState:
    """What the last sync of an organisation by a user left behind."""

    mode: str
    verified: bool
    synced_at: str
    #: Per table, the newest ``updated_at`` the cache holds: the next delta asks for the
    #: rows changed since then (minus the safety window).
    changed_up_to: dict[str, str]
    #: Rows per table the stored digest describes (what the cache held after that sync).
    counts: dict[str, int]


@dataclass
class DeltaChanges:
    """Rows to upsert and ids to delete per table, and buckets to recount from the rows.

    `DeltaStore.apply` drops from `upserts` the rows the cache already holds unchanged.
    """

    upserts: dict[str, pl.DataFrame] = field(default_factory=dict)
    deletes: dict[str, set[str]] = field(default_factory=dict)
    recount: dict[str, set[str]] = field(default_factory=dict)

    def counts(self) -> tuple[int, int]:
        """(rows written, ids deleted) over every table."""
        return (
            sum(f.height for f in self.upserts.values()),
            sum(len(ids) for ids in self.deletes.values()),
        )


class _Mismatch(Exception):
    def __init__(self, buckets: TableDigests) -> None:
        super().__init__("digest mismatch")
        self.buckets = buckets


def _upsert_sql(table: str) -> str:
    columns = list(TABLE_COLUMNS[table])
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


_KEY, (_STAMP,) = SYNC_STATE.key, SYNC_STATE.written[1:]
_STAMP_SQL: Final = (
    f"INSERT INTO {SYNC_STATE.name} ({_KEY}, {_STAMP}) VALUES (?, ?) "
    f"ON CONFLICT ({_KEY}) DO UPDATE SET {_STAMP} = excluded.{_STAMP}"
)


def _tagged(frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Tables' ``id``/``updated_at`` frames as one, with a ``table`` column."""
    return pl.concat(
        [
            frame.select(pl.lit(table).alias("table"), "id", "updated_at")
            for table, frame in frames.items()
        ]
        or [pl.DataFrame(schema={"table": pl.String, **_VERSION_SCHEMA})]
    )


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _updated(
    stored: TableDigests,
    olds: Mapping[str, pl.DataFrame],
    news: Mapping[str, pl.DataFrame],
    afters: Mapping[str, pl.DataFrame],
    recount: Mapping[str, set[str]],
) -> TableDigests:
    """`stored` less the digests of the rows replaced (`olds`) plus the new rows', per table.

    The buckets in `recount` are replaced whole by the digests of their rows after (`afters`).
    """
    # One hash per kind of rows, all tables at once: the hash's per-call cost is paid three
    # times, not nine.
    removed, added, recounted = (
        table_bucket_sums(_tagged(frames)) for frames in (olds, news, afters)
    )
    result: TableDigests = {}
    for table in DATA_TABLES:
        buckets = merge_buckets(stored.get(table, {}), removed.get(table, {}), sign=-1)
        buckets = merge_buckets(buckets, added.get(table, {}))
        for bucket in recount.get(table, set()):
            buckets.pop(bucket, None)
        buckets.update(recounted.get(table, {}))
        result[table] = buckets
    return result


class DeltaStore:
    """The delta's disk I/O over an open `ContactCache` (thread-safe, synchronous)."""

    def __init__(self, cache: ContactCache) -> None:
        self._cache = cache

    # -- state ------------------------------------------------------------------------------

    def load(self, organisation_id: str, user_id: str) -> DeltaState | None:
        """The digest state of the last sync of `organisation_id` by `user_id`, or None."""
        with self._cache.store.read() as conn:
            row = conn.exec_driver_sql(
                "SELECT mode, verified, synced_at, watermarks FROM sync_digest_state "
                "WHERE organisation_id = ? AND user_id = ?",
                (organisation_id, user_id),
            ).first()
            if row is None:
                return None
            # Totals only: the buckets themselves are read by the apply that needs them.
            counts = dict.fromkeys(DATA_TABLES, 0)
            for table, rows in conn.exec_driver_sql(
                "SELECT table_name, sum(row_count) FROM sync_digest_buckets "
                "WHERE organisation_id = ? AND user_id = ? GROUP BY table_name",
                (organisation_id, user_id),
            ):
                counts[table] = int(rows)
        return DeltaState(
            mode=row[0],
            verified=bool(row[1]),
            synced_at=row[2],
            changed_up_to=json.loads(row[3]),
            counts=counts,
        )

    def forget_within(self, conn: Connection, organisation_id: str) -> None:
        """Drop an organisation's digest state inside the caller's open write transaction.

        A full sync's commit calls it, so the old state goes with the rows it described.
        """
        self._forget(conn, organisation_id)

    def remember_within(
        self,
        conn: Connection,
        organisation_id: str,
        user_id: str,
        buckets: TableDigests,
        changed_up_to: Mapping[str, str],
        synced_at: datetime,
    ) -> None:
        """Record a verified full sync inside the caller's open write transaction.

        Its newest change per table and the digest of what it wrote replace the
        organisation's old state; the full sync's commit calls it, so the state and the rows
        commit together.
        """
        self._forget(conn, organisation_id)
        self._save(conn, organisation_id, user_id, "full", buckets, {}, changed_up_to, synced_at)

    # -- reading rows -----------------------------------------------------------------------

    def versions(self, table: str, organisation_id: str, buckets: Iterable[str]) -> pl.DataFrame:
        """``id`` and ``updated_at`` of the cached rows of `table` inside the id `buckets`."""
        with self._cache.store.read() as conn:
            return self._versions(conn, table, organisation_id, buckets)

    def actual_digests(self, organisation_id: str) -> TableDigests:
        """The digest of what the cache holds for the organisation, recomputed from its rows.

        Reads ids and timestamps only (no personal data); for diagnosis, not the hot path.
        """
        with self._cache.store.read() as conn:
            result: TableDigests = {}
            for table in DATA_TABLES:
                rows = conn.exec_driver_sql(
                    f"SELECT id, updated_at FROM {table} WHERE organisation_id = ?",
                    (organisation_id,),
                ).all()
                frame = pl.DataFrame([tuple(r) for r in rows], schema=_VERSION_SCHEMA, orient="row")
                result[table] = bucket_sums(frame)
        return result

    # -- the delta --------------------------------------------------------------------------

    def apply(
        self,
        organisation_id: str,
        user_id: str,
        changes: DeltaChanges,
        expected: Mapping[str, tuple[int, int]],
        changed_up_to: Mapping[str, str],
        synced_at: datetime,
    ) -> tuple[bool, TableDigests]:
        """Apply `changes` in one transaction; commit only if the digest equals `expected`.

        `expected` is the server's ``(row_count, digest)`` per table; `changed_up_to` the
        newest change per table the cache then holds.

        Returns ``(committed, buckets)``: the per-bucket digest the cache holds (committed) or
        would have held (rolled back, the cache unchanged). Raises on a storage failure, with
        the transaction rolled back.
        """
        try:
            with self._cache.store.write() as conn:
                stored = self._buckets(conn, organisation_id, user_id)
                buckets = self._plan(conn, organisation_id, stored, changes)
                if not all(total(buckets[t]).agrees_with(expected.get(t)) for t in DATA_TABLES):
                    raise _Mismatch(buckets)
                self._write(conn, organisation_id, changes)
                self._cache.store.reached("sync_state", organisation_id)
                conn.exec_driver_sql(_STAMP_SQL, (organisation_id, iso_utc(synced_at)))
                self._save(
                    conn,
                    organisation_id,
                    user_id,
                    "delta",
                    buckets,
                    stored,
                    changed_up_to,
                    synced_at,
                )
                return True, buckets
        except _Mismatch as mismatch:
            return False, mismatch.buckets

    def digests_after(
        self, organisation_id: str, user_id: str, changes: DeltaChanges
    ) -> TableDigests:
        """The per-bucket digest the cache would hold after `changes`; nothing is written."""
        with self._cache.store.read() as conn:
            stored = self._buckets(conn, organisation_id, user_id)
            return self._plan(conn, organisation_id, stored, changes)

    def _plan(
        self, conn: Connection, organisation_id: str, stored: TableDigests, changes: DeltaChanges
    ) -> TableDigests:
        """The digest after `changes`, read before anything is written.

        Drops from `changes.upserts` the rows the cache already holds unchanged.
        """
        olds: dict[str, pl.DataFrame] = {}
        news: dict[str, pl.DataFrame] = {}
        afters: dict[str, pl.DataFrame] = {}
        for table in DATA_TABLES:
            frame = changes.upserts.get(table)
            deleted = changes.deletes.get(table, set())
            written = set(frame.get_column("id").to_list()) if frame is not None else set()
            old = self._rows_by_id(conn, table, organisation_id, sorted(written | deleted))
            if frame is not None:
                # A row the cache already holds at the same updated_at is the same row (the
                # safety window fetches some again): not rewritten, not counted as changed.
                frame = (
                    frame.join(old.rename({"updated_at": "_cached"}), on="id", how="left")
                    .filter(
                        pl.col("_cached").is_null() | (pl.col("_cached") != pl.col("updated_at"))
                    )
                    .drop("_cached")
                )
                changes.upserts[table] = frame
                kept = frame.get_column("id").to_list() + sorted(deleted)
                old = old.filter(pl.col("id").is_in(kept))
                news[table] = frame.select("id", "updated_at")
            olds[table] = old
            # Buckets the digest located a difference in are recounted from the rows (as
            # they will be after the changes): that also heals a stored digest that went
            # stale behind the kit's back.
            recount = changes.recount.get(table, set())
            if recount:
                new = news.get(table, pl.DataFrame(schema=_VERSION_SCHEMA))
                replaced = sorted(set(new.get_column("id").to_list()) | deleted)
                afters[table] = pl.concat(
                    [
                        self._versions(conn, table, organisation_id, recount).filter(
                            ~pl.col("id").is_in(replaced)
                        ),
                        new.filter(pl.col("id").str.slice(0, BUCKET_PREFIX).is_in(sorted(recount))),
                    ]
                )
        return _updated(stored, olds, news, afters, changes.recount)

    def _write(self, conn: Connection, organisation_id: str, changes: DeltaChanges) -> None:
        """Upsert the changed rows and delete the gone ones."""
        for table in DATA_TABLES:
            # The cache's fault hook (`StorageFaults`) sees the delta's merge as a full sync's.
            self._cache.store.reached("merge", organisation_id, table)
            frame = changes.upserts.get(table)
            if frame is not None and frame.height:
                _WRITER.write(conn, _upsert_sql(table), frame.select(list(TABLE_COLUMNS[table])))
            for chunk in _chunks(sorted(changes.deletes.get(table, set()))):
                conn.exec_driver_sql(
                    f"DELETE FROM {table} WHERE +organisation_id = ? AND id IN "
                    f"({', '.join('?' for _ in chunk)})",
                    (organisation_id, *chunk),
                )

    # -- SQL helpers ------------------------------------------------------------------------

    @staticmethod
    def _forget(conn: Connection, organisation_id: str) -> None:
        for table in DIGEST_TABLES:
            conn.exec_driver_sql(
                f"DELETE FROM {table} WHERE organisation_id = ?", (organisation_id,)
            )

    @staticmethod
    def _buckets(conn: Connection, organisation_id: str, user_id: str) -> TableDigests:
        result: TableDigests = {table: {} for table in DATA_TABLES}
        # Up to 4,096 buckets per table on every sync: the DBAPI cursor, not SQLAlchemy's
        # row objects, which cost ten times as much here.
        cursor = conn.connection.cursor()
        try:
            rows = cursor.execute(
                "SELECT table_name, bucket, row_count, s1, s2 FROM sync_digest_buckets "
                "WHERE organisation_id = ? AND user_id = ?",
                (organisation_id, user_id),
            ).fetchall()
        finally:
            cursor.close()
        for table, bucket, count, s1, s2 in rows:
            result.setdefault(table, {})[bucket] = Digest(count, s1, s2)
        return result

    @staticmethod
    def _save(
        conn: Connection,
        organisation_id: str,
        user_id: str,
        mode: str,
        buckets: TableDigests,
        stored: TableDigests,
        changed_up_to: Mapping[str, str],
        synced_at: datetime,
    ) -> None:
        # Migration 3's column `watermarks` holds `changed_up_to` (the name is history).
        conn.exec_driver_sql(
            "INSERT INTO sync_digest_state (organisation_id, user_id, mode, verified, "
            "synced_at, watermarks) VALUES (?, ?, ?, 1, ?, ?) "
            "ON CONFLICT (organisation_id, user_id) DO UPDATE SET mode = excluded.mode, "
            "verified = 1, synced_at = excluded.synced_at, watermarks = excluded.watermarks",
            (organisation_id, user_id, mode, iso_utc(synced_at), json.dumps(dict(changed_up_to))),
        )
        # Only the buckets that changed are rewritten: an unchanged re-sync writes one row.
        gone: list[tuple[str, str, str, str]] = []
        changed: list[tuple[str, str, str, str, int, int, int]] = []
        for table in DATA_TABLES:
            new, old = buckets.get(table, {}), stored.get(table, {})
            gone += [(organisation_id, user_id, table, b) for b in old.keys() - new.keys()]
            changed += [
                (organisation_id, user_id, table, b, d.count, d.s1, d.s2)
                for b, d in new.items()
                if old.get(b) != d
            ]
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(
                "DELETE FROM sync_digest_buckets WHERE organisation_id = ? AND user_id = ? "
                "AND table_name = ? AND bucket = ?",
                gone,
            )
            cursor.executemany(
                "INSERT INTO sync_digest_buckets (organisation_id, user_id, table_name, "
                "bucket, row_count, s1, s2) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (organisation_id, user_id, table_name, bucket) DO UPDATE SET "
                "row_count = excluded.row_count, s1 = excluded.s1, s2 = excluded.s2",
                changed,
            )
        finally:
            cursor.close()

    @staticmethod
    def _rows_by_id(
        conn: Connection, table: str, organisation_id: str, ids: list[str]
    ) -> pl.DataFrame:
        rows: list[tuple[str, str]] = []
        for chunk in _chunks(ids):
            rows += [
                tuple(r)
                for r in conn.exec_driver_sql(
                    f"SELECT id, updated_at FROM {table} WHERE +organisation_id = ? AND id IN "
                    f"({', '.join('?' for _ in chunk)})",
                    (organisation_id, *chunk),
                )
            ]
        return pl.DataFrame(rows, schema=_VERSION_SCHEMA, orient="row")

    @staticmethod
    def _versions(
        conn: Connection, table: str, organisation_id: str, buckets: Iterable[str]
    ) -> pl.DataFrame:
        rows: list[tuple[str, str]] = []
        for bucket in sorted(buckets):
            low, high = bucket_bounds(bucket)
            rows += [
                tuple(r)
                for r in conn.exec_driver_sql(
                    f"SELECT id, updated_at FROM {table} WHERE +organisation_id = ? AND id >= ? "
                    "AND id < ?",
                    (organisation_id, low, high or "g"),
                )
            ]
        return pl.DataFrame(rows, schema=_VERSION_SCHEMA, orient="row")
