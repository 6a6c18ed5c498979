"""The pure core of the verified incremental sync: what to ask for, where the cache differs.

`delta.py` sequences the requests and the cache; the decisions are here, on frames and plain
mappings, so they are unit-tested without a server or a cache (like PowerSync's
``validate_checkpoint``):

* `changed_since` — the bound of a table's changes-since query: the newest change the cache
  already holds, minus the safety window;
* `newest_change` — the newest ``updated_at`` after a batch of changes;
* `differing_buckets` — the id buckets whose digest differs between the cache and the server;
* `plan_reconcile` — inside those buckets, which ids to fetch again and which are gone.

Imports neither supabase nor SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta

import polars as pl

from .digest import BUCKET_PREFIX, Digest

__all__ = [
    "ServerBuckets",
    "changed_since",
    "differing_buckets",
    "newest_change",
    "plan_reconcile",
]

__io__ = "none"

#: The server's digest: table -> bucket -> ``(row_count, digest)`` (an empty bucket is absent).
ServerBuckets = Mapping[str, Mapping[str, tuple[int, int]]]


def changed_since(newest: str, window: timedelta) -> str:
    """The ``since`` bound of a changes query: `newest` (ISO-8601 UTC) minus `window`.

    The window re-reads rows committed late with an older ``updated_at``.
    """
    bound = datetime.fromisoformat(newest.replace("Z", "+00:00")) - window
    return bound.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def newest_change(frame: pl.DataFrame, previous: str | None) -> str | None:
    """The newest ``updated_at`` of `frame` and `previous` (None: nothing seen yet)."""
    if frame.height == 0:
        return previous
    newest = str(frame.get_column("updated_at").max())
    return newest if previous is None or newest > previous else previous


def differing_buckets(
    cache: Mapping[str, Mapping[str, Digest]], server: ServerBuckets
) -> dict[str, set[str]]:
    """Per table, the buckets whose row count or digest differs between the two sides.

    A bucket only one side has differs (unless it is empty there too). Every table of
    either side is in the result, with an empty set when it agrees.
    """
    result: dict[str, set[str]] = {}
    for table in [*cache, *(t for t in server if t not in cache)]:
        mine, theirs = cache.get(table, {}), server.get(table, {})
        result[table] = {
            bucket
            for bucket in mine.keys() | theirs.keys()
            if not mine.get(bucket, Digest()).agrees_with(theirs.get(bucket))
        }
    return result


def _micros(column: str) -> pl.Expr:
    return pl.col(column).str.to_datetime(time_zone="UTC", time_unit="us").dt.epoch("us")


def plan_reconcile(
    server: pl.DataFrame,
    cached: pl.DataFrame,
    changes: pl.DataFrame,
    buckets: Collection[str],
) -> tuple[list[str], set[str]]:
    """Inside `buckets`: the ids to fetch again, and the ids gone from the server.

    `server` and `cached` hold ``id`` and ``updated_at`` of the rows in the buckets on each
    side; `changes` the rows this delta already fetched (they count as cached). An id is
    fetched when the server's timestamp differs from the cached one or the cache lacks it;
    it is gone when only the cache has it. Timestamps compare as instants, whatever their
    text form.
    """
    wanted = sorted(buckets)
    theirs = server.select("id", _micros("updated_at").alias("server_us"))
    mine = (
        pl.concat([cached.select("id", "updated_at"), changes.select("id", "updated_at")])
        .unique("id", keep="last", maintain_order=True)
        .filter(pl.col("id").str.slice(0, BUCKET_PREFIX).is_in(wanted))
        .select("id", _micros("updated_at").alias("local_us"))
    )
    joined = theirs.join(mine, on="id", how="full", coalesce=True)
    stale = joined.filter(
        pl.col("server_us").is_not_null()
        & (pl.col("local_us").is_null() | (pl.col("local_us") != pl.col("server_us")))
    )
    gone = set(joined.filter(pl.col("server_us").is_null()).get_column("id").to_list())
    return stale.get_column("id").to_list(), gone
