"""Diagnostics panel: why is this cache stale, what to do, and a support bundle to send.

A thin view over `DiagnosticsModel`, which calls `contactsync_kit.diagnostics` and holds the
result. Drive it without clicks: ``await model.diagnose()``, ``await model.export_bundle()``.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import ipywidgets as ipw
from traitlets import List, Unicode, observe

from ..bootstrap import UserSession
from ..clock import Clock
from ..diagnostics import Diagnosis, ServerReader, diagnose, write_support_bundle
from ..remote import RemoteFailure, RemoteReader
from ..staleness import format_age
from . import _view
from ._base import ThresholdModel, Tone
from .tables import table

__all__ = ["PLAIN_VERDICTS", "VERDICT_TONES", "DiagnosticsModel", "DiagnosticsPanel"]

#: How each verdict reads in the panel.
VERDICT_TONES: Final = {
    "fresh": "ok",
    "stale": "warn",
    "drifted": "warn",
    "failing": "error",
    "never_synced": "info",
}

#: Each verdict in the words the panel shows (the verdict codes stay in the details).
PLAIN_VERDICTS: Final = {
    "fresh": "up to date",
    "stale": "out of date",
    "drifted": "drifted: the server changed since the last sync",
    "failing": "not syncing: the last attempt did not work",
    "never_synced": "never synced on this computer",
}

#: Reads the organisations a session may see, as rows with ``id`` and ``name``.
Lister = Callable[[UserSession], Awaitable[list[dict[str, Any]]]]


async def _list_organisations(session: UserSession) -> list[dict[str, Any]]:
    return await RemoteReader(session.client).rows("organisations", "id, name")


class DiagnosticsModel(ThresholdModel):
    """State and actions of the diagnostics panel.

    `organisation_id` None diagnoses every organisation (cached, logged or a membership);
    `rows` is one dict per organisation for the view (label, verdict, cause, summary, action,
    age and counts); `diagnosis` the last `Diagnosis`; `bundle_path` the last bundle written.
    `reader` replaces the server reader (tests).
    """

    organisations: List[tuple[str, str]] = List(help="(name, id) pairs to pick from.")
    organisation_id = Unicode(None, allow_none=True, help="The organisation; None for all.")
    rows: List[dict[str, Any]] = List(help="One dict per diagnosed organisation.")
    headline = Unicode("", help="One line over all verdicts.")
    bundle_path = Unicode("", help="Where the last support bundle was written.")

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        bundle_dir: str | Path | None = None,
        reader: ServerReader | None = None,
        lister: Lister | None = None,
        load_on_sign_in: bool = True,
        **kwargs: Any,
    ) -> None:
        self.clock = clock
        self.bundle_dir = Path(bundle_dir) if bundle_dir is not None else None
        self.reader = reader
        self._lister: Lister = lister or _list_organisations
        self.diagnosis: Diagnosis | None = None
        # False inside the console, whose organisation panel already feeds `organisations`.
        self._load_on_sign_in = load_on_sign_in
        super().__init__(**kwargs)
        self.say("info", "Sign in, then press Diagnose.")

    @property
    def names(self) -> dict[str, str]:
        """Organisation id → name."""
        return {str(oid): str(name) for name, oid in self.organisations}

    @observe("session")
    def _on_session(self, change: dict[str, Any]) -> None:
        self.forget()
        if change["new"] is None:
            if self._load_on_sign_in:
                self.organisations = []
            self.say("info", "Sign in, then press Diagnose.")
        elif self._load_on_sign_in:
            self.schedule(self.load_organisations(), what="Loading organisations")
        else:
            self.say("info", "Press Diagnose to compare this computer's copy with the server.")

    def forget(self) -> None:
        """Drop the last diagnosis (after a sync, a clear, or another organisation)."""
        with self.hold_trait_notifications():
            self.diagnosis, self.rows, self.headline, self.bundle_path = None, [], "", ""
            if self.session is not None:
                self.say("info", "Press Diagnose to compare this computer's copy with the server.")

    async def load_organisations(self) -> list[tuple[str, str]]:
        """Fill the picker with the user's organisations (read through RLS)."""
        session = self.session
        if session is None:
            return []
        try:
            rows = await self._lister(session)
        except RemoteFailure as exc:
            self.say(
                "warn",
                f"Could not list your organisations ({exc.error.kind.value}); "
                "Diagnose still checks every cached organisation.",
            )
            return []
        self.organisations = sorted((str(r.get("name") or r["id"]), str(r["id"])) for r in rows)
        self.say("info", "Pick an organisation (or all), then press Diagnose.")
        return list(self.organisations)

    async def diagnose(self) -> Diagnosis | None:
        """Diagnose the picked organisation (or all); returns the `Diagnosis`."""
        session = self.session
        if session is None:
            self.say(
                "warn",
                "Sign in first: the diagnosis compares the cache with what the server shows you.",
            )
            return None
        self.busy = True
        self.say("busy", "Comparing the cache with the server…")
        try:
            result = await diagnose(
                session,
                self.organisation_id,
                clock=self.clock,
                threshold=timedelta(hours=self.threshold_hours),
                reader=self.reader,
            )
        finally:
            self.busy = False
        self.diagnosis = result
        self._show(result)
        return result

    def _show(self, result: Diagnosis) -> None:
        names = self.names
        rows = []
        for row in result.organisations.iter_rows(named=True):
            org = row["organisation_id"]
            age = row["cache_age_hours"]
            rows.append(
                {
                    "label": names.get(org, org[:8] + "…"),
                    "organisation_id": org,
                    "verdict": row["verdict"],
                    "cause": row["cause"],
                    "summary": row["summary"],
                    "action": row["action"],
                    "plain": PLAIN_VERDICTS.get(row["verdict"], row["verdict"]),
                    "age": format_age(None if age is None else age * 3600),
                    "contacts": (row["local_contacts"], row["server_contacts"]),
                    "differences": (row["missing_locally"] or 0)
                    + (row["gone_from_server"] or 0)
                    + (row["newer_on_server"] or 0),
                }
            )
        self.rows = rows
        verdicts = [r["verdict"] for r in rows]
        if not rows:
            self.headline = "Nothing to diagnose: no organisation is cached or visible."
            self.say("info", self.headline)
            return
        if len(rows) == 1:
            only = rows[0]
            self.headline = (
                f"{only['label']}: {only['plain']}. What we found: "
                f"{only['summary']}. What to do: {only['action']}."
            )
        else:
            counts = ", ".join(
                f"{verdicts.count(v)} {PLAIN_VERDICTS[v].split(':')[0]}"
                for v in VERDICT_TONES
                if v in verdicts
            )
            self.headline = f"{len(rows)} organisations: {counts}."
        worst: Tone = (
            "error"
            if "failing" in verdicts
            else "warn"
            if {"stale", "drifted"} & set(verdicts)
            else "ok"
        )
        self.say(worst, f"{self.headline} (Checked at {result.generated_at:%H:%M} UTC.)")

    async def export_bundle(self, path: str | Path | None = None) -> Path | None:
        """Write the support bundle for the last diagnosis (diagnosing first if needed).

        `path` may be a file or a directory; default: `bundle_dir` or the temp directory.
        """
        session = self.session
        if session is None:
            self.say("warn", "Sign in and diagnose first.")
            return None
        result = self.diagnosis or await self.diagnose()
        if result is None:
            return None
        target = (
            Path(path) if path is not None else (self.bundle_dir or Path(tempfile.gettempdir()))
        )
        written = await asyncio.to_thread(write_support_bundle, result, session.cache, target)
        self.bundle_path = str(written)
        self.say(
            "ok",
            f"Support bundle written to {written} (ids, timestamps, counts and "
            "error codes only; no names, phones, emails, addresses or notes).",
        )
        return written


class DiagnosticsPanel(ipw.VBox):  # type: ignore[misc]
    """The view of a `DiagnosticsModel`: picker, Diagnose, verdict table, Export bundle."""

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
        self.diagnose_button = ipw.Button(
            description="Diagnose",
            icon="stethoscope",
            button_style="primary",
            tooltip="Compare the cache with the server",
        )
        _view.tag(self.diagnose_button, "csk-diagnose")
        self.diagnose_button.on_click(lambda _: model.schedule(model.diagnose(), what="Diagnosing"))
        self.export_button = ipw.Button(
            description="Export bundle",
            icon="download",
            tooltip="Write a support bundle without personal data",
        )
        self.export_button.on_click(
            lambda _: model.schedule(model.export_bundle(), what="Writing the bundle")
        )
        self.table = ipw.HTML()
        self.status = _view.tag(ipw.HTML(), "csk-diagnosis")
        self.history = ipw.VBox()
        super().__init__(
            children=[
                _view.card(
                    "Diagnose",
                    "Compares this machine's cache with what the server shows the signed-in user, "
                    "says what is wrong in plain words and what to do, and exports a support "
                    "bundle "
                    "with no personal data.",
                    ipw.HBox(
                        [self.picker, self.threshold, ipw.HTML("&nbsp;hours")],
                        layout=ipw.Layout(align_items="center"),
                    ),
                    ipw.HBox([self.diagnose_button, self.export_button]),
                    self.status,
                    self.table,
                    self.history,
                )
            ],
            **kwargs,
        )
        model.observe(
            self._render, names=["session", "busy", "rows", "status", "tone", "bundle_path"]
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

    def _render(self, _change: object = None) -> None:
        model = self.model
        self.diagnose_button.disabled = model.session is None or model.busy
        self.export_button.disabled = model.session is None or model.busy
        self.status.value = _view.status_html(model.tone, model.status)
        self.table.value = _rows_html(model.rows) if model.rows else ""
        diagnosis = model.diagnosis
        if diagnosis is None or not model.rows:
            _view.replace_children(self.history, [])
        elif diagnosis.sync_log.height:
            _view.replace_children(
                self.history,
                [
                    ipw.HTML(
                        "<b>Sync history</b> <span class='csk-help'>every attempt on this "
                        "computer, newest last</span>"
                    ),
                    table(
                        diagnosis.sync_log.drop("id", strict=False),
                        names=model.names,
                        now=diagnosis.generated_at,
                        css_class="csk-history",
                        file_name="sync-history",
                    ),
                ],
            )
        else:
            _view.replace_children(
                self.history,
                [ipw.HTML("<b>Sync history</b>: no sync was attempted on this computer yet.")],
            )


def _rows_html(rows: list[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        local, server = row["contacts"]
        body.append(
            [
                f"<b>{_view.esc(row['label'])}</b>",
                _view.pill(VERDICT_TONES.get(row["verdict"], "info"), row["plain"].split(":")[0])
                + _view.details_html(
                    [
                        ("Verdict", _view.esc(row["verdict"])),
                        ("Cause", _view.esc(row["cause"])),
                        ("Id", _view.esc(row["organisation_id"])),
                    ]
                ),
                _wrapping(_view.esc(row["summary"])),
                _wrapping(f"<b>{_view.esc(row['action'])}</b>"),
                _view.esc(row["age"]),
                f"{local:,} / {'?' if server is None else f'{server:,}'}",
                f"{row['differences']:,}",
            ]
        )
    return _view.table_html(
        [
            "Organisation",
            "Verdict",
            "What we found",
            "What to do",
            "Cache age",
            "Contacts cached / on server",
            "Rows differing",
        ],
        body,
        numeric=(5, 6),
    )


def _wrapping(cell: str) -> str:
    # The shared table style keeps cells on one line; sentences need to wrap.
    return f'<div style="white-space:normal;min-width:16em;max-width:28em">{cell}</div>'
