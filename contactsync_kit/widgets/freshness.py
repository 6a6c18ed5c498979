"""Freshness step: how old each organisation's cached copy is, with a banner and a chart.

"Check against the server" asks the server's digest, one request per cached organisation,
whether each copy still equals what the server shows the user (`contactsync_kit.verify`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final

import ipywidgets as ipw
import polars as pl
from traitlets import Bool, Bytes, Dict, Int, List, Unicode, observe

from ..bootstrap import UserSession
from ..clock import Clock, SystemClock
from ..schemas import DATA_TABLES, SYNCED_TABLES
from ..staleness import assess_staleness
from ..verify import CacheVerification, verify_cache
from . import _view
from ._base import CANCELLED_TEXT, LongWorkModel, ThresholdModel
from ._chart import age_chart_png
from ._panel import Panel, button, cancel_controls, scheduled, side_by_side, threshold_field

__all__ = ["VERIFICATION_PILLS", "FreshnessModel", "FreshnessPanel", "Verifier"]

__io__ = "ui"

#: Compares one organisation's cache with the server (`verify_cache` over the session).
Verifier = Callable[[UserSession, str], Awaitable[CacheVerification]]

#: How each verification verdict reads in the table: (tone, pill text).
VERIFICATION_PILLS: Final = {
    "equal": ("ok", "equal ✓"),
    "drifted": ("warn", "drifted"),
    "unavailable": ("info", "cannot verify"),
}


async def _verify(session: UserSession, organisation_id: str) -> CacheVerification:
    return await verify_cache(session.client, session.cache, organisation_id)


class FreshnessModel(LongWorkModel, ThresholdModel):
    """Per organisation in the cache: when it last synced, how long ago, stale or not.

    `refresh()` reads the cache overview (off the event loop) and re-assesses it against
    `threshold_hours` with the injected clock; changing the threshold re-assesses without
    reading again. `banner` is non-empty when something needs attention. `report` is the
    `assess_staleness` frame (plus a ``label`` column of organisation names).

    `check()` (the button's path: `request_check()`) compares every cached organisation with
    the server's digest, one request each, and fills `verification`: one dict per
    organisation with ``organisation_id``, ``label``, ``verdict`` (``equal`` / ``drifted`` /
    ``unavailable``) and ``text`` ("equal to the server ✓", "drifted: contacts 59 cached /
    60 on the server — sync now", "cannot verify: …"). Reading the cache again drops it (it
    was about the previous content). `verifier` replaces `verify_cache` (tests).
    """

    organisation_names = Dict(help="Organisation id → name, for labels.")
    rows: List[dict[str, Any]] = List(help="One dict per cached organisation, for the view.")
    stale_count = Int(0)
    banner = Unicode("", help="A warning when any cached organisation is stale, else empty.")
    summary = Unicode("", help="One line saying how fresh the cache is.")
    chart = Bytes(b"", help="PNG of the cache-age bar chart (empty until drawn).")
    chart_caption = Unicode("", help="What the chart shows, in words.")
    verification: List[dict[str, Any]] = List(
        help="The last check against the server: one dict per cached organisation."
    )
    checking = Bool(False, help="True while the check against the server runs.")
    check_text = Unicode("", help="Progress of the check, then its outcome in one line.")

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        draw_chart: bool = True,
        verifier: Verifier | None = None,
        **kwargs: Any,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.draw_chart = draw_chart
        self._verifier: Verifier = verifier or _verify
        # Bumped whenever the cache is read again or the session changes: a check that
        # started before must not land (it was about the previous content).
        self._generation = 0
        self._overview: pl.DataFrame | None = None
        self.report: pl.DataFrame | None = None
        # Reads and drawings finish out of order (threads); only the newest may land.
        self._reads = 0
        self._assessments = 0
        super().__init__(**kwargs)
        self.say("info", "Sign in to inspect the cache.")

    @property
    def threshold(self) -> timedelta:
        """`threshold_hours` as a timedelta."""
        return timedelta(hours=self.threshold_hours)

    @observe("session")
    def _on_session(self, change: dict[str, Any]) -> None:
        self._drop_check()
        if change["new"] is None:
            self._overview = None
            self._assess()
            self.chart, self.chart_caption = b"", ""
            self.say("info", "Sign in to inspect the cache.")
        else:
            self.schedule(self.refresh(), what="Reading the cache")

    @observe("threshold_hours", "organisation_names")
    def _reassess(self, _change: object) -> None:
        if self._overview is not None:
            self._assess()
            if self.draw_chart:
                self.schedule(self._draw(), what="Drawing the chart")

    async def refresh(self) -> pl.DataFrame | None:
        """Read the cache again and assess it; returns the report (None when signed out)."""
        session = self.session
        if session is None:
            self.say("info", "Sign in to inspect the cache.")
            return None
        self._reads += 1
        read = self._reads
        self.busy = True
        try:
            overview = await asyncio.to_thread(session.cache.overview)
            if read != self._reads or session is not self.session:
                return self.report  # a newer read (or a sign-out) superseded this one
            self._overview = overview
            self._drop_check()
            self._assess()
            if self.draw_chart:
                await self._draw()
        finally:
            self.busy = False
        return self.report

    def _drop_check(self) -> None:
        self._generation += 1
        with self.hold_trait_notifications():
            self.verification = []
            self.check_text = ""
            self.checking = False

    def request_check(self) -> None:
        """Start `check()` without waiting (the button's path); no-op while one runs."""
        if not self.checking:
            self.checking = True  # at once: a second click before the task starts sees it
            self.schedule(self._check(), what="Checking against the server")

    async def check(self) -> list[dict[str, Any]]:
        """Compare each cached organisation with the server's digest, one request each.

        Returns (and sets) `verification`; while a check runs, returns the last one at once.
        """
        if self.checking:
            return list(self.verification)
        self.checking = True
        return await self._check()

    async def _check(self) -> list[dict[str, Any]]:
        session, generation = self.session, self._generation
        orgs = [(str(row["organisation_id"]), str(row["label"])) for row in self.rows]
        if session is None or not orgs:
            self.checking = False
            self.check_text = (
                "Sign in to check the cache against the server."
                if session is None
                else "Nothing is cached: there is nothing to check."
            )
            return []
        found: list[dict[str, Any]] = []
        try:
            async with self.working_on():
                for n, (org, label) in enumerate(orgs, start=1):
                    self.check_text = f"Asking the server about {label} ({n} of {len(orgs)})…"
                    result = await self._verifier(session, org)
                    if generation != self._generation:
                        return []  # the cache changed (or the session) meanwhile
                    line = result.line() + (" — sync now" if result.verdict == "drifted" else "")
                    found.append(
                        {
                            "organisation_id": org,
                            "label": label,
                            "verdict": result.verdict,
                            "text": line,
                        }
                    )
        except asyncio.CancelledError:
            if generation == self._generation:
                self.check_text = f"Check against the server {CANCELLED_TEXT}."
            return []
        finally:
            if generation == self._generation:
                self.checking = False
        with self.hold_trait_notifications():
            self.verification = found
            self.check_text = _check_outcome(found)
        return found

    def cancel_check(self) -> bool:
        """Cancel the running check against the server; True when one ran."""
        return self.cancel_work()

    def tick(self) -> None:
        """Re-assess the ages against the clock (no cache read): Freshness stays live."""
        if self._overview is not None and self.session is not None:
            before = [r["stale"] for r in self.rows]
            self._assess()
            if self.draw_chart and [r["stale"] for r in self.rows] != before:
                self.schedule(self._draw(), what="Drawing the chart")

    def _assess(self) -> None:
        self._assessments += 1
        # Held: views re-render once per change, and must never show half an update.
        with self.hold_trait_notifications():
            self._assess_now()

    def _assess_now(self) -> None:
        if self._overview is None:
            self.report, self.rows, self.stale_count = None, [], 0
            self.banner = self.summary = ""
            return
        names = self.organisation_names
        report = assess_staleness(self._overview, self.clock.now(), self.threshold)
        report = report.with_columns(
            label=pl.col("organisation_id").replace_strict(
                names,
                default=pl.col("organisation_id").str.slice(0, 8) + "…",
                return_dtype=pl.String,
            )
        )
        self.report = report
        self.rows = report.select(
            "label",
            "organisation_id",
            "last_synced_at",
            "age",
            "stale",
            *DATA_TABLES,
        ).to_dicts()
        stale = report.filter(pl.col("stale"))
        self.stale_count = stale.height
        limit = f"{self.threshold_hours:g} h"
        if stale.height:
            which = ", ".join(f"{r['label']} ({r['age']})" for r in stale.iter_rows(named=True))
            self.banner = (
                f"{stale.height} of {report.height} cached organisation"
                f"{'' if report.height == 1 else 's'} older than {limit}: {which}. "
                "Sync to refresh, or clear the cache if it is no longer needed."
            )
        else:
            self.banner = ""
        if report.height == 0:
            self.summary = "The cache is empty: nothing has been synced with this account yet."
        elif not stale.height:
            which = (
                "The cached organisation was"
                if report.height == 1
                else f"All {report.height} cached organisations were"
            )
            self.summary = f"{which} synced within {limit}."
        else:
            self.summary = ""
        self.say("info", f"Checked at {self.clock.now():%Y-%m-%d %H:%M:%S} UTC.")

    async def _draw(self) -> None:
        report, hours, assessment = self.report, self.threshold_hours, self._assessments
        if report is None:
            self.chart, self.chart_caption = b"", ""
            return
        # Rendering takes tens of milliseconds (the first one, with matplotlib's import, about
        # a second): off the event loop like any other slow work.
        png = await asyncio.to_thread(age_chart_png, report, hours)
        if assessment != self._assessments:
            return  # the data changed while drawing; the newer drawing will land instead
        n = report.height
        with self.hold_trait_notifications():
            self.chart = png
            self.chart_caption = (
                f"Hours since the last sync of {n} cached organisation"
                f"{'' if n == 1 else 's'}; the dashed line is the "
                f"{hours:g} h threshold."
            )


def _check_outcome(rows: list[dict[str, Any]]) -> str:
    n = len(rows)
    drifted = [r["label"] for r in rows if r["verdict"] == "drifted"]
    unknown = [r["label"] for r in rows if r["verdict"] == "unavailable"]
    if drifted:
        return (
            f"{len(drifted)} of {n} cached organisation{'' if n == 1 else 's'} drifted from "
            f"the server ({', '.join(drifted)}): sync now."
        )
    if unknown:
        return f"Could not verify {len(unknown)} of {n}: see the reason per organisation."
    which = "The cached organisation equals" if n == 1 else f"All {n} cached organisations equal"
    return f"{which} the server ✓ (checked by digest, one request each)."


_AGAIN_TIP = "Read the cache and the clock again"
_CHECK_TIP = (
    "Ask the server, one request per organisation, whether each cached copy still equals "
    "what it shows you"
)


class FreshnessPanel(Panel[FreshnessModel]):
    """The view of a `FreshnessModel`: threshold, banner, table and age chart."""

    title = "Cache freshness"
    help_text = (
        "How long ago each organisation in this machine's cache was synced. Older than the "
        "threshold means support should sync again before trusting it."
    )
    css = "csk-freshness"
    watched = (
        "rows",
        "banner",
        "summary",
        "chart",
        "chart_caption",
        "verification",
        "checking",
        "check_text",
        "elapsed",
        "working",
    )

    def build(self) -> list[Any]:
        """The threshold, Check again, Check against the server, the table and the chart."""
        model = self.model
        self.threshold = threshold_field(model)
        again = scheduled(model, model.refresh, "Reading the cache")
        self.refresh_button = button("Check again", "", again, "refresh", _AGAIN_TIP)
        self.check_button = button(
            "Check against the server",
            "csk-verify",
            model.request_check,
            "check",
            _CHECK_TIP,
            layout=ipw.Layout(width="auto"),  # the whole label, not "Check against th…"
        )
        self.cancel_button, _ = cancel_controls(model.cancel_check, "csk-verify", "the check")
        #: Extra widgets shown at the end of the card (the console's auto-refresh switch).
        self.extras = ipw.VBox()
        self.verification = _view.tag(ipw.HTML(), "csk-verification")
        self.banner = _view.tag(ipw.HTML(), "csk-freshness-banner")
        self.table = ipw.HTML()
        self.image = _view.tag(
            ipw.Image(format="png", layout=ipw.Layout(max_width="640px")), "csk-chart"
        )
        self.caption = _view.tag(ipw.HTML(), "csk-chart-caption")
        return [
            side_by_side(
                self.threshold,
                ipw.HTML("&nbsp;hours&nbsp;"),
                self.refresh_button,
                self.check_button,
                self.cancel_button,
            ),
            self.banner,
            self.table,
            self.verification,
            self.image,
            self.caption,
            self.status,
            self.extras,
        ]

    def render(self) -> None:
        """Show the banner, the table, the check and the chart."""
        model = self.model
        self.refresh_button.disabled = model.session is None or model.busy
        self.check_button.disabled = model.session is None or model.checking or not model.rows
        self.check_button.description = (
            "Checking…" if model.checking else "Check against the server"
        )
        self.cancel_button.layout.display = "" if model.working else "none"
        elapsed = f" ({model.elapsed})" if model.working and model.elapsed else ""
        self.verification.value = _verification_html(
            model.verification, model.check_text + elapsed, model.checking
        )
        tone = "warn" if model.banner else "ok" if model.rows else "info"
        self.banner.value = _view.status_html(tone, model.banner or model.summary)
        self.table.value = _rows_html(model.rows) if model.rows else ""
        self.image.value = model.chart
        shown = bool(model.chart and model.rows)
        self.image.layout.display = "" if shown else "none"
        self.caption.value = (
            f'<div class="csk-help">{_view.esc(model.chart_caption)}</div>' if shown else ""
        )


def _rows_html(rows: list[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        synced = row["last_synced_at"]
        body.append(
            [
                f"<b>{_view.esc(row['label'])}</b>",
                _view.esc(f"{synced:%Y-%m-%d %H:%M} UTC") if synced else "<i>never</i>",
                _view.esc(row["age"]),
                _view.pill("warn", "stale") if row["stale"] else _view.pill("ok", "fresh"),
                *(f"{row[name]:,}" for name in DATA_TABLES),
            ]
        )
    return _view.table_html(
        ["Organisation", "Last synced", "Age", "State", *(spec.title for spec in SYNCED_TABLES)],
        body,
        numeric=range(4, 4 + len(DATA_TABLES)),
    )


def _verification_html(rows: list[dict[str, Any]], text: str, checking: bool) -> str:
    if checking:
        return _view.status_html("busy", text)
    if not text:
        return ""
    tone = (
        "warn"
        if any(r["verdict"] == "drifted" for r in rows)
        else "ok"
        if rows and all(r["verdict"] == "equal" for r in rows)
        else "info"
    )
    table = _view.table_html(
        ["Organisation", "Against the server", ""],
        [
            [
                f"<b>{_view.esc(row['label'])}</b>",
                _view.pill(*VERIFICATION_PILLS[row["verdict"]]),
                _view.esc(row["text"]),
            ]
            for row in rows
        ],
    )
    return _view.status_html(tone, text) + (table if rows else "")
