"""The audit's disk I/O: writing a report's files, reading and writing the expected-surface
file (its format is in `surface`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .render import summary_markdown
from .report import AuditReport
from .surface import parse_surface_lines, surface_lines

__all__ = ["export_report", "load_expected_surface", "write_expected_surface"]
__io__ = "disk"

_HEADER = """\
# The exposed surface this project accepts: every relation and function the API roles
# (anon, authenticated) may reach through the schemas PostgREST exposes.
# One entry a line: <kind> <schema>.<name> <roles>. The RLS audit fails on any exposed object
# (or role reaching it) not listed here; review it, then add its line to accept it.
"""


def load_expected_surface(path: str | Path) -> list[str]:
    """The entries of the expected-surface file at `path`."""
    return parse_surface_lines(Path(path).read_text(encoding="utf-8"))


def write_expected_surface(surface: pl.DataFrame, path: str | Path) -> Path:
    """Accept the current surface: write it as the expected-surface file at `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_HEADER + "\n".join(surface_lines(surface)) + "\n", encoding="utf-8")
    return target


def export_report(report: AuditReport, directory: str | Path) -> dict[str, Path]:
    """Write the matrix (CSV + Parquet), discrepancies, checks, lint and a markdown summary.

    Returns name -> path. The files hold ids, counts and test-user labels only.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "matrix_csv": folder / "rls_audit_matrix.csv",
        "matrix_parquet": folder / "rls_audit_matrix.parquet",
        "discrepancies_csv": folder / "rls_audit_discrepancies.csv",
        "checks_csv": folder / "rls_audit_checks.csv",
        "summary_md": folder / "rls_audit_summary.md",
    }
    report.matrix.write_csv(paths["matrix_csv"])
    report.matrix.write_parquet(paths["matrix_parquet"])
    report.discrepancies.write_csv(paths["discrepancies_csv"])
    report.checks.write_csv(paths["checks_csv"])
    if report.lint is not None:
        paths["lint_csv"] = folder / "rls_audit_lint.csv"
        report.lint.write_csv(paths["lint_csv"])
    paths["summary_md"].write_text(summary_markdown(report), encoding="utf-8")
    return paths
