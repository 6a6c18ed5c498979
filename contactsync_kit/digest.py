"""The sync digest: an order-independent fingerprint of a table's ``(id, updated_at)`` pairs.

The server computes it with ``public.contactsync_digest`` (devstack/sql/0005; since 0006 over
the tables the spec names) from PostgreSQL's own hash functions, which cost a fraction of a
microsecond per row:

    h = uuid_hash_extended(id, timestamp_hash_extended(updated_at AT TIME ZONE 'UTC', 0))

and per table (or id bucket) the row count and ``sum(h) mod 2^61``. This module is its twin:
PostgreSQL's hashes are Bob Jenkins' lookup3 (``hash_bytes_extended``/``hashint8extended`` in
src/common/hashfn.c and src/backend/access/hash/hashfunc.c), written here as vectorised
numpy arithmetic on uint32 arrays, which wraps at 2^32 as the C code does (no per-row
Python). A test checks that both sides agree on the same rows.

A digest is a sum, so it is maintained incrementally (add the new rows, subtract the old) and
split into buckets by id prefix to find where two sides differ. Pure: imports neither supabase
nor SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

__all__ = [
    "BUCKET_PREFIX",
    "DIGEST_MODULUS",
    "Digest",
    "DigestTotal",
    "TableDigests",
    "bucket_bounds",
    "bucket_sum_frame",
    "bucket_sums",
    "combine_digest_batches",
    "digest_batch",
    "fold_digest_batch",
    "merge_buckets",
    "parsed_words_and_micros",
    "pg_micros",
    "row_digest_columns",
    "server_total",
    "table_bucket_sums",
    "table_digests",
    "total",
    "uuid_words",
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


# -- lookup3 on numpy uint32 arrays: the arithmetic wraps at 2^32 as the C code's does, and
# every step updates an array in place (no temporary column per step).


def _rot(x: np.ndarray, k: int) -> np.ndarray:
    return (x << np.uint32(k)) | (x >> np.uint32(32 - k))


def _mix(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    for ra, rb, rc in ((4, 6, 8), (16, 19, 4)):
        a -= c
        a ^= _rot(c, ra)
        c += b
        b -= a
        b ^= _rot(a, rb)
        a += c
        c -= b
        c ^= _rot(b, rc)
        b += a


def _final(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    c ^= b
    c -= _rot(b, 14)
    a ^= c
    a -= _rot(c, 11)
    b ^= a
    b -= _rot(a, 25)
    c ^= b
    c -= _rot(b, 16)
    a ^= c
    a -= _rot(c, 4)
    b ^= a
    b -= _rot(a, 14)
    c ^= b
    c -= _rot(b, 24)


def _start(length: int, n: int) -> np.ndarray:
    return np.full(n, (_GOLDEN + length) % _M32, dtype=np.uint32)


def _hashint8extended(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PostgreSQL's ``hashint8extended(t, 0)`` of int64 `t`: its high and low 32-bit words."""
    low = (t & 0xFFFFFFFF).astype(np.uint32)
    high = ((t >> 32) & 0xFFFFFFFF).astype(np.uint32)
    n = len(t)
    a, b, c = _start(4, n), _start(4, n), _start(4, n)
    a += low ^ np.where(t >= 0, high, ~high)  # hashint8's fold of the two halves
    _final(a, b, c)
    return b, c


def _uuid_hash_extended(
    words: list[np.ndarray], seed_hi: np.ndarray, seed_lo: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """PostgreSQL's ``uuid_hash_extended``: the result's high and low 32-bit words.

    lookup3 over the uuid's four little-endian `words`, seeded by `seed_hi`/`seed_lo`.
    """
    n = len(seed_hi)
    a, b, c = _start(16, n), _start(16, n), _start(16, n)
    seeded = (seed_hi != 0) | (seed_lo != 0)
    sa, sb, sc = a + seed_hi, b + seed_lo, c.copy()
    _mix(sa, sb, sc)
    a, b, c = np.where(seeded, sa, a), np.where(seeded, sb, b), np.where(seeded, sc, c)
    a += words[0]
    b += words[1]
    c += words[2]
    _mix(a, b, c)
    a += words[3]
    _final(a, b, c)
    return b, c


def row_digest_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Each row's bucket and hash: ``bucket``, ``r1``, ``r2`` (and ``table`` if present).

    For a frame with ``id`` and ``updated_at``: the row's hash modulo 2^61 as its high 29
    (``r1``) and low 32 bits (``r2``).

    ``id`` is a uuid string; ``updated_at`` the cache's ISO-8601 UTC text with six fractional
    digits (or a polars datetime).
    """
    keep = [pl.col("table")] if "table" in frame.columns else []
    ids, stamps = frame.get_column("id"), frame.get_column("updated_at")
    words = uuid_words(ids)
    t = pg_micros(stamps)
    if words is None or t is None:  # not the fixed forms: polars parses them (and refuses)
        words, t = parsed_words_and_micros(frame)
    seed_hi, seed_lo = _hashint8extended(t)
    high, low = _uuid_hash_extended(words, seed_hi, seed_lo)
    return frame.select(
        *keep, pl.col("id").str.slice(0, BUCKET_PREFIX).str.to_lowercase().alias("bucket")
    ).with_columns(
        r1=pl.Series((high & ((1 << 29) - 1)).astype(np.int64)),
        r2=pl.Series(low.astype(np.int64)),
    )


# The fixed-width forms read straight from their bytes: a uuid's 36 characters (hex digits
# with dashes at 8, 13, 18, 23) and the cache's 27-character timestamp
# (``YYYY-MM-DDTHH:MM:SS.ffffffZ``). Several times cheaper than polars' string parsing; any
# other form (or a null) takes `parsed_words_and_micros`.
_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_UUID_HEX = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_STAMP_PUNCTUATION = {4: b"-", 7: b"-", 10: b"T", 13: b":", 16: b":", 19: b".", 26: b"Z"}
_STAMP_DIGITS = np.array([i for i in range(27) if i not in _STAMP_PUNCTUATION])
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _fixed_bytes(values: pl.Series, width: int) -> np.ndarray | None:
    """`values` as an ``(n, width)`` uint8 array, or None unless all are `width` ASCII bytes."""
    if values.dtype != pl.String or values.null_count():
        return None
    lengths = values.str.len_bytes()
    if lengths.min() != width or lengths.max() != width:
        return None
    text = values.str.join("").item().encode()
    if len(text) != width * values.len():  # some character was not ASCII
        return None
    return np.frombuffer(text, dtype=np.uint8).reshape(-1, width)


def uuid_words(ids: pl.Series) -> list[np.ndarray] | None:
    """The uuids' bytes as lookup3 reads them: each 4-byte group a little-endian word.

    None unless every id is in the canonical 36-character form (then `parsed_words_and_micros`).
    """
    raw = _fixed_bytes(ids, 36)
    if raw is None or (raw[:, [8, 13, 18, 23]] != ord("-")).any():
        return None
    nibbles = _HEX[raw[:, _UUID_HEX]]
    if (nibbles == 255).any():
        return None
    data = np.ascontiguousarray((nibbles[:, 0::2] << 4) | nibbles[:, 1::2])
    words = data.view("<u4")
    return [words[:, i].astype(np.uint32) for i in range(4)]


def pg_micros(stamps: pl.Series) -> np.ndarray | None:
    """Microseconds since PostgreSQL's epoch of the cache's timestamps (real dates only).

    None unless every stamp is in the cache's fixed form (then `parsed_words_and_micros`).
    """
    raw = _fixed_bytes(stamps, 27)
    if raw is None:
        return None
    for position, char in _STAMP_PUNCTUATION.items():
        if (raw[:, position] != char[0]).any():
            return None
    # uint8 arithmetic wraps: anything but a digit comes out above 9.
    if ((raw[:, _STAMP_DIGITS] - np.uint8(ord("0"))) > 9).any():
        return None

    def number(start: int, count: int) -> np.ndarray:
        positions = _STAMP_DIGITS[start : start + count]
        result = raw[:, positions[0]].astype(np.int64) - ord("0")
        for i in positions[1:]:
            result = result * 10 + (raw[:, i].astype(np.int64) - ord("0"))
        return result

    year, month, day = number(0, 4), number(4, 2), number(6, 2)
    hour, minute, second, micro = number(8, 2), number(10, 2), number(12, 2), number(14, 6)
    if ((month < 1) | (month > 12)).any():
        return None
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    last_day = _MONTH_DAYS[month] + ((month == 2) & leap)
    if ((day < 1) | (day > last_day) | (hour > 23) | (minute > 59) | (second > 59)).any():
        return None
    # Days from the civil date (H. Hinnant's algorithm), then PostgreSQL's microseconds.
    shifted = year - (month <= 2)
    era = shifted // 400
    yoe = shifted - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    seconds = ((days * 24 + hour) * 60 + minute) * 60 + second
    result: np.ndarray = seconds * 1_000_000 + micro - _PG_EPOCH_US
    return result


def parsed_words_and_micros(frame: pl.DataFrame) -> tuple[list[np.ndarray], np.ndarray]:
    """`uuid_words` and `pg_micros` of a frame's ``id`` / ``updated_at``, parsed by polars.

    The general path, for any form the fixed-width readers refuse.
    """
    updated = pl.col("updated_at")
    if frame.schema.get("updated_at") == pl.String:
        updated = updated.str.to_datetime(_ISO_UTC, time_unit="us", time_zone="UTC")
    hexes = pl.col("id").str.to_lowercase().str.replace_all("-", "", literal=True)
    parts = frame.select(
        (updated.dt.epoch("us").cast(pl.Int64) - _PG_EPOCH_US).alias("t"),
        *(
            hexes.str.slice(i * 8, 8).str.to_integer(base=16).cast(pl.UInt32).alias(f"w{i}")
            for i in range(4)
        ),
    )
    # The uuid's bytes as lookup3 reads them: each 4-byte group as a little-endian word.
    words = [parts.get_column(f"w{i}").to_numpy().byteswap() for i in range(4)]
    return words, parts.get_column("t").to_numpy()


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


#: Digest sums by table and bucket, and each table's newest ``updated_at`` (`digest_batch`).
DigestTotal = tuple[pl.DataFrame, pl.DataFrame]


def fold_digest_batch(total: DigestTotal | None, frames: list[pl.DataFrame]) -> DigestTotal:
    """`digest_batch` of `frames` added to a running `total` (None: nothing yet).

    The total keeps one row per table and bucket, so folding batch after batch holds the
    memory of one total, not of every batch.
    """
    sums, newest = digest_batch(frames)
    if total is None:
        return sums, newest
    return (
        pl.concat([total[0], sums]).group_by("table", "bucket").agg(pl.col("n", "r1", "r2").sum()),
        pl.concat([total[1], newest]).group_by("table").agg(pl.col("updated_at").max()),
    )


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
