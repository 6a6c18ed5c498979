"""Writing a report to disk: the only module of the audit that does."""

from __future__ import annotations

from pathlib import Path

from .render import summary_markdown
from .report import AuditReport

__all__ = ["export_report"]


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

