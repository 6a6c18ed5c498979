"""`ContactSyncApp`: the five panels wired into one support console."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from traitlets import dlink

from ..bootstrap import UserSession
from ..clock import Clock, SystemClock
from ..options import DEFAULT_OPTIONS, SyncOptions
from ..results import SyncResult
from ..staleness import DEFAULT_STALE_AFTER
from .autorefresh import AutoRefreshModel, Probe
from .cached_data import CachedDataModel
from .clearing import ClearingModel
from .connection import Prober, ServerStatusModel
from .console_view import AppPanels, ConsoleView
from .diagnostics_model import DiagnosticsModel
from .export import ExportModel
from .freshness import FreshnessModel
from .login import LoginModel, SessionFactory
from .organisation import OrganisationLister, OrganisationModel
from .settings import ConsoleSettings
from .steps import STEPS
from .sync import SyncModel

if TYPE_CHECKING:
    import httpx

__all__ = ["AppPanels", "ContactSyncApp", "StackLike"]

__io__ = "ui"


class StackLike(Protocol):
    """Anything with a Supabase-style `url` and `anon_key` (e.g. a `DevStack`)."""

    @property
    def url(self) -> str: ...

    @property
    def anon_key(self) -> str: ...


class ContactSyncApp(ConsoleView):
    """Login, organisation, sync, freshness, diagnosis and cache clearing as one app.

    The models (`login`, `organisation`, `sync`, `freshness`, `clearing`, …) hold the state and
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
    `cache_path` is the SQLite cache file (default: `default_cache_path()`); `options`
    (`SyncOptions`) how its sessions sync, or singly `max_rows`, the server's PostgREST row
    cap, and `page_size`, the sync's page size; `stale_after` the
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
        options: SyncOptions | None = None,
        max_rows: int | None = DEFAULT_OPTIONS.max_rows,
        page_size: int = DEFAULT_OPTIONS.page_size,
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
            options=options,
            max_rows=max_rows,
            page_size=page_size,
            session_factory=session_factory,
        )
        self.organisation = OrganisationModel(lister=organisation_lister, server=self.server)
        self.sync = SyncModel(server=self.server)
        self.clearing = ClearingModel()
        self.data = CachedDataModel()
        self._make_checks(stale_after, draw_chart=draw_chart, prober=prober)
        self.auto_refresh = AutoRefreshModel(
            sync=self.sync,
            clock=self.clock,
            probe=probe,
            enabled=auto_refresh,
            threshold_hours=self.freshness.threshold_hours,
            server=self.server,
        )
        if configured is not None:
            self.login.configured = configured
        self._link()
        self._widget = None
        self._panels = None

    def _make_checks(
        self, stale_after: timedelta, *, draw_chart: bool, prober: Prober | None
    ) -> None:
        """The steps that check the copy: freshness, diagnosis and its export."""
        self.freshness = FreshnessModel(
            clock=self.clock,
            draw_chart=draw_chart,
            threshold_hours=stale_after.total_seconds() / 3600,
        )
        self.diagnostics = DiagnosticsModel(
            clock=self.clock,
            load_on_sign_in=False,
            threshold_hours=self.freshness.threshold_hours,
            server=self.server,
            prober=prober,
        )
        self.export = ExportModel(diagnostics=self.diagnostics)

    def _link(self) -> None:
        """Wire the models: one session, one pick, one threshold, and what follows what."""
        for model in self._models[1:]:
            dlink((self.login, "session"), (model, "session"))
        for model in self._models:
            # Whichever step finds the session ended, the whole console signs out.
            model.on_session_ended = self.login.end_session
        organisation = self.organisation
        for model in (self.sync, self.data, self.auto_refresh):
            dlink((organisation, "organisation_id"), (model, "organisation_id"))
            dlink(
                (organisation, "organisation_id"),
                (model, "organisation_name"),
                transform=organisation.name_of,
            )
        dlink(
            (organisation, "organisations"),
            (self.freshness, "organisation_names"),
            transform=lambda _: organisation.names,
        )
        dlink((organisation, "organisations"), (self.diagnostics, "organisations"))
        dlink((organisation, "organisation_id"), (self.diagnostics, "organisation_id"))
        for model in (self.diagnostics, self.auto_refresh):
            dlink((self.freshness, "threshold_hours"), (model, "threshold_hours"))
        organisation.observe(self._picked, names="organisation_id")
        self.sync.observe(self._sync_finished, names="result")
        self.clearing.observe(self._cache_cleared, names="removed")
        self.diagnostics.on_show_rows = self._show_rows
        self.diagnostics.observe(self._mark_rows, names="differing")
        self.login.observe(self._who, names="session")
        self.server.back_online.append(self._back_online)

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

    def _cache_changed(self, *, cleared: bool = False) -> None:
        # One truth: after the cache changed, every panel that shows it reads it again, and
        # what was found about the old state (diagnosis, bundle) is dropped.
        self.diagnostics.forget()
        self.export.forget()
        if self.login.session is not None:
            self.freshness.schedule(self.freshness.refresh(), what="Reading the cache")
            if not cleared:  # the clearing panel read the counts itself after clearing
                self.clearing.schedule(self.clearing.refresh(), what="Reading the cache")
            self.data.schedule(self.data.refresh(), what="Reading the cache")
