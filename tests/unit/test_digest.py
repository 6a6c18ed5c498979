"""The pure digest: PostgreSQL's hashes reproduced in numpy, and the multiset arithmetic."""

from __future__ import annotations

import importlib
import random
import uuid
from pathlib import Path

import polars as pl
import pytest

from contactsync_kit import digest
from contactsync_kit.digest import (
    DIGEST_MODULUS,
    Digest,
    bucket_bounds,
    bucket_sums,
    combine_digest_batches,
    digest_batch,
    fold_digest_batch,
    merge_buckets,
    row_digest_columns,
    server_total,
    table_bucket_sums,
    total,
)

# uuid_hash_extended(id, timestamp_hash_extended(ts AT TIME ZONE 'UTC', 0)) as PostgreSQL 18
# computed it: the epoch of PostgreSQL timestamps, an ordinary moment, and one before 2000
# (a negative timestamp takes hashint8extended's other branch).
POSTGRES_VECTORS = [
    ("00000000-0000-0000-0000-000000000000", "2000-01-01T00:00:00.000000Z", -2491856804090659200),
    ("6a0a939e-8ebb-4387-9717-48210e3b9cef", "2026-11-26T16:25:57.123456Z", -7402360217502658848),
    ("ffffffff-ffff-4fff-bfff-ffffffffffff", "1999-12-31T23:59:59.999999Z", -6391345893872674363),
]


def frame(rows: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"id": pl.String, "updated_at": pl.String}, orient="row")


def tagged(parts: dict[str, list[tuple[str, str]]]) -> pl.DataFrame:
    """Several tables' rows as one frame with a ``table`` column."""
    return pl.concat(
        [
            frame(rows).select(pl.lit(t).alias("table"), "id", "updated_at")
            for t, rows in parts.items()
        ]
    )


def random_rows(rng: random.Random, n: int) -> list[tuple[str, str]]:
    rows = []
    for _ in range(n):
        h = f"{rng.getrandbits(128):032x}"
        moment = (
            f"20{rng.randrange(10, 40)}-{rng.randrange(1, 13):02d}-"
            f"{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:"
            f"{rng.randrange(60):02d}.{rng.randrange(10**6):06d}Z"
        )
        rows.append((f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", moment))
    return rows


@pytest.mark.parametrize(("row_id", "updated_at", "postgres_hash"), POSTGRES_VECTORS)
def test_each_rows_hash_is_postgresqls(row_id: str, updated_at: str, postgres_hash: int) -> None:
    row = row_digest_columns(frame([(row_id, updated_at)])).row(0, named=True)
    assert row["r1"] * 2**32 + row["r2"] == postgres_hash % DIGEST_MODULUS
    assert row["bucket"] == row_id[:3]


def test_uppercase_ids_and_datetime_columns_hash_like_the_cache_text() -> None:
    rows = [(i.upper(), t) for i, t, _ in POSTGRES_VECTORS]
    as_text = row_digest_columns(frame([(i, t) for i, t, _ in POSTGRES_VECTORS]))
    upper = row_digest_columns(frame(rows))
    parsed = frame(rows).with_columns(
        pl.col("updated_at").str.to_datetime(time_unit="us", time_zone="UTC")
    )
    assert upper.equals(as_text)
    assert row_digest_columns(parsed).equals(as_text)


def test_the_digest_is_order_independent_and_additive() -> None:
    rows = random_rows(random.Random(3), 500)
    whole = total(bucket_sums(frame(rows)))
    shuffled = rows[:]
    random.Random(4).shuffle(shuffled)
    assert total(bucket_sums(frame(shuffled))) == whole
    halves = total(bucket_sums(frame(rows[:200]))) + total(bucket_sums(frame(rows[200:])))
    assert halves == whole and whole.count == 500


def test_any_change_of_id_or_timestamp_changes_the_digest() -> None:
    rows = random_rows(random.Random(5), 50)
    base = total(bucket_sums(frame(rows))).value
    row_id, moment = rows[7]
    later = moment[:-2] + str((int(moment[-2]) + 1) % 10) + "Z"  # one microsecond-ish off
    other_id = ("0" if row_id[0] != "0" else "1") + row_id[1:]
    for changed in ((row_id, later), (other_id, moment)):
        assert total(bucket_sums(frame([*rows[:7], changed, *rows[8:]]))).value != base
    assert total(bucket_sums(frame(rows[:-1]))).value != base


def test_merging_buckets_adds_and_subtracts_and_drops_emptied_buckets() -> None:
    rows = random_rows(random.Random(6), 300)
    everything = bucket_sums(frame(rows))
    part = bucket_sums(frame(rows[:100]))
    rest = merge_buckets(everything, part, sign=-1)
    assert rest == bucket_sums(frame(rows[100:]))
    assert merge_buckets(rest, part) == everything
    assert merge_buckets(part, part, sign=-1) == {}


def test_agreement_with_the_servers_numbers() -> None:
    digest = Digest(2, 5, 7)
    assert digest.agrees_with((2, 5 * 2**32 + 7))
    assert not digest.agrees_with((3, 5 * 2**32 + 7))
    assert not digest.agrees_with(None)
    assert Digest().agrees_with(None)
    assert server_total({"a": (1, DIGEST_MODULUS - 1), "b": (2, 3)}) == (3, 2)


def test_bucket_bounds_cover_exactly_the_ids_with_that_prefix() -> None:
    assert bucket_bounds("abc") == (
        "abc00000-0000-0000-0000-000000000000",
        "abd00000-0000-0000-0000-000000000000",
    )
    assert bucket_bounds("fff") == ("fff00000-0000-0000-0000-000000000000", None)
    low, high = bucket_bounds("0f")
    assert low <= "0f123456-0000-0000-0000-000000000000" < str(high)


@pytest.mark.parametrize("module", ["digest", "delta", "delta_store", "verify"])
def test_the_delta_modules_declare_all(module: str) -> None:
    mod = importlib.import_module(f"contactsync_kit.{module}")
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_the_digest_module_is_pure() -> None:
    source = Path(importlib.import_module("contactsync_kit.digest").__file__ or "").read_text()
    for name in ("supabase", "sqlalchemy", "httpx", "postgrest"):
        assert f"import {name}" not in source and f"from {name}" not in source


def test_one_call_for_several_tables_equals_one_call_per_table() -> None:
    rng = random.Random(8)
    parts = {"contacts": random_rows(rng, 40), "notes": random_rows(rng, 120)}
    mixed = tagged(parts)
    assert table_bucket_sums(mixed) == {t: bucket_sums(frame(r)) for t, r in parts.items()}


def test_batches_hashed_apart_add_up_to_the_whole_with_the_newest_timestamps() -> None:
    rng = random.Random(9)
    parts = {"contacts": random_rows(rng, 60), "notes": random_rows(rng, 150)}
    mixed = tagged(parts).sample(fraction=1.0, shuffle=True, seed=3)
    batches = [digest_batch([mixed.slice(start, 70)]) for start in range(0, mixed.height, 70)]
    sums, newest = combine_digest_batches(batches)
    assert sums == table_bucket_sums(mixed)
    assert newest == {
        t: max(row[1] for row in frame(rows).iter_rows()) for t, rows in parts.items()
    }
    assert combine_digest_batches([]) == ({}, {})


def test_batches_folded_one_after_another_add_up_to_the_whole() -> None:
    rng = random.Random(10)
    parts = {"contacts": random_rows(rng, 80), "notes": random_rows(rng, 200)}
    mixed = tagged(parts).sample(fraction=1.0, shuffle=True, seed=4)
    running = None
    for start in range(0, mixed.height, 50):
        running = fold_digest_batch(running, [mixed.slice(start, 50)])
        # The total keeps one row per table and bucket, however many batches went in.
        assert running[0].height == running[0].select("table", "bucket").n_unique()
    assert running is not None
    assert combine_digest_batches([running]) == combine_digest_batches([digest_batch([mixed])])


def test_the_fixed_width_reading_agrees_with_polars_parsing() -> None:
    # Uuids and the cache's timestamps are read from their bytes by numpy; polars' parsing
    # (kept for any other form) must give the same words and microseconds.
    rng = random.Random(3)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(2000)]
    ids[:2] = [ids[0].upper(), "00000000-0000-0000-0000-000000000000"]
    stamps = [
        f"{rng.randrange(1, 10000):04d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}."
        f"{rng.randrange(10**6):06d}Z"
        for _ in range(2000)
    ]
    stamps[:3] = [
        "2024-02-29T23:59:59.999999Z",
        "1999-12-31T23:59:59.000001Z",
        "2000-01-01T00:00:00.000000Z",
    ]
    frame = pl.DataFrame({"id": ids, "updated_at": stamps})
    words, micros = digest.uuid_words(frame["id"]), digest.pg_micros(frame["updated_at"])
    parsed_words, parsed_micros = digest.parsed_words_and_micros(frame)
    assert words is not None and micros is not None
    assert all((a == b).all() for a, b in zip(words, parsed_words, strict=True))
    assert (micros == parsed_micros).all()
    # Not the fixed forms: left to polars.
    for stamp in ("2023-02-29T00:00:00.000000Z", "2023-02-2xT00:00:00.000000Z", "2023-02-28"):
        assert digest.pg_micros(pl.Series([stamp])) is None
    assert digest.uuid_words(pl.Series(["g" * 8 + "-0000-0000-0000-" + "0" * 12])) is None
