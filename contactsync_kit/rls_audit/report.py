"""`AuditReport`, the audit's result, and `evaluate`, which builds one from probe results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from .expectation import settle_surface_rows
from .frames import (
    LEAK_SOURCES_SCHEMA,
    LINT_SCHEMA,
    OBSERVED_SCHEMA,
    REQUESTED_SCHEMA,
    RUN_KEYS,
    RUNS_SCHEMA,
    SURFACE_DIFF_SCHEMA,
    probe_rank,
    table_rank,
)
from .lint import ERROR
from .matrix import audit_checks, audit_matrix
from .render import summary_markdown
from .sources import leak_sources
from .truth import GroundTruth

__all__ = ["AuditReport", "evaluate"]
__io__ = "none"


@dataclass(frozen=True)
class AuditReport:
    """The audit's result.

    `matrix` (`MATRIX_SCHEMA`) is the heart; `discrepancies` names the leaked / missing ids;
    `checks` are the checks beyond counts; `lint` the policy findings, `surface` the exposed
    surface (`SURFACE_SCHEMA`) and `surface_diff` its difference from the expected-surface
    file (all None without a database URL; the diff also without that file);
    `surface_not_probed` says why an exposed object was not probed. `audited_organisations`
    is the set the caller named; the probes across all organisations reach beyond it.
    `requests` is the number of HTTP requests the audit made (None when not counted).
    `complete` is false when the audit was stopped early (SIGTERM, Ctrl-C): the report then
    holds what was probed, `callers` says how many callers finished and `claims_probed` how
    many users the claims probe covered; `sampled_organisations` are those probed one by one.
    `leak_sources` (`LEAK_SOURCES_SCHEMA`, see `sources.leak_sources`) names, for every table
    or object that leaked, the policy that lets the rows through and its fix.
    `passed` is true when the audit completed, every cell and check passes, the lint found
    no error and nothing was added to the expected surface.
    """

    generated_at: datetime
    matrix: pl.DataFrame
    discrepancies: pl.DataFrame
    checks: pl.DataFrame
    lint: pl.DataFrame | None = None
    organisation_names: dict[str, str] = field(default_factory=dict)
    surface: pl.DataFrame | None = None
    surface_diff: pl.DataFrame | None = None
    surface_not_probed: dict[str, str] = field(default_factory=dict)
    audited_organisations: tuple[str, ...] = ()
    requests: int | None = None
    complete: bool = True
    callers: int | None = None
    claims_probed: int | None = None
    sampled_organisations: tuple[str, ...] = ()
    leak_sources: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=LEAK_SOURCES_SCHEMA)
    )

    @property
    def passed(self) -> bool:
        """Every cell and check passes, the lint has no error-level finding and the exposed
        surface has nothing that was not accepted.
        """
        lint_ok = self.lint is None or self.lint.filter(pl.col("severity") == ERROR).is_empty()
        return (
            self.complete
            and self.matrix.filter(pl.col("verdict") != "pass").is_empty()
            and bool(self.checks.get_column("passed").all())
            and lint_ok
            and self.unaccepted_surface().is_empty()
        )

    def unaccepted_surface(self) -> pl.DataFrame:
        """The expected-surface diff's ``added`` entries: exposed, not accepted."""
        if self.surface_diff is None:
            return pl.DataFrame(schema=SURFACE_DIFF_SCHEMA)
        return self.surface_diff.filter(pl.col("change") == "added")

    def errors(self) -> pl.DataFrame:
        """The lint's error-level findings (empty without a lint)."""
        if self.lint is None:
            return pl.DataFrame(schema=LINT_SCHEMA)
        return self.lint.filter(pl.col("severity") == ERROR)

    def leaks(self) -> pl.DataFrame:
        """Every cell that leaked rows: user, organisation, table, probe, rows leaked, and
        whether the organisation lies outside the audited set.
        """
        audited = list(self.audited_organisations)
        return self.matrix.filter(pl.col("leaked").fill_null(0) > 0).select(
            *RUN_KEYS,
            "leaked",
            (~pl.col("organisation_id").is_in(audited)).alias("outside_audited_set"),
        )

    def failing_cells(self) -> pl.DataFrame:
        """The matrix rows that do not pass."""
        return self.matrix.filter(pl.col("verdict") != "pass")

    def leaked_cells(self) -> set[tuple[str, str, str, str]]:
        """(user, organisation_id, table, probe) of every cell that leaked rows."""
        leaked = self.matrix.filter(pl.col("leaked").fill_null(0) > 0)
        return {(u, o, t, p) for u, o, t, p in leaked.select(RUN_KEYS).rows()}

    def summary(self) -> str:
        """A per-table/probe tally of the matrix, as text."""
        tally = (
            self.matrix.group_by(["table", "probe"], maintain_order=True)
            .agg(
                pl.len().alias("cells"),
                (pl.col("verdict") == "pass").sum().alias("pass"),
                pl.col("visible").fill_null(0).sum().alias("visible"),
                pl.col("expected").sum().alias("expected"),
                pl.col("leaked").fill_null(0).sum().alias("leaked"),
                pl.col("missing").fill_null(0).sum().alias("missing"),
            )
            .sort(
                table_rank(pl.col("table")),
                "table",
                probe_rank(pl.col("probe")),
            )
        )
        head = (
            f"RLS audit: {'PASS' if self.passed else 'FAIL'}"
            + ("" if self.complete else " (stopped early: partial)")
            + f" — {self.matrix.height} cells, "
            f"{self.failing_cells().height} failing, "
            f"{self.checks.filter(~pl.col('passed')).height} failed check(s)"
            + (
                ""
                if self.lint is None
                else f", {self.lint.height} lint finding(s) ({self.errors().height} error(s))"
            )
            + (
                ""
                if self.surface_diff is None
                else f", {self.unaccepted_surface().height} exposed object(s) not accepted"
            )
        )
        lines = [
            head,
            f"{'table':<22}{'probe':<13}{'cells':>6}{'pass':>6}{'visible':>9}"
            f"{'expected':>9}{'leaked':>8}{'missing':>8}",
        ]
        for row in tally.iter_rows(named=True):
            lines.append(
                f"{row['table']:<22}{row['probe']:<13}{row['cells']:>6}{row['pass']:>6}"
                f"{row['visible']:>9}{row['expected']:>9}{row['leaked']:>8}"
                f"{row['missing']:>8}"
            )
        return "\n".join(lines)

    def markdown(self) -> str:
        """`summary_markdown` of this report."""
        return summary_markdown(self)


def _frame(data: Sequence[tuple[Any, ...]] | pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Collected rows (or a frame) as a frame of `schema`."""
    if isinstance(data, pl.DataFrame):
        return data.select(list(schema)).cast(schema)
    return pl.DataFrame(list(data), schema=schema, orient="row")


def evaluate(
    runs: Sequence[tuple[Any, ...]] | pl.DataFrame,
    observed: Sequence[tuple[Any, ...]] | pl.DataFrame,
    requested: Sequence[tuple[Any, ...]] | pl.DataFrame,
    ground_truth: GroundTruth,
    *,
    lint: pl.DataFrame | None = None,
    generated_at: datetime,
    organisation_names: Mapping[str, str] | None = None,
    surface: pl.DataFrame | None = None,
    surface_diff: pl.DataFrame | None = None,
    surface_not_probed: Mapping[str, str] | None = None,
    audited_organisations: Sequence[str] = (),
    requests: int | None = None,
    complete: bool = True,
    callers: int | None = None,
    claims_probed: int | None = None,
    sampled_organisations: Sequence[str] = (),
    policies: pl.DataFrame | None = None,
    tables: pl.DataFrame | None = None,
) -> AuditReport:
    """Turn collected probe results into an `AuditReport`. Pure.

    `policies` and `tables` (the catalog's, see `lint.PolicyCatalog`) let the report name
    the policy behind each leak (`AuditReport.leak_sources`).
    """

    observed_frame = settle_surface_rows(_frame(observed, OBSERVED_SCHEMA), ground_truth.universe)
    matrix, discrepancies = audit_matrix(
        _frame(runs, RUNS_SCHEMA),
        observed_frame,
        ground_truth.expected_rows(),
        ground_truth.universe,
        _frame(requested, REQUESTED_SCHEMA),
        ground_truth.members,
    )
    return AuditReport(
        leak_sources=leak_sources(
            matrix,
            discrepancies,
            ground_truth.members,
            policies=policies,
            tables=tables,
            lint=lint,
        ),
        generated_at=generated_at,
        matrix=matrix,
        discrepancies=discrepancies,
        checks=audit_checks(observed_frame, matrix),
        lint=lint,
        organisation_names=dict(organisation_names or {}),
        surface=surface,
        surface_diff=surface_diff,
        surface_not_probed=dict(surface_not_probed or {}),
        audited_organisations=tuple(o.lower() for o in audited_organisations),
        requests=requests,
        complete=complete,
        callers=callers,
        claims_probed=claims_probed,
        sampled_organisations=tuple(sampled_organisations),
    )
