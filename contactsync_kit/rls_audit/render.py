"""Rendering the report as text and tables: the matrix ordered for a table with names, and
the markdown summary. Pure (the heat map, drawn with matplotlib, is `heatmap`).

The summary reads any report shaped like `_Report` (`report.AuditReport` is one), so
this module does not import `report`, which imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final, Protocol

import polars as pl

from .frames import ALL_ORGANISATIONS, ANON_USER, probe_rank, table_rank

__all__ = [
    "ALL_ORGANISATIONS_NAME",
    "explain_leaks",
    "matrix_view",
    "organisation_labels",
    "summary_markdown",
]
__io__ = "none"

#: How the ``*`` bucket (counts across all organisations) reads next to organisation names.
ALL_ORGANISATIONS_NAME: Final = "all organisations"


class _Report(Protocol):
    """What `summary_markdown` reads of a report (`report.AuditReport` has it all)."""

    @property
    def generated_at(self) -> datetime: ...
    @property
    def matrix(self) -> pl.DataFrame: ...
    @property
    def checks(self) -> pl.DataFrame: ...
    @property
    def lint(self) -> pl.DataFrame | None: ...
    @property
    def surface(self) -> pl.DataFrame | None: ...
    @property
    def surface_diff(self) -> pl.DataFrame | None: ...
    @property
    def surface_not_probed(self) -> dict[str, str]: ...
    @property
    def organisation_names(self) -> dict[str, str]: ...
    @property
    def leak_sources(self) -> pl.DataFrame: ...
    @property
    def passed(self) -> bool: ...
    def leaks(self) -> pl.DataFrame: ...
    def unaccepted_surface(self) -> pl.DataFrame: ...


def organisation_labels(organisation_names: Mapping[str, str] | None = None) -> dict[str, str]:
    """`organisation_names` (id -> name) plus the ``*`` bucket's name, for `widgets.table`."""
    return {**(organisation_names or {}), ALL_ORGANISATIONS: ALL_ORGANISATIONS_NAME}


def matrix_view(matrix: pl.DataFrame) -> pl.DataFrame:
    """The matrix ordered for reading: failing cells first (most leaked first), then by
    user, organisation, table and probe in the audit's order; the verdict and the counts
    up front, the request error (if any) last. Pure; every id kept whole.

    Show it with names: ``table(matrix_view(report.matrix),
    names=organisation_labels(report.organisation_names))``.
    """
    return matrix.sort(
        pl.col("verdict") == "pass",
        pl.col("leaked").fill_null(0),
        pl.col("missing").fill_null(0),
        "user",
        "organisation_id",
        table_rank(pl.col("table")),
        "table",
        probe_rank(pl.col("probe")),
        descending=[False, True, True, False, False, False, False, False],
        maintain_order=True,
    ).select(
        "verdict",
        "user",
        "organisation_id",
        "access",
        "table",
        "probe",
        "visible",
        "expected",
        "leaked",
        "missing",
        "error",
    )


def summary_markdown(report: _Report, *, max_cells: int = 25) -> str:
    """A short markdown summary: verdict, counts, failing cells, leaks outside the audited
    organisations, failed checks, the exposed surface and its diff, the lint with fixes.
    """
    m = report.matrix
    failing = m.filter(pl.col("verdict") != "pass")
    lines = _headline(report, failing)
    if failing.height:
        lines += _failing_cells(report, failing, max_cells)
    lines += _sources_section(report.leak_sources)
    outside = report.leaks().filter(pl.col("outside_audited_set"))
    if outside.height:
        lines += ["", "## Leaks outside the audited organisations", ""]
        lines += [
            f"- {r['user']} sees {r['leaked']} row(s) of {r['table']} in "
            f"{_org(report, r['organisation_id'])} ({r['probe']})"
            for r in outside.head(max_cells).iter_rows(named=True)
        ]
    bad_checks = report.checks.filter(~pl.col("passed"))
    if bad_checks.height:
        lines += ["", "## Failed checks", ""]
        lines += [
            f"- {r['check']}: {r['user'] or ''} {r['organisation_id'] or ''} "
            f"{r['table'] or ''} — {r['detail']}"
            for r in bad_checks.iter_rows(named=True)
        ]
    lines += _surface_section(report)
    if report.lint is not None and report.lint.height:
        lines += ["", "## Policy lint", ""]
        lines += [
            f"- {r['severity']}: {r['rule']} on {r['schema']}.{r['table']}"
            f"{' (' + r['policy'] + ')' if r['policy'] else ''} — {r['detail']}. "
            f"Fix: `{r['fix']}`"
            for r in report.lint.iter_rows(named=True)
        ]
    return "\n".join(lines) + "\n"


def explain_leaks(sources: pl.DataFrame) -> str:
    """One line per row of `leak_sources` (`LEAK_SOURCES_SCHEMA`): the policy (or exposed
    object) that lets rows through, how they leak, to whom, what the lint says, and the fix.
    Empty when nothing leaked.
    """
    lines = []
    for r in sources.iter_rows(named=True):
        through = (
            f"policy {r['policy']} on {r['table']}"
            + (f" (USING {r['using']})" if r["using"] else "")
            if r["policy"]
            else r["table"]
        )
        flagged = f"; the lint flags it: {r['lint']}" if r["lint"] else ""
        lines.append(
            f"- {through}: {r['leak']} ({r['rows']} row(s), seen by {r['callers']}){flagged}. "
            f"Fix: `{r['fix']}`"
        )
    return "\n".join(lines)


def _sources_section(sources: pl.DataFrame) -> list[str]:
    if sources.is_empty():
        return []
    return ["", "## Where the leaked rows come through", "", explain_leaks(sources)]


def _org(report: _Report, organisation_id: str) -> str:
    return report.organisation_names.get(organisation_id, organisation_id)


def _organisations(matrix: pl.DataFrame) -> int:
    """Organisations in the matrix: the ``*`` bucket of counts across all is not one."""
    orgs = matrix.get_column("organisation_id")
    return int(orgs.filter(orgs != ALL_ORGANISATIONS).n_unique())


def _headline(report: _Report, failing: pl.DataFrame) -> list[str]:
    m = report.matrix
    users = m.filter(pl.col("user") != ANON_USER).get_column("user").n_unique()
    lines = [
        f"# RLS scoping audit — {'PASS' if report.passed else 'FAIL'}",
        "",
        f"- generated at {report.generated_at.isoformat(timespec='seconds')}",
        f"- {users} user(s) (+ anon key) x {_organisations(m)} "
        f"organisation(s) x {m.get_column('table').n_unique()} table(s): "
        f"{m.height} probe cells, {m.height - failing.height} pass, {failing.height} failing",
        f"- rows leaked: {int(m.get_column('leaked').fill_null(0).sum())}, "
        f"rows missing: {int(m.get_column('missing').fill_null(0).sum())}",
        f"- checks: {report.checks.filter(pl.col('passed')).height} passed, "
        f"{report.checks.filter(~pl.col('passed')).height} failed",
    ]
    if report.surface is not None:
        lines.append(
            f"- exposed surface: {report.surface.height} object(s), "
            f"{report.unaccepted_surface().height} not accepted"
        )
    if report.lint is not None:
        counts = report.lint.group_by("severity").len().sort("severity").rows()
        lines.append(
            "- policy lint: "
            + (", ".join(f"{n} {s}" for s, n in counts) if counts else "no findings")
        )
    return lines


def _failing_cells(report: _Report, failing: pl.DataFrame, max_cells: int) -> list[str]:
    lines = [
        "",
        "## Failing cells",
        "",
        "| user | organisation | table | probe | visible | expected | leaked | missing | error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in failing.head(max_cells).iter_rows(named=True):
        lines.append(
            f"| {row['user']} | {_org(report, row['organisation_id'])}"
            f" | {row['table']} | {row['probe']} | {row['visible']} | {row['expected']} | "
            f"{row['leaked']} | {row['missing']} | {row['error'] or ''} |"
        )
    if failing.height > max_cells:
        lines.append(f"| … {failing.height - max_cells} more | | | | | | | | |")
    return lines


def _surface_section(report: _Report) -> list[str]:
    if report.surface is None:
        return []
    lines = [
        "",
        "## Exposed surface",
        "",
        "| kind | object | grants | probed |",
        "|---|---|---|---|",
    ]
    for r in report.surface.iter_rows(named=True):
        label = f"{r['schema']}.{r['name']}"
        probed = report.surface_not_probed.get(label, "yes")
        lines.append(f"| {r['kind']} | {label} | {r['grants']} | {probed} |")
    if report.surface_diff is not None and report.surface_diff.height:
        lines += ["", "Against the expected surface:", ""]
        lines += [f"- {change}: `{entry}`" for change, entry in report.surface_diff.rows()]
    return lines
