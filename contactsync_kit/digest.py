"""The sync digest: an order-independent fingerprint of a table's ``(id, updated_at)`` pairs.

The server computes it with ``public.contactsync_digest`` (devstack/sql/0005_sync_digest.sql);
this module is its twin in polars, vectorised, in exact integer arithmetic:

* ``x1..x4`` — the uuid's 32 hex digits as four unsigned 32-bit integers;
* ``t`` — ``updated_at`` as epoch microseconds plus 2^55 (positive for any sane date);
* ``fold(K)`` — Horner over ``[x1, x2, x3, x4, t >> 31, t & (2^31-1)]`` with multiplier
  ``K`` modulo the prime ``P = 2^31 - 1``;
* per row ``(fold(K1)^2 mod P, fold(K2)^2 mod P)``; per table the count and the two sums.

A digest is a sum, so it is maintained incrementally (add the new rows, subtract the old) and
split into buckets by id prefix to find where two sides differ. Every intermediate stays below
2^63. Pure: imports neither supabase nor SQLAlchemy.
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
    "bucket_sums",
    "merge_buckets",
    "row_digest_columns",
    "server_total",
    "total",
]

P: Final = 2_147_483_647  # 2^31 - 1, prime
K1: Final = 1_103_515_245
K2: Final = 48_271
T_OFFSET: Final = 1 << 55
DIGEST_MODULUS: Final = 1 << 61
#: Buckets used to locate differences: the first three hex digits of the id (4,096 buckets).
BUCKET_PREFIX: Final = 3
_ISO_UTC: Final = "%Y-%m-%dT%H:%M:%S%.6fZ"


@dataclass(frozen=True, slots=True)
class Digest:
    """Row count and the two digest sums of a set of rows; adds and subtracts like a multiset."""

    count: int = 0
    s1: int = 0
    s2: int = 0

    def __add__(self, other: Digest) -> Digest:
        return Digest(self.count + other.count, self.s1 + other.s1, self.s2 + other.s2)

    def __sub__(self, other: Digest) -> Digest:
        return Digest(self.count - other.count, self.s1 - other.s1, self.s2 - other.s2)

    @property
    def value(self) -> int:
        """The digest as the server reports it: ``(s1 * 2^31 + s2) mod 2^61``."""
        return (self.s1 * (1 << 31) + self.s2) % DIGEST_MODULUS

    def agrees_with(self, server: tuple[int, int] | None) -> bool:
        """Whether the server's ``(row_count, digest)`` (None: no rows) is this digest."""
        if server is None:
            return self.count == 0 and self.value == 0
        return self.count == server[0] and self.value == server[1]


def server_total(buckets: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """The ``(row_count, digest)`` of a table from the server's per-bucket rows."""
    return (sum(count for count, _ in buckets.values()),
            sum(value for _, value in buckets.values()) % DIGEST_MODULUS)


#: table -> bucket -> digest (an empty bucket is absent).
TableDigests = dict[str, dict[str, Digest]]


def _fold(parts: list[pl.Expr], k: int) -> pl.Expr:
    acc: pl.Expr = pl.lit(0, dtype=pl.Int64)
    for part in parts:
        acc = (acc * k + part) % P
    return acc


def row_digest_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``bucket``, ``r1``, ``r2`` for each row of a frame with ``id`` and ``updated_at``.

    ``id`` is a lowercase uuid string; ``updated_at`` the cache's ISO-8601 UTC text with six
    fractional digits (or a polars datetime).
    """
    hex_id = pl.col("id").str.to_lowercase().str.replace_all("-", "", literal=True)
    updated = pl.col("updated_at")
    if frame.schema.get("updated_at") == pl.String:
        updated = updated.str.to_datetime(_ISO_UTC, time_unit="us", time_zone="UTC")
    t = updated.dt.epoch("us").cast(pl.Int64) + T_OFFSET
    parts = [hex_id.str.slice(i * 8, 8).str.to_integer(base=16).cast(pl.Int64)
             for i in range(4)]
    parts += [t // (1 << 31), t % (1 << 31)]
    f1, f2 = _fold(parts, K1), _fold(parts, K2)
    return frame.select(
        pl.col("id").str.to_lowercase().str.slice(0, BUCKET_PREFIX).alias("bucket"),
        (f1 * f1 % P).alias("r1"),
        (f2 * f2 % P).alias("r2"),
    )


def bucket_sums(frame: pl.DataFrame) -> dict[str, Digest]:
    """Per-bucket digests of a frame with ``id`` and ``updated_at``."""
    if frame.height == 0:
        return {}
    sums = (row_digest_columns(frame).group_by("bucket")
            .agg(pl.len().alias("n"), pl.col("r1").sum(), pl.col("r2").sum()))
    return {bucket: Digest(int(n), int(s1), int(s2))
            for bucket, n, s1, s2 in sums.iter_rows()}


def total(buckets: Mapping[str, Digest] | Iterable[Digest]) -> Digest:
    """The sum of some digests (e.g. every bucket of a table)."""
    values = buckets.values() if isinstance(buckets, Mapping) else buckets
    result = Digest()
    for digest in values:
        result = result + digest
    return result


def merge_buckets(base: Mapping[str, Digest], delta: Mapping[str, Digest],
                  sign: int = 1) -> dict[str, Digest]:
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
