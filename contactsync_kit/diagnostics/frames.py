"""The frame half of the diagnosis: row diff, sync-log summary and per-table facts.

Pure polars frame-to-frame functions with declared schemas; imports neither supabase nor
SQLAlchemy, and touches neither network nor disk.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import Final

import polars as pl

from ..schemas import DATA_TABLES, table_schema

__all__ = [
    "DIFF_SCHEMA",
    "LOG_SUMMARY_SCHEMA",
    "TABLE_FACTS_SCHEMA",
    "UTC_TS",
    "DiffStatus",
    "compare_rows",
    "normalise_log",
    "per_organisation",
    "summarise_log",
    "table_facts",
]

__io__ = "none"

#: Every instant in these frames: microseconds, UTC.
UTC_TS: Final = pl.Datetime("us", "UTC")


class DiffStatus(enum.StrEnum):
    """How one row differs between the cache and the server."""

    MISSING_LOCALLY = "missing_locally"  # on the server, not in the cache
    GONE_FROM_SERVER = "gone_from_server"  # in the cache, no longer visible on the server
    NEWER_ON_SERVER = "newer_on_server"  # both, but the server's updated_at is later


#: The row diff: ids and timestamps only.
DIFF_SCHEMA: Final = pl.Schema(
    {
        "organisation_id": pl.String(),
        "table": pl.String(),
        "id": pl.String(),
        "status": pl.String(),
        "local_updated_at": UTC_TS,
        "server_updated_at": UTC_TS,
    }
)

#: `summarise_log`'s output: one row per organisation in the sync log.
LOG_SUMMARY_SCHEMA: Final = pl.Schema(
    {
        "organisation_id": pl.String(),
        "attempts": pl.Int64(),
        "last_attempt_at": UTC_TS,
        "last_attempt_outcome": pl.String(),
        "last_success_at": UTC_TS,
        "failures_since_success": pl.Int64(),
        "last_error_at": UTC_TS,
        "last_error_kind": pl.String(),
        "last_error_code": pl.String(),
        "last_error_status": pl.Int64(),
        "last_error_message": pl.String(),
    }
)

#: Per organisation and table: counts, newest `updated_at` on each side, diff counts.
TABLE_FACTS_SCHEMA: Final = pl.Schema(
    {
        "organisation_id": pl.String(),
        "table": pl.String(),
        "local_rows": pl.Int64(),
        "server_rows": pl.Int64(),
        "local_newest_updated_at": UTC_TS,
        "server_newest_updated_at": UTC_TS,
        "missing_locally": pl.Int64(),
        "gone_from_server": pl.Int64(),
        "newer_on_server": pl.Int64(),
    }
)

#: The cache's ``sync_log`` table as `ContactCache.read_table` returns it.
_SYNC_LOG_SCHEMA: Final = table_schema("sync_log")


# -- the row diff ---------------------------------------------------------------------------


def _normalise_rows(frame: pl.DataFrame, keys: list[str], side: str) -> pl.DataFrame:
    updated = frame.schema.get("updated_at")
    if updated is None:
        stamp = pl.lit(None, dtype=UTC_TS)
    elif updated == pl.String():
        # The cache writes ...Z, PostgREST ...+00:00: parse both into one instant type.
        stamp = pl.col("updated_at").str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    elif isinstance(updated, pl.Datetime):
        stamp = (
            pl.col("updated_at").dt.replace_time_zone("UTC")
            if updated.time_zone is None
            else pl.col("updated_at").dt.convert_time_zone("UTC")
        ).dt.cast_time_unit("us")
    else:
        stamp = pl.col("updated_at").cast(UTC_TS)
    return frame.select(
        *[pl.col(key).cast(pl.String()) for key in keys],
        pl.col("id").cast(pl.String()).str.to_lowercase(),
        stamp.alias(f"{side}_updated_at"),
        pl.lit(True).alias(f"_{side}"),
    ).unique(subset=[*keys, "id"], keep="last", maintain_order=True)


def compare_rows(local: pl.DataFrame, server: pl.DataFrame) -> pl.DataFrame:
    """The rows that differ between the cache (`local`) and the server (`server`).

    Both frames need ``id`` and ``updated_at`` (ISO-8601 text in either the cache's ``…Z`` or
    PostgREST's ``…+00:00`` form, or datetimes). When both also carry ``organisation_id``
    and/or ``table`` those are part of the key. Returns `DIFF_SCHEMA`: one row per differing
    id with status ``missing_locally`` (only on the server), ``gone_from_server`` (only in the
    cache) or ``newer_on_server`` (the server's ``updated_at`` is later or the cache's is
    unreadable). Rows that agree, and rows newer in the cache, are left out.
    """
    keys: list[str] = [
        key
        for key in ("organisation_id", "table")
        if key in local.columns and key in server.columns
    ]
    joined = _normalise_rows(local, keys, "local").join(
        _normalise_rows(server, keys, "server"),
        on=[*keys, "id"],
        how="full",
        coalesce=True,
    )
    local_ts, server_ts = pl.col("local_updated_at"), pl.col("server_updated_at")
    status = (
        pl.when(pl.col("_local").is_null())
        .then(pl.lit(DiffStatus.MISSING_LOCALLY.value))
        .when(pl.col("_server").is_null())
        .then(pl.lit(DiffStatus.GONE_FROM_SERVER.value))
        .when(server_ts.is_not_null() & (local_ts.is_null() | (server_ts > local_ts)))
        .then(pl.lit(DiffStatus.NEWER_ON_SERVER.value))
        .otherwise(pl.lit(None, dtype=pl.String()))
    )
    missing_keys = [
        pl.lit(None, dtype=pl.String()).alias(key)
        for key in ("organisation_id", "table")
        if key not in keys
    ]
    return (
        joined.with_columns(status.alias("status"), *missing_keys)
        .filter(pl.col("status").is_not_null())
        .select(list(DIFF_SCHEMA))
        .cast(DIFF_SCHEMA)
        .sort(["organisation_id", "table", "status", "id"], nulls_last=True)
    )


# -- the sync log ---------------------------------------------------------------------------


def normalise_log(log: pl.DataFrame) -> pl.DataFrame:
    """`log` with exactly the sync log's columns and types (the cache's ``sync_log`` columns).

    Columns it lacks are null; extra columns are dropped.
    """
    columns = [
        (pl.col(name) if name in log.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in _SYNC_LOG_SCHEMA.items()
    ]
    return log.select(columns)


def summarise_log(sync_log: pl.DataFrame) -> pl.DataFrame:
    """One row per organisation of the sync log (`LOG_SUMMARY_SCHEMA`).

    `sync_log` is the cache's ``sync_log`` table as `ContactCache.read_table` returns it.
    ``failures_since_success`` counts failed attempts after the last success (all of them
    when there was none).
    """
    log = (
        normalise_log(sync_log)
        .with_columns(
            pl.col("started_at").str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
        )
        .sort(["organisation_id", "started_at", "id"], nulls_last=True)
    )
    failure = pl.col("outcome") != "success"
    success = pl.col("outcome") == "success"
    last_success = pl.col("started_at").filter(success).max()
    return (
        log.group_by("organisation_id", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64()).alias("attempts"),
            pl.col("started_at").last().alias("last_attempt_at"),
            pl.col("outcome").last().alias("last_attempt_outcome"),
            last_success.alias("last_success_at"),
            (failure & (pl.col("started_at") > last_success).fill_null(True))
            .sum()
            .cast(pl.Int64())
            .alias("failures_since_success"),
            pl.col("started_at").filter(failure).last().alias("last_error_at"),
            pl.col("error_kind").filter(failure).last().alias("last_error_kind"),
            pl.col("error_code").filter(failure).last().alias("last_error_code"),
            pl.col("http_status").filter(failure).last().alias("last_error_status"),
            pl.col("message").filter(failure).last().alias("last_error_message"),
        )
        .select(list(LOG_SUMMARY_SCHEMA))
        .cast(LOG_SUMMARY_SCHEMA)
        .sort("organisation_id")
    )


# -- per-table facts ------------------------------------------------------------------------


def table_facts(
    local_rows: pl.DataFrame,
    server_rows: pl.DataFrame,
    server_counts: pl.DataFrame | None = None,
    *,
    equal: Collection[str] = (),
) -> pl.DataFrame:
    """Counts, newest ``updated_at`` and diff counts per organisation and table.

    `local_rows` and `server_rows` hold ``organisation_id``, ``table``, ``id``, ``updated_at``.
    `server_counts` (``organisation_id``, ``table``, ``server_rows``), when given, is the
    server's ``count=exact`` and wins over counting `server_rows`; it also says which
    organisations and tables the server was asked about: the others get null server and diff
    columns (unknown, not zero). `equal` names organisations whose cache the server's digest
    proved equal to the server: their rows were not listed, so they are not compared, and
    their diff counts are zero (their server counts come from `server_counts`).
    """
    keys = ["organisation_id", "table"]
    local_stats, server_stats = _stats(local_rows, "local"), _stats(server_rows, "server")
    if server_counts is not None:
        server_stats = server_counts.select(
            pl.col("organisation_id").cast(pl.String()),
            pl.col("table").cast(pl.String()),
            pl.col("server_rows").cast(pl.Int64()),
        ).join(server_stats.drop("server_rows"), on=keys, how="left")
    diff_counts = _diff_counts(local_rows, server_rows, server_counts, equal)
    universe = pl.concat([local_stats.select(keys), server_stats.select(keys)]).unique()
    checked = pl.lit(True) if server_counts is None else pl.col("server_rows").is_not_null()
    return (
        universe.join(local_stats, on=keys, how="left")
        .join(server_stats, on=keys, how="left")
        .join(diff_counts, on=keys, how="left")
        .with_columns(
            pl.col("local_rows").fill_null(0),
            *[
                pl.when(checked).then(pl.col(s.value).fill_null(0)).otherwise(None).alias(s.value)
                for s in DiffStatus
            ],
        )
        .select(list(TABLE_FACTS_SCHEMA))
        .cast(TABLE_FACTS_SCHEMA)
        .sort(keys)
    )


def per_organisation(tables: pl.DataFrame, answered: list[str]) -> pl.DataFrame:
    """`table_facts` folded to one row per organisation.

    Each row has the counts per table, diff totals and the newest ``updated_at`` on each
    side.

    A diff total is null when the server was asked about none of the organisation's tables
    (unknown, not zero); an organisation the server answered for but shows nothing of gets
    zero server counts.
    """

    def of(table: str, column: str) -> pl.Expr:
        return pl.col(column).filter(pl.col("table") == table).first()

    folded = tables.group_by("organisation_id").agg(
        *[
            of(table, f"{side}_rows").alias(f"{side}_{table}")
            for table in DATA_TABLES
            for side in ("local", "server")
        ],
        *[
            pl.when(pl.col(status.value).is_not_null().any())
            .then(pl.col(status.value).sum())
            .alias(status.value)
            for status in DiffStatus
        ],
        pl.col("local_newest_updated_at").max(),
        pl.col("server_newest_updated_at").max(),
    )
    answered_here = pl.col("organisation_id").is_in(answered)
    return folded.with_columns(
        pl.when(answered_here)
        .then(pl.col(f"server_{table}").fill_null(0))
        .otherwise(pl.col(f"server_{table}"))
        .alias(f"server_{table}")
        for table in DATA_TABLES
    )


def _diff_counts(
    local_rows: pl.DataFrame,
    server_rows: pl.DataFrame,
    server_counts: pl.DataFrame | None,
    equal: Collection[str],
) -> pl.DataFrame:
    """Rows per `DiffStatus`, organisation and table, where the server's rows were listed."""
    keys = ["organisation_id", "table"]
    compared = local_rows.select([*keys, "id", "updated_at"])
    if equal:
        compared = compared.filter(~pl.col("organisation_id").cast(pl.String()).is_in(list(equal)))
    if server_counts is not None:
        compared = compared.join(server_counts.select(keys).cast(pl.String()), on=keys, how="semi")
    diff = compare_rows(compared, server_rows.select([*keys, "id", "updated_at"]))
    return diff.group_by(keys).agg(
        (pl.col("status") == s.value).sum().cast(pl.Int64()).alias(s.value) for s in DiffStatus
    )


def _stats(rows: pl.DataFrame, side: str) -> pl.DataFrame:
    """One side's rows and newest ``updated_at`` per organisation and table."""
    keys = ["organisation_id", "table"]
    return (
        _normalise_rows(rows, keys, side)
        .group_by(keys)
        .agg(
            pl.len().cast(pl.Int64()).alias(f"{side}_rows"),
            pl.col(f"{side}_updated_at").max().alias(f"{side}_newest_updated_at"),
        )
    )
