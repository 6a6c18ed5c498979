"""`AuditReport`, the audit's result, and `evaluate`, which builds one from probe results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from .frames import OBSERVED_SCHEMA, REQUESTED_SCHEMA, RUN_KEYS, RUNS_SCHEMA
from .lint import ERROR
from .matrix import audit_checks, audit_matrix
from .render import summary_markdown
from .truth import GroundTruth

__all__ = ["AuditReport", "evaluate"]




@dataclass(frozen=True)
class AuditReport:
    """The audit's result.

    `matrix` (`MATRIX_SCHEMA`) is the heart; `discrepancies` names the leaked / missing ids;
    `checks` are the checks beyond counts; `lint` the policy findings (None without a
    database URL). `passed` is true when every cell and check passes and the lint found no
    error.
    """

    generated_at: datetime
    matrix: pl.DataFrame
    discrepancies: pl.DataFrame
    checks: pl.DataFrame
    lint: pl.DataFrame | None = None
    organisation_names: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every cell and check passes, and the lint has no error-level finding."""
        lint_ok = self.lint is None or self.lint.filter(pl.col("severity") == ERROR).is_empty()
        return (self.matrix.filter(pl.col("verdict") != "pass").is_empty()
                and bool(self.checks.get_column("passed").all()) and lint_ok)

    def failing_cells(self) -> pl.DataFrame:
        """The matrix rows that do not pass."""
        return self.matrix.filter(pl.col("verdict") != "pass")

    def leaked_cells(self) -> set[tuple[str, str, str, str]]:
        """(user, organisation_id, table, probe) of every cell that leaked rows."""
        leaked = self.matrix.filter(pl.col("leaked").fill_null(0) > 0)
        return {(u, o, t, p) for u, o, t, p in leaked.select(RUN_KEYS).rows()}

    def summary(self) -> str:
        """A per-table/probe tally of the matrix, as text."""
        tally = (self.matrix.group_by(["table", "probe"], maintain_order=True)
                 .agg(pl.len().alias("cells"),
                      (pl.col("verdict") == "pass").sum().alias("pass"),
                      pl.col("visible").fill_null(0).sum().alias("visible"),
                      pl.col("expected").sum().alias("expected"),
                      pl.col("leaked").fill_null(0).sum().alias("leaked"),
                      pl.col("missing").fill_null(0).sum().alias("missing")))
        head = (f"RLS audit: {'PASS' if self.passed else 'FAIL'} — {self.matrix.height} cells, "
                f"{self.failing_cells().height} failing, "
                f"{self.checks.filter(~pl.col('passed')).height} failed check(s)"
                + ("" if self.lint is None else f", {self.lint.height} lint finding(s)"))
        lines = [head, f"{'table':<22}{'probe':<13}{'cells':>6}{'pass':>6}{'visible':>9}"
                       f"{'expected':>9}{'leaked':>8}{'missing':>8}"]
        for row in tally.iter_rows(named=True):
            lines.append(f"{row['table']:<22}{row['probe']:<13}{row['cells']:>6}{row['pass']:>6}"
                         f"{row['visible']:>9}{row['expected']:>9}{row['leaked']:>8}"
                         f"{row['missing']:>8}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """`summary_markdown` of this report."""
        return summary_markdown(self)



def evaluate(runs: Sequence[tuple[Any, ...]] | pl.DataFrame,
             observed: Sequence[tuple[Any, ...]] | pl.DataFrame,
             requested: Sequence[tuple[Any, ...]] | pl.DataFrame,
             ground_truth: GroundTruth, *, lint: pl.DataFrame | None = None,
             generated_at: datetime, organisation_names: Mapping[str, str] | None = None,
             ) -> AuditReport:
    """Turn collected probe results into an `AuditReport`. Pure."""
    def frame(data: Sequence[tuple[Any, ...]] | pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
        if isinstance(data, pl.DataFrame):
            return data.select(list(schema)).cast(schema)
        return pl.DataFrame(list(data), schema=schema, orient="row")

    observed_frame = frame(observed, OBSERVED_SCHEMA)
    matrix, discrepancies = audit_matrix(
        frame(runs, RUNS_SCHEMA), observed_frame, ground_truth.expected_rows(),
        ground_truth.universe, frame(requested, REQUESTED_SCHEMA), ground_truth.members)
    return AuditReport(
        generated_at=generated_at, matrix=matrix, discrepancies=discrepancies,
        checks=audit_checks(observed_frame, matrix), lint=lint,
        organisation_names=dict(organisation_names or {}))
