"""What each probe should have returned if the policies were right. Pure.

Probes filtered to one organisation expect the rows ground truth lets the caller see there.
Probes across all organisations (``all_*``) run once and are spread over the organisations of
the rows they saw and of the rows they should have seen, so a leak is named with its own
organisation even outside the audited set; their counts stay under ``*``. Rows of an exposed
view or function (``surface``) are settled to the organisation of the row with that id; a row
is allowed if ground truth lets the caller see that id (or, for an id ground truth does not
know, if the caller is a member of the organisation the row names).
"""

from __future__ import annotations

import polars as pl

from .frames import (
    ALL_ORGANISATIONS,
    OBSERVED_SCHEMA,
    RUN_KEYS,
    SURFACE_PROBES,
    UNFILTERED_PROBES,
    Probe,
)

__all__ = ["probe_expectation", "settle_surface_rows", "spread_unfiltered"]
__io__ = "none"

_UNKNOWN_ORG = "?"
_IS_SURFACE = pl.col("probe").is_in(list(SURFACE_PROBES))


def settle_surface_rows(observed: pl.DataFrame, universe: pl.DataFrame) -> pl.DataFrame:
    """`observed` with each ``surface`` row under the organisation ground truth gives its id
    (else the organisation the row names, else ``?``).
    """
    absent = [
        pl.lit(None, dtype).alias(name)
        for name, dtype in OBSERVED_SCHEMA.items()
        if name not in observed.columns
    ]  # a bare (keys + id) frame is accepted too
    observed = observed.with_columns(absent).select(list(OBSERVED_SCHEMA)).cast(OBSERVED_SCHEMA)
    owners = universe.select("id", pl.col("organisation_id").alias("_owner")).unique("id")
    return (
        observed.join(owners, on="id", how="left")
        .with_columns(
            pl.when(_IS_SURFACE)
            .then(pl.coalesce("_owner", "row_organisation_id", pl.lit(_UNKNOWN_ORG)))
            .otherwise(pl.col("organisation_id"))
            .alias("organisation_id"),
        )
        .drop("_owner")
    )


def _name_matches(universe: pl.DataFrame) -> pl.DataFrame:
    # Only the root table's rows are searched, so only they carry a name match.
    return universe.filter(pl.col("name_match").fill_null(False)).select("organisation_id", "id")


def probe_expectation(
    runs: pl.DataFrame,
    seen: pl.DataFrame,
    expected: pl.DataFrame,
    universe: pl.DataFrame,
    requested: pl.DataFrame,
    members: pl.DataFrame | None,
) -> pl.DataFrame:
    """Expected ids per probe run (``RUN_KEYS`` + ``id``)."""
    keys = [*RUN_KEYS, "id"]
    probe = pl.col("probe")
    filtered = runs.filter(pl.col("organisation_id") != ALL_ORGANISATIONS).select(RUN_KEYS)
    base = filtered.unique().join(expected, on=["user", "organisation_id", "table"])
    search = base.filter(probe == Probe.SEARCH.value).join(
        _name_matches(universe), on=["organisation_id", "id"], how="semi"
    )
    foreign = base.filter(probe == Probe.FOREIGN_IDS.value).join(
        requested.select(keys), on=keys, how="semi"
    )
    plain = base.filter(~probe.is_in([Probe.SEARCH.value, Probe.FOREIGN_IDS.value]))
    everywhere = (
        runs.filter(pl.col("organisation_id") == ALL_ORGANISATIONS)
        .select("user", "table", "probe")
        .unique()
        .join(expected, on=["user", "table"])
    )
    unfiltered = everywhere.filter(
        probe.is_in([Probe.ALL_ROWS.value, Probe.ALL_EMBEDDED.value, Probe.CLAIMS.value])
    )
    all_search = everywhere.filter(probe == Probe.ALL_SEARCH.value).join(
        _name_matches(universe), on=["organisation_id", "id"], how="semi"
    )
    counted = everywhere.filter(probe == Probe.ALL_COUNT.value).with_columns(
        pl.lit(ALL_ORGANISATIONS).alias("organisation_id")
    )
    parts = [
        plain,
        search,
        foreign,
        unfiltered,
        all_search,
        counted,
        _allowed_surface_rows(seen, expected, universe, members),
    ]
    return pl.concat([p.select(keys) for p in parts]).unique()


def _allowed_surface_rows(
    seen: pl.DataFrame, expected: pl.DataFrame, universe: pl.DataFrame, members: pl.DataFrame | None
) -> pl.DataFrame:
    rows = seen.filter(_IS_SURFACE)
    known = rows.join(universe.select("id"), on="id", how="semi").join(
        expected.select("user", "organisation_id", "id"),
        on=["user", "organisation_id", "id"],
        how="semi",
    )
    member_of = (
        members.select("user", "organisation_id").unique()
        if members is not None
        else pl.DataFrame(schema={"user": pl.String, "organisation_id": pl.String})
    )
    unknown = rows.join(universe.select("id"), on="id", how="anti").join(
        member_of, on=["user", "organisation_id"], how="semi"
    )
    return pl.concat([known, unknown])


def spread_unfiltered(
    runs: pl.DataFrame,
    seen: pl.DataFrame,
    want: pl.DataFrame,
) -> pl.DataFrame:
    """Replace each ``*`` run of a row-returning unfiltered probe by one run per organisation
    it saw or should have seen; a run that saw and expected nothing stays under ``*``.
    """
    star = runs.filter(
        (pl.col("organisation_id") == ALL_ORGANISATIONS)
        & pl.col("probe").is_in(list(UNFILTERED_PROBES))
    )
    rest = runs.join(star.select(RUN_KEYS), on=RUN_KEYS, how="anti")
    where = (
        pl.concat([seen.select(RUN_KEYS), want.select(RUN_KEYS)])
        .filter(pl.col("probe").is_in(list(UNFILTERED_PROBES)))
        .unique()
    )
    spread = (
        star.drop("organisation_id").join(where, on=["user", "table", "probe"]).select(runs.columns)
    )
    empty = star.join(where, on=["user", "table", "probe"], how="anti")
    return pl.concat([rest, spread, empty])
