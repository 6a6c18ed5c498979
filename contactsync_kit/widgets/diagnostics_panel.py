"""Diagnostics panel: why is this cache stale, what to do, and a support bundle to send.

A thin view over `DiagnosticsModel`, which calls `contactsync_kit.diagnostics` and holds the
result. Drive it without clicks: ``await model.diagnose()``, ``await model.export_bundle()``.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, Final

import ipywidgets as ipw

from ..advice import ADVICE
from ..diagnostics import Diagnosis
from ..schemas import SYNCED_TABLES
from ..staleness import format_age
from . import _view
from ._panel import Panel, button, cancel_controls, scheduled, side_by_side, threshold_field
from .diagnostics_model import (
    CAUSE_WORDS,
    PLAIN_VERDICTS,
    ROWS_SHOWN,
    VERDICT_TONES,
    DiagnosticsModel,
)
from .table_words import ROOT, table_counts

__all__ = [
    "CAUSE_WORDS",
    "PLAIN_VERDICTS",
    "VERDICT_TONES",
    "DiagnosticsModel",
    "DiagnosticsPanel",
]

__io__ = "ui"

_EXPORT_TIP: Final = "Write a support bundle without personal data"
#: The differing-rows grid's headings and column widths.
_DIFFERING_HEADINGS: Final = ("Row", ROOT.noun.capitalize(), "How it differs", "Row id", "")
_DIFFERING_COLUMNS: Final = "7em minmax(10em, 1fr) minmax(14em, 2fr) 7em auto"


class DiagnosticsPanel(Panel[DiagnosticsModel]):
    """The view of a `DiagnosticsModel`: picker, Diagnose (with elapsed time and Cancel), the
    verdict per organisation with counts per table, the rows that differ (each one a link to
    Cached data), the sync history, Export bundle.
    """

    title = "Diagnose"
    help_text = (
        "Compares this machine's cache with what the server shows the signed-in user, says "
        "what is wrong in plain words and what to do, and names the rows that differ."
    )
    watched = ("rows", "differing", "bundle_path", "elapsed", "working")
    status_css = "csk-diagnosis"

    def build(self) -> list[Any]:
        """The picker, the threshold, Diagnose / Cancel / Export and the findings."""
        model = self.model
        self.picker = ipw.Dropdown(
            description="Organisation",
            options=self._options(),
            style={"description_width": "7em"},
            layout=ipw.Layout(width="28em"),
        )
        self.picker.observe(self._picked, names="value")
        model.observe(self._refill, names=["organisations", "organisation_id"])
        self.threshold = threshold_field(model)
        diagnose, compare = model.request, "Compare the cache with the server"
        self.diagnose_button = button(
            "Diagnose", "csk-diagnose", diagnose, "stethoscope", compare, "primary"
        )
        self.cancel_button, self.elapsed = cancel_controls(
            model.cancel, "csk-diagnose", "the diagnosis"
        )
        export = scheduled(model, model.export_bundle, "Writing the bundle")
        self.export_button = button("Export bundle", "", export, "download", _EXPORT_TIP)
        self.table = _view.tag(ipw.HTML(), "csk-verdicts")
        self.rows_box = _view.tag(ipw.VBox(), "csk-differing")
        self.history = ipw.VBox()
        return [
            side_by_side(self.picker, self.threshold, ipw.HTML("&nbsp;hours")),
            side_by_side(
                self.diagnose_button, self.cancel_button, self.elapsed, self.export_button
            ),
            self.status,
            self.table,
            self.rows_box,
            self.history,
        ]

    def _options(self) -> list[tuple[str, str | None]]:
        return [
            ("All organisations", None),
            *[(name, oid) for name, oid in self.model.organisations],
        ]

    def _refill(self, _change: object = None) -> None:
        current = self.model.organisation_id
        self.picker.options = self._options()
        self.picker.value = current if current in dict(self.model.organisations).values() else None

    def _picked(self, change: dict[str, Any]) -> None:
        self.model.organisation_id = change["new"]

    def render(self) -> None:
        """Show the buttons' state, the verdicts, the differing rows and the history."""
        model = self.model
        self.diagnose_button.disabled = model.session is None or model.busy
        self.diagnose_button.description = "Diagnosing…" if model.busy else "Diagnose"
        self.export_button.disabled = model.session is None or model.busy
        self.cancel_button.layout.display = "" if model.working else "none"
        self.elapsed.value = (
            f'<span class="csk-help">&nbsp;{_view.esc(model.elapsed)}&nbsp;</span>'
            if model.working
            else ""
        )
        self.table.value = _rows_html(model.rows) if model.rows else ""
        self._render_differing()
        self._render_history()

    def _render_history(self) -> None:
        diagnosis = self.model.diagnosis
        if diagnosis is None or not self.model.rows:
            shown: list[Any] = []
        elif diagnosis.sync_log.height:
            html = _history_html(diagnosis, self.model.names)
            shown = [_view.tag(ipw.HTML(html), "csk-history")]
        else:
            shown = [ipw.HTML("<b>Sync history</b>: no sync was attempted on this computer yet.")]
        _view.replace_children(self.history, shown)

    def _render_differing(self) -> None:
        rows = self.model.differing
        if not rows:
            _view.replace_children(self.rows_box, [])
            return
        shown = rows[:ROWS_SHOWN]
        cells: list[Any] = [ipw.HTML(f"<b>{h}</b>") for h in _DIFFERING_HEADINGS]
        for found in shown:
            cells += self._differing_cells(found)
        more = f"; the first {len(shown)} are listed" if len(rows) > len(shown) else ""
        heading = ipw.HTML(
            f"<b>Rows that differ</b> <span class='csk-help'>{len(rows)}: "
            f"{_by_table(rows)}{more}</span>"
        )
        grid = ipw.GridBox(
            cells,
            layout=ipw.Layout(
                grid_template_columns=_DIFFERING_COLUMNS, grid_gap="2px 10px", align_items="center"
            ),
        )
        _view.replace_children(self.rows_box, [heading, grid])

    def _differing_cells(self, found: dict[str, Any]) -> list[Any]:
        """One differing row: what it is, its root row, how it differs, its id, a link."""
        contact = _view.esc(found["contact"] or "not cached here")
        if found["name_on_server"] and found["name_on_server"] != found["contact"]:
            contact += (
                f' <span class="csk-help">(on the server: '
                f"{_view.esc(found['name_on_server'])})</span>"
            )
        ids = [found["contact_id"] or found["id"]]
        label = found["contact"] or found["id"]
        show = button(
            "Show in Cached data",
            "csk-show-row",
            lambda: self.model.show_rows(ids, label),
            "search",
            f"Open Cached data filtered to this row's {ROOT.noun}",
            layout=ipw.Layout(width="auto"),
            disabled=not found["contact"],
        )
        show.add_class(f"csk-show-{ids[0]}")
        return [
            ipw.HTML(_view.esc(found["row"])),
            ipw.HTML(contact),
            ipw.HTML(_view.esc(found["difference"])),
            ipw.HTML(
                f'<span class="csk-mono" title="{_view.esc(found["id"])}">'
                f"{_view.esc(found['id'][:8])}…</span>"
            ),
            show,
        ]


def _by_table(rows: list[dict[str, Any]]) -> str:
    """How many differing rows per synced table: "2 contacts, 1 note"."""
    parts = []
    for spec in SYNCED_TABLES:
        n = sum(1 for r in rows if r["table"] == spec.name)
        if n:
            parts.append(f"{n} {spec.noun if n == 1 else spec.plural}")
    return ", ".join(parts)


def _counts_html(row: dict[str, Any]) -> str:
    lines = []
    for spec in SYNCED_TABLES:
        local, server = table_counts(row, spec.name)
        diff = row["table_diffs"].get(spec.name, {})
        parts = [
            f"{n} {word}"
            for key, word in (
                ("missing_locally", "missing"),
                ("gone_from_server", "extra"),
                ("newer_on_server", "newer"),
            )
            if (n := diff.get(key, 0))
        ]
        on_server = "—" if server is None else f"{server:,}"
        extra = f' <span style="color:#9a6700">({", ".join(parts)})</span>' if parts else ""
        lines.append(f"{spec.plural} {local:,} / {on_server}{extra}")
    return "<br>".join(lines)


def _rows_html(rows: list[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        body.append(
            [
                f"<b>{_view.esc(row['label'])}</b>",
                _view.pill(VERDICT_TONES.get(row["verdict"], "info"), row["plain"].split(":")[0])
                + f'<div class="csk-help">copy from {_view.esc(row["age"])} ago</div>'
                + _view.details_html(
                    [
                        ("Verdict", _view.esc(f"{row['plain']} ({row['verdict']})")),
                        ("Cause", _view.esc(f"{row['cause_words']} ({row['cause']})")),
                        (
                            "Id",
                            f'<span class="csk-mono">{_view.esc(row["organisation_id"])}</span>',
                        ),
                    ]
                ),
                _view.esc(row["summary"]),
                f"<b>{_view.esc(row['action'])}</b>",
                _counts_html(row),
                "unknown" if row["differences"] is None else f"{row['differences']:,}",
            ]
        )
    return _view.table_html(
        [
            "Organisation",
            "Verdict",
            "What we found",
            "What to do",
            "Rows cached / on server",
            "Differing",
        ],
        body,
        numeric=(5,),
        wrap=(2, 3),
    )


#: Each sync outcome in words.
_OUTCOMES: Final = {"success": "synced", "failure": "did not work", "cancelled": "cancelled"}


def _when(started: object, now: datetime) -> str:
    with contextlib.suppress(ValueError, TypeError):
        moment = datetime.fromisoformat(str(started).replace("Z", "+00:00"))
        return f"{format_age((now - moment).total_seconds())} ago · {moment:%Y-%m-%d %H:%M} UTC"
    return str(started or "")


#: The sync log's count columns shown behind each entry's "more": pages, then every
#: synced table but the root (whose count has a column of its own).
_LOGGED_COUNTS: Final = (
    ("Pages", "pages"),
    *((spec.title, spec.name) for spec in SYNCED_TABLES if spec is not ROOT),
)


def _history_row(r: dict[str, Any], names: dict[str, str], now: datetime) -> list[str]:
    kind = r.get("error_kind")
    problem = (
        ADVICE_BY_KIND.get(str(kind), str(kind)) if kind and r.get("outcome") != "success" else ""
    )
    verified = r.get("verified")
    details = [
        *((label, f"{r.get(column) or 0:,}") for label, column in _LOGGED_COUNTS),
        ("Error code", _view.esc(f"{kind or '—'} {r.get('error_code') or ''}".strip())),
        ("HTTP status", _view.esc(r.get("http_status") or "—")),
        ("Message", _view.esc(r.get("message") or "—")),
    ]
    org = str(r.get("organisation_id"))
    return [
        _view.esc(_when(r.get("started_at"), now)),
        _view.esc(names.get(org, org[:8])),
        _view.esc(_OUTCOMES.get(str(r.get("outcome")), str(r.get("outcome")))),
        _view.esc({"delta": "only changes", "full": "everything"}.get(str(r.get("mode")), "—")),
        "yes" if verified else "no" if verified is not None else "—",
        f"{r.get(ROOT.name) or 0:,}",
        _view.esc(_view.ms(int(r.get("duration_ms") or 0))),
        _view.esc(problem) + _view.details_html(details, "more"),
    ]


#: The sync history's headings.
_HISTORY_HEADINGS: Final = (
    "When",
    "Organisation",
    "Outcome",
    "Fetched",
    "Verified",
    ROOT.title,
    "Took",
    "Problem",
)


def _history_html(diagnosis: Diagnosis, names: dict[str, str]) -> str:
    """The sync history, newest first: the columns support reads, the rest in each row's
    details (human units, words for codes).
    """
    log = diagnosis.sync_log
    rows = list(log.iter_rows(named=True))[::-1][:20]
    body = [_history_row(r, names, diagnosis.generated_at) for r in rows]
    more = log.height - len(rows)
    return (
        "<b>Sync history</b> <span class='csk-help'>every attempt on this computer, newest first"
        + (f"; the latest 20 of {log.height:,}" if more > 0 else "")
        + "</span>"
        + _view.table_html(_HISTORY_HEADINGS, body, numeric=(5, 6), wrap=(7,))
    )


#: A failure kind in words (the sync log's ``error_kind``).
ADVICE_BY_KIND: Final = {kind.value: advice.problem for kind, advice in ADVICE.items()}
