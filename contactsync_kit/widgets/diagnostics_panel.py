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
from ..diagnostics import (
    TABLE_WORDS,
    Diagnosis,
)
from ..schemas import DATA_TABLES
from ..staleness import format_age
from . import _view
from .diagnostics_model import (
    CAUSE_WORDS,
    PLAIN_VERDICTS,
    ROWS_SHOWN,
    VERDICT_TONES,
    DiagnosticsModel,
)
from .static import StaticFallback

__all__ = [
    "CAUSE_WORDS",
    "PLAIN_VERDICTS",
    "VERDICT_TONES",
    "DiagnosticsModel",
    "DiagnosticsPanel",
]


class DiagnosticsPanel(StaticFallback, ipw.VBox):  # type: ignore[misc]
    """The view of a `DiagnosticsModel`: picker, Diagnose (with elapsed time and Cancel), the
    verdict per organisation with counts per table, the rows that differ (each one a link to
    Cached data), the sync history, Export bundle.
    """

    def __init__(self, model: DiagnosticsModel, **kwargs: Any) -> None:
        self.model = model
        self.picker = ipw.Dropdown(
            description="Organisation",
            options=self._options(),
            style={"description_width": "7em"},
            layout=ipw.Layout(width="28em"),
        )
        self.picker.observe(self._picked, names="value")
        self.threshold = ipw.BoundedFloatText(
            description="Stale after",
            value=model.threshold_hours,
            min=0.0,
            max=24 * 365,
            step=1.0,
            layout=ipw.Layout(width="14em"),
            style={"description_width": "7em"},
        )
        self.threshold.observe(self._threshold_edited, names="value")
        model.observe(self._threshold_changed, names="threshold_hours")
        self.diagnose_button = ipw.Button(
            description="Diagnose",
            icon="stethoscope",
            button_style="primary",
            tooltip="Compare the cache with the server",
        )
        _view.tag(self.diagnose_button, "csk-diagnose")
        self.diagnose_button.on_click(lambda _: model.request())
        self.cancel_button = _view.tag(
            ipw.Button(description="Cancel", icon="stop", tooltip="Stop the diagnosis"),
            "csk-diagnose-cancel",
        )
        self.cancel_button.on_click(lambda _: model.cancel())
        self.elapsed = _view.tag(ipw.HTML(), "csk-diagnose-elapsed")
        self.export_button = ipw.Button(
            description="Export bundle",
            icon="download",
            tooltip="Write a support bundle without personal data",
        )
        self.export_button.on_click(
            lambda _: model.schedule(model.export_bundle(), what="Writing the bundle")
        )
        self.table = _view.tag(ipw.HTML(), "csk-verdicts")
        self.status = _view.tag(ipw.HTML(), "csk-diagnosis")
        self.rows_box = _view.tag(ipw.VBox(), "csk-differing")
        self.history = ipw.VBox()
        super().__init__(
            children=[
                _view.card(
                    "Diagnose",
                    "Compares this machine's cache with what the server shows the signed-in user, "
                    "says what is wrong in plain words and what to do, and names the rows that "
                    "differ.",
                    ipw.HBox(
                        [self.picker, self.threshold, ipw.HTML("&nbsp;hours")],
                        layout=ipw.Layout(align_items="center"),
                    ),
                    ipw.HBox(
                        [
                            self.diagnose_button,
                            self.cancel_button,
                            self.elapsed,
                            self.export_button,
                        ],
                        layout=ipw.Layout(align_items="center"),
                    ),
                    self.status,
                    self.table,
                    self.rows_box,
                    self.history,
                )
            ],
            **kwargs,
        )
        model.observe(
            self._render,
            names=[
                "session",
                "busy",
                "rows",
                "differing",
                "status",
                "tone",
                "bundle_path",
                "elapsed",
                "working",
            ],
        )
        model.observe(self._refill, names=["organisations", "organisation_id"])
        self._render()

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

    def _threshold_edited(self, change: dict[str, Any]) -> None:
        self.model.threshold_hours = float(change["new"])
        if self.model.threshold_hours != change["new"]:
            self.threshold.value = self.model.threshold_hours

    def _threshold_changed(self, change: dict[str, Any]) -> None:
        if self.threshold.value != change["new"]:
            self.threshold.value = change["new"]

    def _render(self, _change: object = None) -> None:
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
        self.status.value = _view.status_html(model.tone, model.status)
        self.table.value = _rows_html(model.rows) if model.rows else ""
        self._render_differing()
        diagnosis = model.diagnosis
        if diagnosis is None or not model.rows:
            _view.replace_children(self.history, [])
        elif diagnosis.sync_log.height:
            _view.replace_children(
                self.history,
                [_view.tag(ipw.HTML(_history_html(diagnosis, model.names)), "csk-history")],
            )
        else:
            _view.replace_children(
                self.history,
                [ipw.HTML("<b>Sync history</b>: no sync was attempted on this computer yet.")],
            )

    def _render_differing(self) -> None:
        rows = self.model.differing
        if not rows:
            _view.replace_children(self.rows_box, [])
            return
        shown = rows[:ROWS_SHOWN]
        cells: list[Any] = [
            ipw.HTML(f"<b>{h}</b>") for h in ("Row", "Contact", "How it differs", "Row id", "")
        ]
        for row in shown:
            contact = _view.esc(row["contact"] or "not cached here")
            if row["name_on_server"] and row["name_on_server"] != row["contact"]:
                contact += (
                    f' <span class="csk-help">(on the server: '
                    f"{_view.esc(row['name_on_server'])})</span>"
                )
            button = _view.tag(
                ipw.Button(
                    description="Show in Cached data",
                    icon="search",
                    tooltip="Open Cached data filtered to this row's contact",
                    layout=ipw.Layout(width="auto"),
                    disabled=not row["contact"],
                ),
                "csk-show-row",
            )
            button.add_class(f"csk-show-{row['contact_id'] or row['id']}")
            ids = [row["contact_id"] or row["id"]]
            label = row["contact"] or row["id"]
            button.on_click(lambda _, ids=ids, label=label: self.model.show_rows(ids, label))
            cells += [
                ipw.HTML(_view.esc(row["row"])),
                ipw.HTML(contact),
                ipw.HTML(_view.esc(row["difference"])),
                ipw.HTML(
                    f'<span class="csk-mono" title="{_view.esc(row["id"])}">'
                    f"{_view.esc(row['id'][:8])}…</span>"
                ),
                button,
            ]
        more = len(rows) - len(shown)
        by_table = ", ".join(
            f"{sum(1 for r in rows if r['table'] == t)} {TABLE_WORDS[t]}"
            f"{'' if sum(1 for r in rows if r['table'] == t) == 1 else 's'}"
            for t in DATA_TABLES
            if any(r["table"] == t for r in rows)
        )
        heading = ipw.HTML(
            f"<b>Rows that differ</b> <span class='csk-help'>{len(rows)}: {by_table}"
            + (f"; the first {len(shown)} are listed" if more else "")
            + "</span>"
        )
        grid = ipw.GridBox(
            cells,
            layout=ipw.Layout(
                grid_template_columns="7em minmax(10em, 1fr) minmax(14em, 2fr) 7em auto",
                grid_gap="2px 10px",
                align_items="center",
            ),
        )
        _view.replace_children(self.rows_box, [heading, grid])


def _counts_html(row: dict[str, Any]) -> str:
    lines = []
    for table_name in DATA_TABLES:
        local, server = row["tables"][table_name]
        diff = row["table_diffs"].get(table_name, {})
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
        lines.append(f"{TABLE_WORDS[table_name]}s {local:,} / {on_server}{extra}")
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


def _history_html(diagnosis: Diagnosis, names: dict[str, str]) -> str:
    """The sync history, newest first: the columns support reads, the rest in each row's
    details (human units, words for codes).
    """
    log = diagnosis.sync_log
    now = diagnosis.generated_at
    rows = list(log.iter_rows(named=True))[::-1][:20]
    body = []
    for r in rows:
        started = r.get("started_at")
        when = started or ""
        with contextlib.suppress(ValueError, TypeError):
            moment = datetime.fromisoformat(str(started).replace("Z", "+00:00"))
            when = f"{format_age((now - moment).total_seconds())} ago · {moment:%Y-%m-%d %H:%M} UTC"
        kind = r.get("error_kind")
        problem = (
            ADVICE_BY_KIND.get(str(kind), str(kind))
            if kind and r.get("outcome") != "success"
            else ""
        )
        verified = r.get("verified")
        details = [
            ("Pages", f"{r.get('pages') or 0:,}"),
            ("Notes", f"{r.get('notes') or 0:,}"),
            ("Assignments", f"{r.get('contact_assignments') or 0:,}"),
            ("Error code", _view.esc(f"{kind or '—'} {r.get('error_code') or ''}".strip())),
            ("HTTP status", _view.esc(r.get("http_status") or "—")),
            ("Message", _view.esc(r.get("message") or "—")),
        ]
        body.append(
            [
                _view.esc(when),
                _view.esc(
                    names.get(str(r.get("organisation_id")), str(r.get("organisation_id"))[:8])
                ),
                _view.esc(_OUTCOMES.get(str(r.get("outcome")), str(r.get("outcome")))),
                _view.esc(
                    {"delta": "only changes", "full": "everything"}.get(str(r.get("mode")), "—")
                ),
                "yes" if verified else "no" if verified is not None else "—",
                f"{r.get('contacts') or 0:,}",
                _view.esc(_view.ms(int(r.get("duration_ms") or 0))),
                _view.esc(problem) + _view.details_html(details, "more"),
            ]
        )
    more = log.height - len(rows)
    return (
        "<b>Sync history</b> <span class='csk-help'>every attempt on this computer, newest first"
        + (f"; the latest 20 of {log.height:,}" if more > 0 else "")
        + "</span>"
        + _view.table_html(
            [
                "When",
                "Organisation",
                "Outcome",
                "Fetched",
                "Verified",
                "Contacts",
                "Took",
                "Problem",
            ],
            body,
            numeric=(5, 6),
            wrap=(7,),
        )
    )


#: A failure kind in words (the sync log's ``error_kind``).
ADVICE_BY_KIND: Final = {kind.value: advice.problem for kind, advice in ADVICE.items()}
