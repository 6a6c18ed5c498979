"""The audit matrix and the checks beyond counts: probe results against ground truth. Pure."""

from __future__ import annotations

from typing import Any, Final

import polars as pl

from .expectation import probe_expectation, settle_surface_rows, spread_unfiltered
from .frames import (
    ANON_USER,
    CHECKS_SCHEMA,
    COUNT_PROBES,
    DISCREPANCY_SCHEMA,
    MATRIX_SCHEMA,
    OBSERVED_SCHEMA,
    REQUESTED_SCHEMA,
    RUN_KEYS,
    RUNS_SCHEMA,
    probe_rank,
    table_rank,
)
from .truth import access_frame

__all__ = ["audit_checks", "audit_matrix"]
__io__ = "none"

_S = pl.String()


def audit_matrix(
    runs: pl.DataFrame,
    observed: pl.DataFrame,
    expected: pl.DataFrame,
    universe: pl.DataFrame,
    requested: pl.DataFrame | None = None,
    members: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The audit matrix and the ids behind it. Pure.

    For every probe run (`RUNS_SCHEMA`), ``visible`` is what the server showed (the rows in
    `observed`, or the number for a count probe; a denied request shows 0), ``expected``
    what it should have shown per `expected` (restricted to root rows matching the search for
    the searches and to the requested ids for ``foreign_ids``; see `expectation` for the
    probes across all organisations and the exposed surface), ``leaked`` the visible rows that
    were not expected and ``missing`` the expected rows that were not visible (for ``count``,
    the difference of the numbers). ``verdict`` is ``pass``, ``fail`` or ``error`` (the
    request failed other than by being denied).

    Returns (`MATRIX_SCHEMA` frame, `DISCREPANCY_SCHEMA` frame naming leaked/missing ids).
    """
    requested = requested if requested is not None else pl.DataFrame(schema=REQUESTED_SCHEMA)
    runs = runs.select(list(RUNS_SCHEMA)).cast(RUNS_SCHEMA).unique(subset=RUN_KEYS, keep="first")
    seen = settle_surface_rows(observed, universe).select([*RUN_KEYS, "id"]).unique()
    want = probe_expectation(runs, seen, expected, universe, requested, members)
    runs = spread_unfiltered(runs, seen, want)
    leaked, missing = _differences(runs, seen, want)
    discrepancies = (
        pl.concat([leaked, missing])
        .select(list(DISCREPANCY_SCHEMA))
        .cast(DISCREPANCY_SCHEMA)
        .sort([*RUN_KEYS, "kind", "id"])
    )
    matrix = _with_verdicts(_tallied(runs, seen, want, leaked, missing))
    return _ordered(_with_access(matrix, members)), discrepancies


_FAILED: Final = pl.col("error_kind").is_not_null() & ~pl.col("denied").fill_null(False)
_DENIED: Final = pl.col("denied").fill_null(False)
_IS_COUNT: Final = pl.col("probe").is_in(list(COUNT_PROBES))


def _differences(
    runs: pl.DataFrame,
    seen: pl.DataFrame,
    want: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(leaked, missing) ids: seen but not wanted, wanted but not seen (not for counts)."""
    leaked = seen.join(want, on=[*RUN_KEYS, "id"], how="anti").with_columns(
        pl.lit("leaked").alias("kind")
    )
    missing = (
        want.join(seen, on=[*RUN_KEYS, "id"], how="anti")
        .join(
            runs.filter(~_IS_COUNT).select(RUN_KEYS),
            on=RUN_KEYS,
            how="semi",
        )
        .with_columns(pl.lit("missing").alias("kind"))
    )
    return leaked, missing


#: What the server showed: nothing for a failed request, 0 when denied, the number for a
#: count, else the rows seen.
_VISIBLE: Final = (
    pl.when(_FAILED)
    .then(None)
    .when(_DENIED)
    .then(0)
    .when(_IS_COUNT)
    .then(pl.col("count"))
    .otherwise(pl.col("_seen").fill_null(0))
)
#: Rows seen but not expected (for a count, the excess of the number).
_LEAKED: Final = (
    pl.when(_FAILED)
    .then(None)
    .when(_IS_COUNT)
    .then((pl.col("visible") - pl.col("expected")).clip(lower_bound=0))
    .otherwise(pl.col("_leaked").fill_null(0))
)
#: Rows expected but not seen (for a count, the shortfall; when denied, all expected).
_MISSING: Final = (
    pl.when(_FAILED)
    .then(None)
    .when(_IS_COUNT)
    .then((pl.col("expected") - pl.col("visible")).clip(lower_bound=0))
    .when(_DENIED)
    .then(pl.col("expected"))
    .otherwise(pl.col("_missing").fill_null(0))
)
#: The request's error in words: ``denied`` or the error kind, with its code.
_ERROR: Final = (
    pl.when(pl.col("error_kind").is_null())
    .then(None)
    .otherwise(
        pl.format(
            "{}{}",
            pl.when(_DENIED).then(pl.lit("denied")).otherwise(pl.col("error_kind")),
            pl.when(pl.col("error_code").is_not_null())
            .then(pl.format(" [{}]", pl.col("error_code")))
            .otherwise(pl.lit("")),
        )
    )
)


def _tallied(
    runs: pl.DataFrame,
    seen: pl.DataFrame,
    want: pl.DataFrame,
    leaked: pl.DataFrame,
    missing: pl.DataFrame,
) -> pl.DataFrame:
    """Each run with its numbers: visible, expected, leaked, missing and the error text."""

    def tally(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.group_by(RUN_KEYS).agg(pl.len().cast(pl.Int64).alias(name))

    return (
        runs.join(tally(seen, "_seen"), on=RUN_KEYS, how="left")
        .join(tally(want, "expected"), on=RUN_KEYS, how="left")
        .join(tally(leaked, "_leaked"), on=RUN_KEYS, how="left")
        .join(tally(missing, "_missing"), on=RUN_KEYS, how="left")
        .with_columns(_VISIBLE.alias("visible"), pl.col("expected").fill_null(0))
        .with_columns(_LEAKED.alias("leaked"), _MISSING.alias("missing"), _ERROR.alias("error"))
    )


def _with_verdicts(matrix: pl.DataFrame) -> pl.DataFrame:
    return matrix.with_columns(
        pl.when(_FAILED)
        .then(pl.lit("error"))
        .when((pl.col("leaked") == 0) & (pl.col("missing") == 0))
        .then(pl.lit("pass"))
        .otherwise(pl.lit("fail"))
        .alias("verdict")
    )


def _with_access(matrix: pl.DataFrame, members: pl.DataFrame | None) -> pl.DataFrame:
    access = (
        access_frame(members)
        if members is not None
        else pl.DataFrame(schema={"user": _S, "organisation_id": _S, "access": _S})
    )
    return (
        matrix.join(access, on=["user", "organisation_id"], how="left")
        .with_columns(pl.col("access").fill_null("not a member"))
        .select(list(MATRIX_SCHEMA))
        .cast(MATRIX_SCHEMA)
    )


def _ordered(matrix: pl.DataFrame) -> pl.DataFrame:
    """Users, then organisations, then tables parents first, then probes in declared order."""
    return (
        matrix.with_columns(
            table_rank(pl.col("table")).alias("_t"), probe_rank(pl.col("probe")).alias("_p")
        )
        .sort(["user", "organisation_id", "_t", "table", "_p"])
        .drop("_t", "_p")
    )


def audit_checks(observed: pl.DataFrame, matrix: pl.DataFrame) -> pl.DataFrame:
    """Checks beyond counts (`CHECKS_SCHEMA`). Pure.

    * ``org_filter_respected`` — every row returned for an organisation says it belongs to it;
    * ``disjoint_across_organisations`` — no row is visible to a user under two organisations;
    * ``embedded_match_parent`` — every embedded row carries the organisation and id of the
      root row it came embedded under;
    * ``anon_sees_nothing`` — the anon key alone sees no row of any table.

    Every check that ran and found nothing leaves one passing row, so the report shows it ran.
    """
    obs = observed.select(list(OBSERVED_SCHEMA)).cast(OBSERVED_SCHEMA)
    embedded = obs.filter(pl.col("parent_id").is_not_null())
    anon = matrix.filter(pl.col("user") == ANON_USER)
    failures = [
        *_wrong_organisation(obs),
        *_overlapping(obs),
        *_embedded_mismatch(embedded),
        *_anon_visible(anon),
    ]
    ran = {
        "org_filter_respected": f"{obs.height} returned row(s) checked",
        "disjoint_across_organisations": f"{obs.height} returned row(s) checked",
    }
    if embedded.height:
        ran["embedded_match_parent"] = f"{embedded.height} embedded row(s) checked"
    if anon.height:
        ran["anon_sees_nothing"] = f"{anon.height} probe(s) with the anon key"
    failed = {row[0] for row in failures}
    passes = [
        (check, None, None, None, 0, True, detail)
        for check, detail in ran.items()
        if check not in failed
    ]
    return pl.DataFrame([*failures, *passes], schema=CHECKS_SCHEMA, orient="row").sort(
        ["passed", "check", "user", "organisation_id", "table"], nulls_last=True
    )


_Check = tuple[str, Any, Any, Any, int, bool, str]


def _wrong_organisation(obs: pl.DataFrame) -> list[_Check]:
    wrong = obs.filter(
        pl.col("row_organisation_id").is_not_null()
        & (pl.col("row_organisation_id") != pl.col("organisation_id"))
    )
    return [
        (
            "org_filter_respected",
            user,
            org,
            table,
            group.height,
            False,
            f"{group.height} row(s) returned for this organisation belong to another",
        )
        for (user, org, table), group in _groups(wrong, ["user", "organisation_id", "table"])
    ]


def _overlapping(obs: pl.DataFrame) -> list[_Check]:
    spread = (
        obs.group_by(["user", "table", "id"])
        .agg(
            pl.col("organisation_id").n_unique().alias("orgs"),
            pl.col("row_organisation_id").drop_nulls().n_unique().alias("row_orgs"),
        )
        .filter((pl.col("orgs") > 1) | (pl.col("row_orgs") > 1))
    )
    return [
        (
            "disjoint_across_organisations",
            user,
            None,
            table,
            group.height,
            False,
            f"{group.height} row(s) visible under more than one organisation",
        )
        for (user, table), group in _groups(spread, ["user", "table"])
    ]


def _embedded_mismatch(embedded: pl.DataFrame) -> list[_Check]:
    bad = embedded.filter(
        (pl.col("row_organisation_id") != pl.col("parent_organisation_id")).fill_null(True)
        | (pl.col("row_parent_id") != pl.col("parent_id")).fill_null(True)
    )
    return [
        (
            "embedded_match_parent",
            user,
            org,
            table,
            group.height,
            False,
            f"{group.height} embedded row(s) disagree with the row they came embedded under",
        )
        for (user, org, table), group in _groups(bad, ["user", "organisation_id", "table"])
    ]


def _anon_visible(anon: pl.DataFrame) -> list[_Check]:
    seen = anon.filter(pl.col("visible").fill_null(0) > 0)
    return [
        (
            "anon_sees_nothing",
            ANON_USER,
            None,
            table,
            int(group.get_column("visible").sum()),
            False,
            "the anon key alone sees rows of this table",
        )
        for (table,), group in _groups(seen, ["table"])
    ]


def _groups(frame: pl.DataFrame, keys: list[str]) -> list[tuple[tuple[Any, ...], pl.DataFrame]]:
    if frame.is_empty():
        return []
    return sorted(
        ((tuple(k), g) for k, g in frame.group_by(keys)),
        key=lambda item: tuple(str(v) for v in item[0]),
    )
