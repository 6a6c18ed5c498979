"""The console's view: the panels, the header (banner, outage) and one tab per step.

`ConsoleView` is the view half of `ContactSyncApp`: it builds the panels over the app's
models on first use, keeps the banner and the tab titles in step with them, and keeps
Freshness live (a ticker re-reads ages against the clock). It holds no state of its own
beyond widgets.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import ipywidgets as ipw
from traitlets import link

from . import _view, steps
from ._base import PanelModel
from .autorefresh import AutoRefreshModel
from .cached_data import CachedDataModel, CachedDataPanel
from .clearing import ClearingModel, ClearingPanel
from .connection import ServerStatusModel
from .diagnostics_panel import DiagnosticsModel, DiagnosticsPanel
from .export import ExportModel, ExportPanel
from .freshness import FreshnessModel, FreshnessPanel
from .login import LoginModel, LoginPanel
from .organisation import OrganisationModel, OrganisationPanel
from .static import StaticFallback
from .steps import STEPS
from .sync import SyncModel, SyncPanel

__all__ = ["AppPanels", "ConsoleView"]

__io__ = "ui"


@dataclass(frozen=True)
class AppPanels:
    """The views of a `ContactSyncApp`, for tests that click."""

    login: LoginPanel
    organisation: OrganisationPanel
    sync: SyncPanel
    freshness: FreshnessPanel
    clearing: ClearingPanel
    diagnostics: DiagnosticsPanel
    data: CachedDataPanel
    export: ExportPanel
    auto_refresh: ipw.Checkbox


class ConsoleView(StaticFallback):
    """The widgets of a `ContactSyncApp`, over the models it declares here."""

    login: LoginModel
    server: ServerStatusModel
    organisation: OrganisationModel
    sync: SyncModel
    freshness: FreshnessModel
    clearing: ClearingModel
    diagnostics: DiagnosticsModel
    data: CachedDataModel
    export: ExportModel
    auto_refresh: AutoRefreshModel
    tick_s: float
    _ticker: asyncio.Task[None] | None
    _widget: ipw.VBox | None
    _panels: AppPanels | None
    tabs: ipw.Tab
    banner: ipw.HTML
    outage: ipw.HTML

    @property
    def _models(self) -> tuple[Any, ...]:
        return (
            self.login,
            self.server,
            self.organisation,
            self.sync,
            self.freshness,
            self.clearing,
            self.diagnostics,
            self.data,
            self.export,
            self.auto_refresh,
        )

    def _export_first(self) -> None:
        self.clearing.cancel()
        if self._widget is not None:
            self.tabs.selected_index = [f for _, f in STEPS].index("export")
        self.export.schedule(self.export.prepare(), what="Building the bundle")

    async def _tick(self) -> None:
        # Freshness is live: ages are re-read against the clock, and a copy that went stale
        # meanwhile is refreshed (when the switch is on and the server answers).
        while True:
            await asyncio.sleep(self.tick_s)
            with contextlib.suppress(Exception):
                self.freshness.tick()
                self._render_banner()
                self._render_titles()
                if self.login.session is not None and not self.server.offline:
                    self.auto_refresh.schedule(
                        self.auto_refresh.check(), what="Refreshing automatically"
                    )

    def _start_ticker(self) -> None:
        if self._ticker is not None and not self._ticker.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Building the view from a kernel's cell: its loop is the thread's current one.
            loop = asyncio.get_event_loop()
        self._ticker = loop.create_task(self._tick())

    @property
    def panels(self) -> AppPanels:
        """The panels (built on first use)."""
        if self._panels is None:
            switch = _view.tag(
                ipw.Checkbox(
                    value=self.auto_refresh.enabled,
                    indent=False,
                    description="Refresh automatically when the copy is older than the threshold",
                    layout=ipw.Layout(width="auto"),  # the whole sentence, not cut with "…"
                ),
                "csk-auto-refresh",
            )
            link((self.auto_refresh, "enabled"), (switch, "value"))
            self._panels = AppPanels(
                login=LoginPanel(self.login),
                organisation=OrganisationPanel(self.organisation),
                sync=SyncPanel(self.sync),
                freshness=FreshnessPanel(self.freshness),
                clearing=ClearingPanel(self.clearing, on_export_first=self._export_first),
                diagnostics=DiagnosticsPanel(self.diagnostics),
                data=CachedDataPanel(self.data),
                export=ExportPanel(self.export),
                auto_refresh=switch,
            )
            # Exporting is its own step here, a browser download; not a file on the server.
            self._panels.diagnostics.export_button.layout.display = "none"
        return self._panels

    @property
    def widget(self) -> ipw.VBox:
        """The whole console as one widget: a header, then one tab per step."""
        if self._widget is None:
            panels = self.panels
            # The switch and what it did belong to the freshness card.
            panels.freshness.extras.children = [panels.auto_refresh, self._auto_status()]
            self.tabs = ipw.Tab(
                children=[getattr(panels, field) for _, field in STEPS],
                titles=[title for title, _ in STEPS],
            )
            self.tabs.add_class("csk-tabs")
            header = ipw.HTML(
                '<div style="font-size:19px;font-weight:600;color:#1f2328">ContactSync — '
                'support console</div><div class="csk-help" style="margin-bottom:8px">'
                "Check and fix this computer's offline copy of an organisation's contacts. "
                "Go through the steps left to right. Reloading the page ends the session: "
                "sign in again.</div>"
            )
            self.banner = _view.tag(ipw.HTML(), "csk-banner")
            self.outage = _view.tag(ipw.HTML(), "csk-outage")
            self._observe_header()
            self._render_banner()
            self._render_titles()
            self._widget = ipw.VBox(
                [header, self.banner, self.outage, self.tabs],
                layout=ipw.Layout(max_width="1240px"),
            )
            self._widget.add_class("csk-app")
            self._start_ticker()
        return self._widget

    def _auto_status(self) -> ipw.HTML:
        """What the automatic refresh did last, as a status line kept up to date."""
        auto_status = _view.tag(ipw.HTML(), "csk-auto-status")

        def show(_change: object = None) -> None:
            auto = self.auto_refresh
            auto_status.value = _view.status_html(auto.tone, auto.status)

        self.auto_refresh.observe(show, names=["status", "tone"])
        show()
        return auto_status

    def _observe_header(self) -> None:
        """Re-render the banner and the tab titles whenever what they say changes."""
        banner: tuple[tuple[PanelModel, list[str]], ...] = (
            (self.login, ["session", "user", "ended"]),
            (self.organisation, ["organisation_id", "organisations"]),
            (self.server, ["state", "detail"]),
            (self.freshness, ["rows"]),
            (self.auto_refresh, ["status"]),
        )
        for model, names in banner:
            model.observe(self._render_banner, names=names)
        titles: tuple[tuple[PanelModel, list[str]], ...] = (
            *((model, ["status", "tone", "busy"]) for model in self._models),
            (self.sync, ["running", "result"]),
            (self.freshness, ["stale_count", "rows", "checking"]),
            (self.diagnostics, ["rows", "working"]),
        )
        for model, names in titles:
            model.observe(self._render_titles, names=names)

    def _copy_age(self) -> str:
        org = self.organisation.organisation_id
        for row in self.freshness.rows:
            if row["organisation_id"] == org and row["last_synced_at"] is not None:
                return str(row["age"])
        return ""

    def outage_sentence(self) -> str:
        """The one sentence stating an outage (empty while the server answers)."""
        if not self.server.offline or self.login.session is None:
            return ""
        return steps.outage_sentence(self._copy_age())

    def _render_banner(self, _change: object = None) -> None:
        if self._widget is None and not hasattr(self, "banner"):
            return
        text = steps.banner_text(self.login, self.organisation)
        note = steps.clock_note(self.login.session)
        extra = (
            f'<div class="csk-help">{_view.esc(note[:1].upper() + note[1:])}.</div>' if note else ""
        )
        self.banner.value = f'<div class="csk-help"><b>{_view.esc(text)}</b></div>{extra}'
        outage = self.outage_sentence()
        self.outage.value = _view.status_html("warn", outage) if outage else ""

    def _render_titles(self, _change: object = None) -> None:
        if self._widget is None and not hasattr(self, "tabs"):
            return
        self.tabs.titles = [
            f"{title} · {state}" if (state := self._step_state(field)) else title
            for title, field in STEPS
        ]

    def _step_state(self, field: str) -> str:
        """A word or two for a tab: done, working, failed, stale, offline."""
        if self.login.session is None:
            return "signed out" if field == "login" and self.login.ended else ""
        if field == "login":
            return "signed in"
        if field == "organisation":
            return "cached" if self.organisation.from_cache else ""
        if field == "sync":
            return steps.sync_state(self.sync)
        if field == "freshness":
            return steps.freshness_state(self.freshness, offline=self.server.offline)
        if field == "diagnostics":
            return steps.diagnostics_state(self.diagnostics)
        return steps.tone_state(getattr(self, field).tone)

    def _live_widget(self) -> Any:
        return self.widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
