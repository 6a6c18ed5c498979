"""The sync digest: an order-independent fingerprint of a table's ``(id, updated_at)`` pairs.

The server computes it with ``public.contactsync_digest`` (devstack/sql/0005_sync_digest.sql)
from PostgreSQL's own hash functions, which cost a fraction of a microsecond per row:

    h = uuid_hash_extended(id, timestamp_hash_extended(updated_at AT TIME ZONE 'UTC', 0))

and per table (or id bucket) the row count and ``sum(h) mod 2^61``. This module is its twin:
PostgreSQL's hashes are Bob Jenkins' lookup3 (``hash_bytes_extended``/``hashint8extended`` in
src/common/hashfn.c and src/backend/access/hash/hashfunc.c), written here as vectorised
polars expressions in exact 32-bit modular arithmetic (no per-row Python). A test checks that
both sides agree on the same rows.

A digest is a sum, so it is maintained incrementally (add the new rows, subtract the old) and
split into buckets by id prefix to find where two sides differ. Pure: imports neither supabase
nor SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import polars as pl

__all__ = [
    "BUCKET_PREFIX",
    "DIGEST_MODULUS",
    "Digest",
    "TableDigests",
    "bucket_bounds",
    "bucket_sum_frame",
    "bucket_sums",
    "combine_digest_batches",
    "digest_batch",
    "merge_buckets",
    "row_digest_columns",
    "server_total",
    "table_bucket_sums",
    "table_digests",
    "total",
]

__io__ = "none"

DIGEST_MODULUS: Final = 1 << 61
#: Buckets used to locate differences: the first three hex digits of the id (4,096 buckets).
BUCKET_PREFIX: Final = 3
_ISO_UTC: Final = "%Y-%m-%dT%H:%M:%S%.6fZ"
_M32: Final = 1 << 32
_PG_EPOCH_US: Final = 946_684_800_000_000  # 2000-01-01, PostgreSQL's timestamp origin
_GOLDEN: Final = 0x9E3779B9 + 3923095  # lookup3's initial state, before the key length


@dataclass(frozen=True, slots=True)
class Digest:
    """Row count and digest sums of a set of rows; adds and subtracts like a multiset.

    Each row's hash modulo 2^61 is split into its high 29 and low 32 bits; `s1` and `s2` are
    their sums (exact integers, so any number of rows adds up without overflow).
    """

    count: int = 0
    s1: int = 0
    s2: int = 0

    def __add__(self, other: Digest) -> Digest:
        return Digest(self.count + other.count, self.s1 + other.s1, self.s2 + other.s2)

    def __sub__(self, other: Digest) -> Digest:
        return Digest(self.count - other.count, self.s1 - other.s1, self.s2 - other.s2)

    @property
    def value(self) -> int:
        """The digest as the server reports it: ``(s1 * 2^32 + s2) mod 2^61``."""
        return (self.s1 * _M32 + self.s2) % DIGEST_MODULUS

    def agrees_with(self, server: tuple[int, int] | None) -> bool:
        """Whether the server's ``(row_count, digest)`` (None: no rows) is this digest."""
        if server is None:
            return self.count == 0 and self.value == 0
        return self.count == server[0] and self.value == server[1]


def server_total(buckets: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """The ``(row_count, digest)`` of a table from the server's per-bucket rows."""
    return (
        sum(count for count, _ in buckets.values()),
        sum(value for _, value in buckets.values()) % DIGEST_MODULUS,
    )


#: table -> bucket -> digest (an empty bucket is absent).
TableDigests = dict[str, dict[str, Digest]]


# -- lookup3 on 32-bit words in UInt64 columns a, b, c (every result reduced mod 2^32) -------
# One column update per step: composing the steps as one expression would repeat every
# sub-expression it uses twice, doubling the expression at each step.


def _add(x: pl.Expr, y: pl.Expr) -> pl.Expr:
    return (x + y) % _M32


def _sub(x: pl.Expr, y: pl.Expr) -> pl.Expr:
    return (x + _M32 - y) % _M32


def _rot(x: pl.Expr, k: int) -> pl.Expr:
    return ((x * (1 << k)) % _M32) | (x // (1 << (32 - k)))


_a, _b, _c = pl.col("a"), pl.col("b"), pl.col("c")
_MIX: Final = [
    (target, expression)
    for ra, rb, rc in ((4, 6, 8), (16, 19, 4))
    for target, expression in (
        ("a", _sub(_a, _c) ^ _rot(_c, ra)),
        ("c", _add(_c, _b)),
        ("b", _sub(_b, _a) ^ _rot(_a, rb)),
        ("a", _add(_a, _c)),
        ("c", _sub(_c, _b) ^ _rot(_b, rc)),
        ("b", _add(_b, _a)),
    )
]
_FINAL: Final = [
    ("c", _sub(_c ^ _b, _rot(_b, 14))),
    ("a", _sub(_a ^ _c, _rot(_c, 11))),
    ("b", _sub(_b ^ _a, _rot(_a, 25))),
    ("c", _sub(_c ^ _b, _rot(_b, 16))),
    ("a", _sub(_a ^ _c, _rot(_c, 4))),
    ("b", _sub(_b ^ _a, _rot(_a, 14))),
    ("c", _sub(_c ^ _b, _rot(_b, 24))),
]


def _steps(frame: pl.LazyFrame, steps: list[tuple[str, pl.Expr]]) -> pl.LazyFrame:
    for target, expression in steps:
        frame = frame.with_columns(expression.alias(target))
    return frame


def _start(length: int) -> pl.Expr:
    return pl.lit((_GOLDEN + length) % _M32, dtype=pl.UInt64)


def _hashint8extended(frame: pl.LazyFrame) -> pl.LazyFrame:
    """PostgreSQL's ``hashint8extended(t, 0)`` of the Int64 column ``t``.

    Into columns ``seed_hi`` and ``seed_lo``: its high and low 32-bit words.
    """
    value = pl.col("t")
    high = value // _M32  # an arithmetic shift: floor division
    high_u = (high % _M32).cast(pl.UInt64)
    k = (value - high * _M32).cast(pl.UInt64) ^ pl.when(value >= 0).then(high_u).otherwise(
        _M32 - 1 - high_u
    )
    frame = frame.with_columns(a=_add(_start(4), k), b=_start(4), c=_start(4))
    frame = _steps(frame, _FINAL)
    return frame.with_columns(seed_hi=_b, seed_lo=_c)


def _le_word(index: int) -> pl.Expr:
    """The uuid's bytes 4i..4i+3 as a little-endian word (how lookup3 reads them)."""
    big = pl.col("hex").str.slice(index * 8, 8).str.to_integer(base=16).cast(pl.UInt64)
    return (
        (big % 256) * (1 << 24)
        | ((big // 256) % 256) * (1 << 16)
        | ((big // 65536) % 256) * 256
        | big // (1 << 24)
    )


def _uuid_hash_extended(frame: pl.LazyFrame) -> pl.LazyFrame:
    """PostgreSQL's ``uuid_hash_extended(id, seed)`` into columns ``b`` and ``c``.

    That is ``hash_bytes_extended`` over the 16 bytes of column ``hex``, seeded by
    ``seed_hi``/``seed_lo``.
    """
    start = _start(16)
    seeded = frame.with_columns(
        a=_add(start, pl.col("seed_hi")), b=_add(start, pl.col("seed_lo")), c=start
    )
    seeded = _steps(seeded, _MIX)
    is_seeded = (pl.col("seed_hi") != 0) | (pl.col("seed_lo") != 0)
    frame = seeded.with_columns(
        [pl.when(is_seeded).then(pl.col(x)).otherwise(start).alias(x) for x in "abc"]
    )
    frame = frame.with_columns(
        a=_add(_a, _le_word(0)), b=_add(_b, _le_word(1)), c=_add(_c, _le_word(2))
    )
    frame = _steps(frame, _MIX)
    frame = frame.with_columns(a=_add(_a, _le_word(3)))
    return _steps(frame, _FINAL)


def row_digest_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Each row's bucket and hash: ``bucket``, ``r1``, ``r2`` (and ``table`` if present).

    For a frame with ``id`` and ``updated_at``: the row's hash modulo 2^61 as its high 29
    (``r1``) and low 32 bits (``r2``).

    ``id`` is a uuid string; ``updated_at`` the cache's ISO-8601 UTC text with six fractional
    digits (or a polars datetime).
    """
    updated = pl.col("updated_at")
    if frame.schema.get("updated_at") == pl.String:
        updated = updated.str.to_datetime(_ISO_UTC, time_unit="us", time_zone="UTC")
    keep = [pl.col("table")] if "table" in frame.columns else []
    work = frame.lazy().select(
        *keep,
        pl.col("id").str.to_lowercase().str.slice(0, BUCKET_PREFIX).alias("bucket"),
        pl.col("id").str.to_lowercase().str.replace_all("-", "", literal=True).alias("hex"),
        (updated.dt.epoch("us").cast(pl.Int64) - _PG_EPOCH_US).alias("t"),
    )
    work = _uuid_hash_extended(_hashint8extended(work))
    return work.select(
        *keep,
        "bucket",
        (_b % (1 << 29)).cast(pl.Int64).alias("r1"),
        _c.cast(pl.Int64).alias("r2"),
    ).collect()


def bucket_sums(frame: pl.DataFrame) -> dict[str, Digest]:
    """Per-bucket digests of a frame with ``id`` and ``updated_at``."""
    if frame.height == 0:
        return {}
    sums = (
        row_digest_columns(frame)
        .group_by("bucket")
        .agg(pl.len().alias("n"), pl.col("r1").sum(), pl.col("r2").sum())
    )
    return {bucket: Digest(int(n), int(s1), int(s2)) for bucket, n, s1, s2 in sums.iter_rows()}


def table_bucket_sums(frame: pl.DataFrame) -> TableDigests:
    """Per-table, per-bucket digests of a frame with ``table``, ``id`` and ``updated_at``.

    One call for many tables' rows: the per-call cost of the hash's plan is paid once.
    """
    return table_digests(bucket_sum_frame(frame))


def bucket_sum_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """`table_bucket_sums` as a frame: ``table``, ``bucket``, ``n``, ``r1``, ``r2``.

    Partial sums of several batches concatenate, and `table_digests` adds them up in one
    vectorised step.
    """
    if frame.height == 0:
        return pl.DataFrame(schema=_SUMS)
    return (
        row_digest_columns(frame)
        .group_by("table", "bucket")
        .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("r1").sum(), pl.col("r2").sum())
    )


def table_digests(sums: pl.DataFrame) -> TableDigests:
    """Per-table, per-bucket digests from (partial) sums made by `bucket_sum_frame`."""
    result: TableDigests = {}
    totals = sums.group_by("table", "bucket").agg(pl.col("n", "r1", "r2").sum())
    for table, bucket, n, s1, s2 in totals.iter_rows():
        result.setdefault(table, {})[bucket] = Digest(int(n), int(s1), int(s2))
    return result


_SUMS: Final = pl.Schema(
    {"table": pl.String, "bucket": pl.String, "n": pl.Int64, "r1": pl.Int64, "r2": pl.Int64}
)


def digest_batch(frames: list[pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Digest sums by table and bucket, and each table's newest ``updated_at``, of rows.

    `frames` hold ``table``, ``id`` and ``updated_at`` (a full sync's pages, a batch at a
    time, on a worker thread); `combine_digest_batches` adds the batches up.
    """
    batch = pl.concat(frames)
    newest = batch.group_by("table").agg(pl.col("updated_at").max())
    return bucket_sum_frame(batch), newest


def combine_digest_batches(
    batches: list[tuple[pl.DataFrame, pl.DataFrame]],
) -> tuple[TableDigests, dict[str, str]]:
    """The batches' sums added up per table and bucket, and the newest timestamp per table."""
    if not batches:
        return {}, {}
    sums = table_digests(pl.concat([sums for sums, _ in batches]))
    newest = pl.concat([n for _, n in batches]).group_by("table").agg(pl.col("updated_at").max())
    return sums, {table: stamp for table, stamp in newest.iter_rows() if stamp is not None}


def total(buckets: Mapping[str, Digest] | Iterable[Digest]) -> Digest:
    """The sum of some digests (e.g. every bucket of a table)."""
    values = buckets.values() if isinstance(buckets, Mapping) else buckets
    result = Digest()
    for digest in values:
        result = result + digest
    return result


def merge_buckets(
    base: Mapping[str, Digest], delta: Mapping[str, Digest], sign: int = 1
) -> dict[str, Digest]:
    """``base + delta`` (or ``base - delta`` with ``sign=-1``), dropping emptied buckets."""
    merged = dict(base)
    for bucket, digest in delta.items():
        current = merged.get(bucket, Digest())
        updated = current + digest if sign > 0 else current - digest
        if updated == Digest():
            merged.pop(bucket, None)
        else:
            merged[bucket] = updated
    return merged


def bucket_bounds(bucket: str) -> tuple[str, str | None]:
    """The uuid range ``[low, high)`` of the ids whose hex starts with `bucket`.

    ``high`` is None for the last bucket (``fff…``). Both are full uuid strings, usable as
    PostgREST filters on a uuid column and as text bounds on the cache's lowercase ids.
    """
    low = int(bucket, 16) << (4 * (32 - len(bucket)))
    nxt = (int(bucket, 16) + 1) << (4 * (32 - len(bucket)))
    return _uuid(low), (None if nxt >= 1 << 128 else _uuid(nxt))


def _uuid(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
