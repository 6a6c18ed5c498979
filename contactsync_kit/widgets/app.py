"""`ContactSyncApp`: the five panels wired into one support console."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import ipywidgets as ipw
from traitlets import dlink, link

from ..bootstrap import UserSession
from ..clock import Clock, SystemClock
from ..results import SyncResult
from ..staleness import DEFAULT_STALE_AFTER
from . import _view
from .autorefresh import AutoRefreshModel, Probe
from .cached_data import CachedDataModel, CachedDataPanel
from .clearing import ClearingModel, ClearingPanel
from .diagnostics_panel import DiagnosticsModel, DiagnosticsPanel
from .export import ExportModel, ExportPanel
from .login import LoginModel, LoginPanel, SessionFactory
from .organisation import OrganisationLister, OrganisationModel, OrganisationPanel
from .settings import ConsoleSettings
from .staleness import StalenessModel, StalenessPanel
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


class ContactSyncApp:
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
    ) -> None:
        self.clock: Clock = clock or SystemClock()
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
        self.organisation = OrganisationModel(lister=organisation_lister)
        self.sync = SyncModel()
        self.staleness = StalenessModel(
            clock=self.clock,
            draw_chart=draw_chart,
            threshold_hours=stale_after.total_seconds() / 3600,
        )
        self.clearing = ClearingModel()
        self.diagnostics = DiagnosticsModel(
            clock=self.clock, load_on_sign_in=False, threshold_hours=self.staleness.threshold_hours
        )
        self.data = CachedDataModel()
        self.export = ExportModel(diagnostics=self.diagnostics)
        self.auto_refresh = AutoRefreshModel(
            sync=self.sync,
            clock=self.clock,
            probe=probe,
            enabled=auto_refresh,
            threshold_hours=self.staleness.threshold_hours,
        )
        if configured is not None:
            self.login.configured = configured
        picked = (self.sync, self.data, self.auto_refresh)
        for model in (
            self.organisation,
            self.sync,
            self.staleness,
            self.clearing,
            self.diagnostics,
            self.data,
            self.export,
            self.auto_refresh,
        ):
            dlink((self.login, "session"), (model, "session"))
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
        self._widget: ipw.VBox | None = None
        self._panels: AppPanels | None = None

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
        return cls(
            url=demo.url,
            key=demo.anon_key,
            email=demo.email,
            password=demo.password,
            cache_path=demo.cache_path,
            configured=True,
        )

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
        models = (
            self.login,
            self.organisation,
            self.sync,
            self.staleness,
            self.clearing,
            self.diagnostics,
            self.data,
            self.export,
            self.auto_refresh,
        )
        while any(model.has_pending for model in models):
            for model in models:
                await model.wait()

    def close(self) -> None:
        """Release the cache file (not wiped: use `sign_out` for that)."""
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
            freshness = ipw.VBox([panels.staleness, panels.auto_refresh, auto_status])
            views = {"staleness": freshness}
            self.tabs = ipw.Tab(
                children=[views.get(field, getattr(panels, field)) for _, field in STEPS],
                titles=[f"{n} · {title}" for n, (title, _) in enumerate(STEPS, start=1)],
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
            for model in (self.login, self.organisation):
                model.observe(
                    self._render_banner,
                    names=["session", "organisation_id", "organisations", "user"],
                )
            self._render_banner()
            self._widget = ipw.VBox(
                [header, self.banner, self.tabs], layout=ipw.Layout(max_width="1100px")
            )
            self._widget.add_class("csk-app")
        return self._widget

    def _render_banner(self, _change: object = None) -> None:
        who = self.login.user if self.login.session is not None else ""
        org = self.organisation.name_of(self.organisation.organisation_id) if who else ""
        text = (
            f"Signed in as {who}" + (f" · organisation: {org}" if org else "")
            if who
            else "Not signed in"
        )
        self.banner.value = f'<div class="csk-help"><b>{_view.esc(text)}</b></div>'

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
