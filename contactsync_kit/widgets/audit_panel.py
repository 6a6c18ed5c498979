"""RLS audit panel: run the scoping audit, see the matrix as a heat map, export it.

A thin view over `AuditModel`, which calls `contactsync_kit.rls_audit` and holds the report.
Drive it without clicks: ``await model.run()``, ``await model.export(directory)``.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import ipywidgets as ipw
import polars as pl
from traitlets import Bool, Bytes, Dict, List, Unicode

from ..clock import Clock
from ..rls_audit import (
    AuditReport,
    AuditUser,
    ClaimsTokens,
    GroundTruth,
    audit_rls,
    export_report,
    ground_truth_from_database,
    heatmap_png,
)
from . import _view
from ._base import PanelModel
from ._panel import Panel, button, scheduled

__all__ = ["AuditModel", "AuditPanel"]

__io__ = "ui, disk"


class _Stack(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def anon_key(self) -> str: ...

    @property
    def database_url(self) -> str: ...


class AuditModel(PanelModel):
    """State and actions of the audit panel.

    Give the API `url` and publishable/anon `anon_key`, the test `users` (credentials and
    expected memberships), the `organisation_ids` to probe, and either a `ground_truth` or a
    `database_url` it is read from (as superuser, ids only). `database_url` also enables the
    exposed-surface inventory and the policy lint; `expected_surface` names the team's
    expected-surface file to diff against. `claims_tokens` (a local stack's
    ``user_metadata_tokens``) adds the claims probe: each user probed again with a token whose
    user_metadata names another organisation. After `run()`, `report` holds the `AuditReport`,
    `passed` its verdict, `failing` the failing cells for the view and `chart` the heat map
    PNG.
    """

    url = Unicode("", help="The Supabase (or local stack) URL.")
    anon_key = Unicode("", help="The publishable / anon key; never a service-role key.")
    database_url = Unicode("", help="Catalog/superuser URL for ground truth and lint.")
    expected_surface = Unicode("", help="Path of the expected-surface file (empty: no diff).")
    organisation_ids: List[str] = List(Unicode(), help="Organisations to probe.")
    organisation_names = Dict(help="Organisation id → name, for labels.")
    passed = Bool(None, allow_none=True, help="The last audit's verdict (None before a run).")
    headline = Unicode("", help="One line: pass/fail and counts.")
    failing: List[dict[str, Any]] = List(help="The failing cells of the last audit.")
    lint_rows: List[dict[str, Any]] = List(help="The policy lint findings.")
    chart = Bytes(b"", help="PNG of the heat map (empty until drawn).")
    exported = Dict(help="Name → path of the last export.")

    def __init__(
        self,
        *,
        users: Iterable[Any] = (),
        ground_truth: GroundTruth | None = None,
        claims_tokens: ClaimsTokens | None = None,
        clock: Clock | None = None,
        draw_chart: bool = True,
        **kwargs: Any,
    ) -> None:
        self.users: list[AuditUser] = [AuditUser.of(u) for u in users]
        self.ground_truth = ground_truth
        self.claims_tokens = claims_tokens
        self.clock = clock
        self.draw_chart = draw_chart
        self.report: AuditReport | None = None
        super().__init__(**kwargs)
        self.say("info", "Press Run audit: every test user signs in and probes every organisation.")

    @classmethod
    def for_stack(cls, stack: _Stack, seeded: Any, **kwargs: Any) -> AuditModel:
        """A model for a local stack and what it was seeded with (`SeedResult`); the claims
        probe runs when the stack can mint tokens with user_metadata.
        """
        kwargs.setdefault("claims_tokens", getattr(stack, "user_metadata_tokens", None))
        return cls(
            url=stack.url,
            anon_key=stack.anon_key,
            database_url=stack.database_url,
            users=seeded.users,
            organisation_ids=list(seeded.organisation_ids),
            organisation_names=dict(seeded.organisation_names),
            **kwargs,
        )

    async def run(self) -> AuditReport | None:
        """Run the audit; returns the report (None when it could not start)."""
        if not self.url or not self.anon_key or not self.users or not self.organisation_ids:
            self.say("warn", "Give the URL, the anon key, test users and organisations first.")
            return None
        ground_truth = self.ground_truth
        if ground_truth is None:
            if not self.database_url:
                self.say("warn", "Give a ground truth or a database URL to read it from.")
                return None
            ground_truth = await asyncio.to_thread(
                ground_truth_from_database,
                self.database_url,
                self.users,
                list(self.organisation_ids),
            )
        self.busy = True
        self.say(
            "busy",
            f"Auditing {len(self.users)} user(s) x {len(self.organisation_ids)} organisation(s)…",
        )
        try:
            report = await audit_rls(
                self.url,
                self.anon_key,
                self.users,
                list(self.organisation_ids),
                ground_truth,
                database_url=self.database_url or None,
                expected_surface=self.expected_surface or None,
                organisation_names=dict(self.organisation_names),
                claims_tokens=self.claims_tokens,
                clock=self.clock,
            )
            if self.draw_chart:
                self.chart = await asyncio.to_thread(
                    heatmap_png, report.matrix, dict(self.organisation_names)
                )
        finally:
            self.busy = False
        self._show(report)
        return report

    def _show(self, report: AuditReport) -> None:
        self.report = report
        self.passed = report.passed
        names = self.organisation_names
        failing = report.failing_cells()
        self.failing = [
            {**row, "organisation": names.get(row["organisation_id"], row["organisation_id"])}
            for row in failing.head(50).iter_rows(named=True)
        ]
        self.lint_rows = [] if report.lint is None else report.lint.to_dicts()
        failed_checks = report.checks.filter(~pl.col("passed")).height
        self.headline = (
            f"{'PASS' if report.passed else 'FAIL'}: {report.matrix.height} probe cells, "
            f"{failing.height} failing; {failed_checks} failed check(s); "
            + ("no lint" if report.lint is None else f"{report.lint.height} lint finding(s)")
        )
        self.say("ok" if report.passed else "error", self.headline)

    async def export(self, directory: str | Path | None = None) -> dict[str, Path]:
        """Write CSV/Parquet/markdown of the last report into `directory` (default: temp)."""
        if self.report is None:
            self.say("warn", "Run the audit first.")
            return {}
        folder = (
            Path(directory)
            if directory is not None
            else Path(tempfile.mkdtemp(prefix="rls-audit-"))
        )
        paths = await asyncio.to_thread(export_report, self.report, folder)
        self.exported = {name: str(path) for name, path in paths.items()}
        self.say("ok", f"Exported {len(paths)} file(s) to {folder}.")
        return paths


_RUN_TIP = "Sign in as every test user and probe"
_EXPORT_TIP = "CSV, Parquet and a markdown summary"


class AuditPanel(Panel[AuditModel]):
    """The view of an `AuditModel`: Run, verdict, heat map, failing cells, lint, Export."""

    title = "RLS scoping audit"
    help_text = (
        "Signs in as each test user (never with the service key) and asks the server for "
        "every organisation's rows in every way the app does; compares with ground truth "
        "and lints the policies."
    )
    watched = ("failing", "lint_rows", "chart", "passed")

    def build(self) -> list[Any]:
        """Run audit, Export, the status line, the heat map, the failing cells and lint."""
        model = self.model
        run, export = (
            scheduled(model, model.run, "The audit"),
            scheduled(model, model.export, "Exporting"),
        )
        self.run_button = button("Run audit", "", run, "shield", _RUN_TIP, "primary")
        self.export_button = button("Export", "", export, "download", _EXPORT_TIP)
        self.image = ipw.Image(format="png", layout=ipw.Layout(max_width="900px"))
        self.cells = ipw.HTML()
        self.lint = ipw.HTML()
        return [
            ipw.HBox([self.run_button, self.export_button]),
            self.status,
            self.image,
            self.cells,
            self.lint,
        ]

    def render(self) -> None:
        """Enable the buttons; show the heat map, the failing cells and the lint."""
        model = self.model
        self.run_button.disabled = model.busy
        self.export_button.disabled = model.busy or model.report is None
        self.image.value = model.chart
        self.image.layout.display = "" if model.chart else "none"
        self.cells.value = _failing_html(model.failing) if model.failing else ""
        self.lint.value = _lint_html(model.lint_rows) if model.lint_rows else ""


def _failing_html(rows: Sequence[Mapping[str, Any]]) -> str:
    body = [
        [
            _view.esc(r["user"]),
            _view.esc(r["organisation"]),
            _view.esc(r["table"]),
            _view.esc(r["probe"]),
            str(r["visible"]),
            str(r["expected"]),
            _view.pill("error", str(r["leaked"])) if r["leaked"] else str(r["leaked"]),
            _view.pill("warn", str(r["missing"])) if r["missing"] else str(r["missing"]),
            _view.esc(r["error"] or ""),
        ]
        for r in rows
    ]
    return _view.table_html(
        [
            "User",
            "Organisation",
            "Table",
            "Probe",
            "Visible",
            "Expected",
            "Leaked",
            "Missing",
            "Error",
        ],
        body,
        numeric=(4, 5, 6, 7),
    )


def _lint_html(rows: Sequence[Mapping[str, Any]]) -> str:
    tones = {"error": "error", "warning": "warn", "info": "info"}
    body = [
        [
            _view.pill(tones.get(r["severity"], "info"), r["severity"]),
            _view.esc(r["rule"]),
            _view.esc(f"{r['schema']}.{r['table']}"),
            _view.esc(r["policy"] or ""),
            _view.esc(r["detail"]),
        ]
        for r in rows
    ]
    return _view.table_html(["Severity", "Rule", "Table", "Policy", "Detail"], body)
