"""`ContactSyncApp`: the five panels wired into one support console."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import ipywidgets as ipw
from traitlets import dlink, link

from ..bootstrap import UserSession
from ..clock import Clock, SystemClock
from ..results import SyncErrorKind, SyncResult
from ..staleness import DEFAULT_STALE_AFTER
from . import _view
from ._base import PanelModel
from .autorefresh import AutoRefreshModel, Probe
from .cached_data import CachedDataModel, CachedDataPanel
from .clearing import ClearingModel, ClearingPanel
from .connection import Prober, ServerStatusModel, is_outage
from .diagnostics_panel import DiagnosticsModel, DiagnosticsPanel
from .export import ExportModel, ExportPanel
from .login import LoginModel, LoginPanel, SessionFactory
from .organisation import OrganisationLister, OrganisationModel, OrganisationPanel
from .settings import ConsoleSettings
from .staleness import StalenessModel, StalenessPanel
from .static import StaticFallback
from .sync import SyncModel, SyncPanel

__all__ = ["AppPanels", "ContactSyncApp", "StackLike"]


class StackLike(Protocol):
    """Anything with a Supabase-style `url` and `anon_key` (e.g. a `DevStack`)."""

    @property
    def url(self) -> str: ...

    @property
    def anon_key(self) -> str: ...


@dataclass(frozen=True)
class AppPanels:
    """The views of a `ContactSyncApp`, for tests that click."""

    login: LoginPanel
    organisation: OrganisationPanel
    sync: SyncPanel
    staleness: StalenessPanel
    clearing: ClearingPanel
    diagnostics: DiagnosticsPanel
    data: CachedDataPanel
    export: ExportPanel
    auto_refresh: ipw.Checkbox


#: The console's steps, in order: (tab title, AppPanels field).
STEPS = (
    ("Sign in", "login"),
    ("Organisation", "organisation"),
    ("Sync", "sync"),
    ("Freshness", "staleness"),
    ("Diagnose", "diagnostics"),
    ("Cached data", "data"),
    ("Export", "export"),
    ("Clear", "clearing"),
)


class ContactSyncApp(StaticFallback):
    """Login, organisation, sync, staleness and cache clearing as one app.

    The models (`login`, `organisation`, `sync`, `staleness`, `clearing`) hold the state and
    expose coroutines, so a notebook or a test drives the app without clicking::

        app = ContactSyncApp.from_environment()
        await app.sign_in()                 # or: await app.login.sign_in()
        app.organisation.select("Acme")     # by name or id
        result = await app.sync.run()
        await app.clearing.clear(confirm=True)
        await app.login.sign_out()

    Display the app (or `app.widget`) in a notebook to get the panels; they are built on
    first use. The models are linked: signing in loads the organisations, a finished sync
    refreshes the freshness and cache panels, signing out resets everything.

    `clock` is used for token expiry and staleness (inject a `ManualClock` in tests);
    `cache_path` is the SQLite cache file (default: `default_cache_path()`); `max_rows` is
    the server's PostgREST row cap and `page_size` the sync's page size; `stale_after` the
    freshness threshold. `organisation_lister` and `session_factory` replace the server calls
    in tests.
    """

    def __init__(
        self,
        *,
        url: str = "",
        key: str = "",
        email: str = "",
        password: str = "",
        clock: Clock | None = None,
        cache_path: str | Path | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_rows: int | None = 1000,
        page_size: int = 1000,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        draw_chart: bool = True,
        organisation_lister: OrganisationLister | None = None,
        session_factory: SessionFactory | None = None,
        auto_refresh: bool = True,
        probe: Probe | None = None,
        configured: bool | None = None,
        prober: Prober | None = None,
        probe_interval_s: float = 5.0,
        tick_s: float = 10.0,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        #: Whether the server answers, for every panel; the banner states an outage.
        self.server = ServerStatusModel(
            clock=self.clock, prober=prober, probe_interval_s=probe_interval_s
        )
        self.tick_s = tick_s
        self._ticker: asyncio.Task[None] | None = None
        self.login = LoginModel(
            url=url,
            key=key,
            email=email,
            password=password,
            clock=self.clock,
            cache_path=cache_path,
            http_client=http_client,
            max_rows=max_rows,
            page_size=page_size,
            session_factory=session_factory,
        )
        self.organisation = OrganisationModel(lister=organisation_lister, server=self.server)
        self.sync = SyncModel(server=self.server)
        self.staleness = StalenessModel(
            clock=self.clock,
            draw_chart=draw_chart,
            threshold_hours=stale_after.total_seconds() / 3600,
        )
        self.clearing = ClearingModel()
        self.diagnostics = DiagnosticsModel(
            clock=self.clock,
            load_on_sign_in=False,
            threshold_hours=self.staleness.threshold_hours,
            server=self.server,
            prober=prober,
        )
        self.data = CachedDataModel()
        self.export = ExportModel(diagnostics=self.diagnostics)
        self.auto_refresh = AutoRefreshModel(
            sync=self.sync,
            clock=self.clock,
            probe=probe,
            enabled=auto_refresh,
            threshold_hours=self.staleness.threshold_hours,
            server=self.server,
        )
        if configured is not None:
            self.login.configured = configured
        picked = (self.sync, self.data, self.auto_refresh)
        for model in self._models[1:]:
            dlink((self.login, "session"), (model, "session"))
        for model in self._models:
            # Whichever step finds the session ended, the whole console signs out.
            model.on_session_ended = self.login.end_session
        for model in picked:
            dlink((self.organisation, "organisation_id"), (model, "organisation_id"))
            dlink(
                (self.organisation, "organisation_id"),
                (model, "organisation_name"),
                transform=self.organisation.name_of,
            )
        dlink(
            (self.organisation, "organisations"),
            (self.staleness, "organisation_names"),
            transform=lambda _: self.organisation.names,
        )
        dlink((self.organisation, "organisations"), (self.diagnostics, "organisations"))
        dlink((self.organisation, "organisation_id"), (self.diagnostics, "organisation_id"))
        for model in (self.diagnostics, self.auto_refresh):
            dlink((self.staleness, "threshold_hours"), (model, "threshold_hours"))
        self.organisation.observe(self._picked, names="organisation_id")
        self.sync.observe(self._sync_finished, names="result")
        self.clearing.observe(self._cache_cleared, names="removed")
        self.diagnostics.on_show_rows = self._show_rows
        self.diagnostics.observe(self._mark_rows, names="differing")
        self.login.observe(self._who, names="session")
        self.server.back_online.append(self._back_online)
        self._widget: ipw.VBox | None = None
        self._panels: AppPanels | None = None

    @property
    def _models(self) -> tuple[Any, ...]:
        return (
            self.login,
            self.server,
            self.organisation,
            self.sync,
            self.staleness,
            self.clearing,
            self.diagnostics,
            self.data,
            self.export,
            self.auto_refresh,
        )

    @property
    def signed_out_reason(self) -> str:
        """Why the session ended without a sign-out here (another window, another person),
        one sentence; empty while signed in or after an ordinary sign-out.
        """
        return "" if self.login.session is not None else self.login.ended

    @classmethod
    def from_environment(cls, **overrides: Any) -> ContactSyncApp:
        """An app configured by `ConsoleSettings`: ``SUPABASE_URL``, ``SUPABASE_ANON_KEY``
        (or ``SUPABASE_PUBLISHABLE_KEY``), ``SUPABASE_EMAIL``, ``SUPABASE_PASSWORD``,
        ``CONTACTSYNC_CACHE`` and ``CONTACTSYNC_AUTO_REFRESH``, else the settings file
        (``$CONTACTSYNC_SETTINGS``); keyword arguments win.
        """
        settings = ConsoleSettings.load()
        values: dict[str, Any] = {
            "url": settings.url,
            "key": settings.key,
            "email": settings.email,
            "password": settings.password,
            "auto_refresh": settings.auto_refresh,
        }
        if settings.cache_path:
            values["cache_path"] = settings.cache_path
        values.update(overrides)
        return cls(**values)

    @classmethod
    def for_console(cls) -> ContactSyncApp:
        """The support console's app (``notebooks/app.ipynb``, ``make console``).

        Configured from the environment or the settings file (see `from_environment`). With
        ``CONTACTSYNC_DEMO=1`` and no project configured, it runs on the console server's one
        shared demo stack (`contactsync_kit.demo.console_demo`), with a demo login filled in.
        """
        import os

        if os.environ.get("CONTACTSYNC_DEMO") != "1" or ConsoleSettings.load().configured:
            return cls.from_environment()
        from ..demo import console_demo  # only the demo needs the stack's dependencies

        demo = console_demo()
        app = cls(
            url=demo.url,
            key=demo.anon_key,
            email=demo.email,
            password=demo.password,
            cache_path=demo.cache_path,
            configured=True,
        )
        # Shown on the sign-in step, so a wrong password does not lose it (demo only).
        app.login.demo_login = f"sign in as {demo.email} with the password {demo.password}"
        return app

    @classmethod
    def for_stack(cls, stack: StackLike, **kwargs: Any) -> ContactSyncApp:
        """An app prefilled with a (local) stack's URL and anon key."""
        return cls(url=stack.url, key=stack.anon_key, **kwargs)

    @property
    def session(self) -> UserSession | None:
        """The signed-in session (client, cache, repository), or None."""
        return self.login.session

    # -- awaitable flow ---------------------------------------------------------------------

    async def sign_in(self, email: str | None = None, password: str | None = None) -> bool:
        """Sign in (optionally with these credentials) and wait until every panel loaded."""
        if email is not None:
            self.login.email = email
        if password is not None:
            self.login.password = password
        ok = await self.login.sign_in()
        await self.wait()
        return ok

    async def run_sync(self, organisation: str | None = None) -> SyncResult | None:
        """Sync `organisation` (name or id; default the picked one) and wait for the panels."""
        if organisation is not None:
            self.organisation.select(organisation)
        result = await self.sync.run()
        await self.wait()
        return result

    async def sign_out(self) -> dict[str, int] | None:
        """Sign out (wiping the cache) and wait for the panels to reset."""
        removed = await self.login.sign_out()
        await self.wait()
        return removed

    async def wait(self) -> None:
        """Return when no panel has work pending (after clicks, or linked refreshes)."""
        models = self._models
        while any(model.has_pending for model in models):
            for model in models:
                await model.wait()

    def close(self) -> None:
        """Release the cache file (not wiped: use `sign_out` for that)."""
        if self._ticker is not None:
            self._ticker.cancel()
        self.login.close()

    # -- links ------------------------------------------------------------------------------

    def _sync_finished(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            return
        self.login.refresh_token_text()
        self._cache_changed()

    def _cache_cleared(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.sync.forget()  # its "success · 60 contacts" is about rows that are gone
            self._cache_changed(cleared=True)

    def _picked(self, _change: object) -> None:
        self.diagnostics.forget()
        self.export.forget()

    def _who(self, _change: object) -> None:
        session = self.login.session
        token = session.token() if session is not None else None
        me = str(token.subject) if token is not None and token.subject else ""
        self.data.people = {me: f"you ({self.login.user})"} if me else {}

    def _show_rows(self, ids: list[str], label: str) -> None:
        self.data.show_rows(ids, label)
        if self._widget is not None:
            self.tabs.selected_index = [f for _, f in STEPS].index("data")

    def _mark_rows(self, _change: object) -> None:
        self.data.marks = {
            str(row["id"]): str(row["difference"]) for row in self.diagnostics.differing
        }

    def _back_online(self) -> None:
        # The server answers again: a list read from the cache is read from the server, and
        # the picked organisation's copy is refreshed (the seed's "refresh on reconnect").
        if self.organisation.from_cache:
            self.organisation.schedule(self.organisation.refresh(), what="Loading organisations")
        self.auto_refresh.reconnected()

    async def _tick(self) -> None:
        # Freshness is live: ages are re-read against the clock, and a copy that went stale
        # meanwhile is refreshed (when the switch is on and the server answers).
        while True:
            await asyncio.sleep(self.tick_s)
            with contextlib.suppress(Exception):
                self.staleness.tick()
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

    def _cache_changed(self, *, cleared: bool = False) -> None:
        # One truth: after the cache changed, every panel that shows it reads it again, and
        # what was found about the old state (diagnosis, bundle) is dropped.
        self.diagnostics.forget()
        self.export.forget()
        if self.login.session is not None:
            self.staleness.schedule(self.staleness.refresh(), what="Reading the cache")
            if not cleared:  # the clearing panel read the counts itself after clearing
                self.clearing.schedule(self.clearing.refresh(), what="Reading the cache")
            self.data.schedule(self.data.refresh(), what="Reading the cache")

    # -- view -------------------------------------------------------------------------------

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
                staleness=StalenessPanel(self.staleness),
                clearing=ClearingPanel(self.clearing, on_export_first=self._export_first),
                diagnostics=DiagnosticsPanel(self.diagnostics),
                data=CachedDataPanel(self.data),
                export=ExportPanel(self.export),
                auto_refresh=switch,
            )
            # Exporting is its own step here, a browser download; not a file on the server.
            self._panels.diagnostics.export_button.layout.display = "none"
        return self._panels

    def _export_first(self) -> None:
        self.clearing.cancel()
        if self._widget is not None:
            self.tabs.selected_index = [f for _, f in STEPS].index("export")
        self.export.schedule(self.export.prepare(), what="Building the bundle")

    @property
    def widget(self) -> ipw.VBox:
        """The whole console as one widget: a header, then one tab per step."""
        if self._widget is None:
            panels = self.panels
            auto_status = _view.tag(ipw.HTML(), "csk-auto-status")

            def show_auto(_change: object = None) -> None:
                auto_status.value = _view.status_html(
                    self.auto_refresh.tone, self.auto_refresh.status
                )

            self.auto_refresh.observe(show_auto, names=["status", "tone"])
            show_auto()
            # The switch and what it did belong to the freshness card.
            panels.staleness.extras.children = [panels.auto_refresh, auto_status]
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
            watched: tuple[tuple[PanelModel, list[str]], ...] = (
                (self.login, ["session", "user", "ended"]),
                (self.organisation, ["organisation_id", "organisations"]),
                (self.server, ["state", "detail"]),
                (self.staleness, ["rows"]),
                (self.auto_refresh, ["status"]),
            )
            for model, names in watched:
                model.observe(self._render_banner, names=names)
            for model in self._models:
                model.observe(self._render_titles, names=["status", "tone", "busy"])
            steps: tuple[tuple[PanelModel, list[str]], ...] = (
                (self.sync, ["running", "result"]),
                (self.staleness, ["stale_count", "rows", "checking"]),
                (self.diagnostics, ["rows", "working"]),
            )
            for model, names in steps:
                model.observe(self._render_titles, names=names)
            self._render_banner()
            self._render_titles()
            self._widget = ipw.VBox(
                [header, self.banner, self.outage, self.tabs],
                layout=ipw.Layout(max_width="1240px"),
            )
            self._widget.add_class("csk-app")
            self._start_ticker()
        return self._widget

    def _copy_age(self) -> str:
        org = self.organisation.organisation_id
        for row in self.staleness.rows:
            if row["organisation_id"] == org and row["last_synced_at"] is not None:
                return str(row["age"])
        return ""

    def outage_sentence(self) -> str:
        """The one sentence stating an outage (empty while the server answers)."""
        if not self.server.offline or self.login.session is None:
            return ""
        age = self._copy_age()
        copy = (
            f"you are looking at this computer's copy from {age} ago"
            if age
            else "you are looking at what this computer has cached"
        )
        return (
            f"The server does not answer; {copy}. Everything cached stays readable, nothing "
            "is deleted, and the console refreshes the copy as soon as the server answers."
        )

    def _render_banner(self, _change: object = None) -> None:
        if self._widget is None and not hasattr(self, "banner"):
            return
        session = self.login.session
        who = self.login.user if session is not None else ""
        org = self.organisation.name_of(self.organisation.organisation_id) if who else ""
        if who:
            text = f"Signed in as {who}" + (f" · organisation: {org}" if org else "")
        elif self.login.ended:
            text = f"Signed out: {self.login.ended}."
        else:
            text = "Not signed in"
        note = _clock_note(session)
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
            result = self.sync.result
            if self.sync.running:
                return "running"
            if result is None or result.error is None:
                return "" if result is None else "done"
            if result.error.kind is SyncErrorKind.CANCELLED:
                return "cancelled"
            return "no answer" if is_outage(result.error) else "failed"
        if field == "staleness":
            if self.server.offline:
                return "offline"
            return (
                f"{self.staleness.stale_count} stale"
                if self.staleness.stale_count
                else ("fresh" if self.staleness.rows else "")
            )
        if field == "diagnostics":
            if self.diagnostics.working:
                return "running"
            verdicts = {r["verdict"] for r in self.diagnostics.rows}
            if verdicts == {"unreachable"}:
                return "offline"
            return (
                "problem"
                if verdicts & {"failing", "drifted", "stale", "unreachable"}
                else "fine"
                if verdicts
                else ""
            )
        model = getattr(self, field)
        return {"error": "failed", "busy": "working"}.get(model.tone, "")

    def _live_widget(self) -> Any:
        return self.widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _clock_note(session: UserSession | None) -> str:
    """The session's note on this computer's clock (`UserSession.clock_note()`), or ""."""
    note = getattr(session, "clock_note", None)
    text = note() if callable(note) else None
    return str(text) if text else ""
