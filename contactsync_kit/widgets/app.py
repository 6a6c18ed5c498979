"""`ContactSyncApp`: the five panels wired into one support console."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import ipywidgets as ipw
from traitlets import dlink

from ..bootstrap import UserSession
from ..clock import Clock, SystemClock
from ..results import SyncResult
from ..staleness import DEFAULT_STALE_AFTER
from .clearing import ClearingModel, ClearingPanel
from .login import LoginModel, LoginPanel, SessionFactory
from .organisation import OrganisationLister, OrganisationModel, OrganisationPanel
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
    """The five views of a `ContactSyncApp`, for tests that click."""

    login: LoginPanel
    organisation: OrganisationPanel
    sync: SyncPanel
    staleness: StalenessPanel
    clearing: ClearingPanel


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
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.login = LoginModel(url=url, key=key, email=email, password=password,
                                clock=self.clock, cache_path=cache_path,
                                http_client=http_client, max_rows=max_rows,
                                page_size=page_size,
                                session_factory=session_factory)
        self.organisation = OrganisationModel(lister=organisation_lister)
        self.sync = SyncModel()
        self.staleness = StalenessModel(clock=self.clock, draw_chart=draw_chart,
                                        threshold_hours=stale_after.total_seconds() / 3600)
        self.clearing = ClearingModel()
        for model in (self.organisation, self.sync, self.staleness, self.clearing):
            dlink((self.login, "session"), (model, "session"))
        dlink((self.organisation, "organisation_id"), (self.sync, "organisation_id"))
        dlink((self.organisation, "organisation_id"), (self.sync, "organisation_name"),
              transform=self.organisation.name_of)
        dlink((self.organisation, "organisations"), (self.staleness, "organisation_names"),
              transform=lambda _: self.organisation.names)
        self.sync.observe(self._sync_finished, names="result")
        self.clearing.observe(self._cache_cleared, names="removed")
        self._widget: ipw.VBox | None = None
        self._panels: AppPanels | None = None
        self._owned_stack: Any = None  # a demo DevStack started by for_console

    @classmethod
    def from_environment(cls, **overrides: Any) -> ContactSyncApp:
        """An app prefilled from ``SUPABASE_URL``, ``SUPABASE_ANON_KEY`` (or
        ``SUPABASE_PUBLISHABLE_KEY``), ``SUPABASE_EMAIL``, ``SUPABASE_PASSWORD`` and
        ``CONTACTSYNC_CACHE``; keyword arguments win over the environment.
        """
        env = os.environ
        values: dict[str, Any] = {
            "url": env.get("SUPABASE_URL", ""),
            "key": env.get("SUPABASE_ANON_KEY") or env.get("SUPABASE_PUBLISHABLE_KEY", ""),
            "email": env.get("SUPABASE_EMAIL", ""),
            "password": env.get("SUPABASE_PASSWORD", ""),
        }
        if env.get("CONTACTSYNC_CACHE"):
            values["cache_path"] = env["CONTACTSYNC_CACHE"]
        values.update(overrides)
        return cls(**values)

    @classmethod
    def for_console(cls) -> ContactSyncApp:
        """The support console's app (``notebooks/app.ipynb``, ``make console``).

        Prefilled from the environment (see `from_environment`); with ``CONTACTSYNC_DEMO=1``
        and no ``SUPABASE_URL`` it runs on a seeded local demo stack instead, with a demo
        login filled in. That stack lives as long as the process (the kernel).
        """
        if os.environ.get("CONTACTSYNC_DEMO") != "1" or os.environ.get("SUPABASE_URL"):
            return cls.from_environment()
        from ..devstack import DevStack  # only the demo needs the stack's dependencies

        stack = DevStack.start()
        demo = stack.seed(organisations=3, chapters_per_org=2, contacts_per_org=60)
        user = demo.user("multi-org")
        cache_path = Path(tempfile.mkdtemp(prefix="contactsync-demo-")) / "cache.sqlite3"
        app = cls.for_stack(stack, email=user.email, password=user.password,
                            cache_path=cache_path)
        app._owned_stack = stack
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
        models = (self.login, self.organisation, self.sync, self.staleness, self.clearing)
        while any(model.has_pending for model in models):
            for model in models:
                await model.wait()

    def close(self) -> None:
        """Release the cache file (not wiped: use `sign_out` for that), and stop the demo
        stack if `for_console` started one."""
        self.login.close()
        stack, self._owned_stack = self._owned_stack, None
        if stack is not None:
            stack.close()

    # -- links ------------------------------------------------------------------------------

    def _sync_finished(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            return
        self.login.refresh_token_text()
        if self.login.session is not None:
            self.staleness.schedule(self.staleness.refresh(), what="Reading the cache")
            self.clearing.schedule(self.clearing.refresh(), what="Reading the cache")

    def _cache_cleared(self, change: dict[str, Any]) -> None:
        if change["new"] and self.login.session is not None:
            self.staleness.schedule(self.staleness.refresh(), what="Reading the cache")

    # -- view -------------------------------------------------------------------------------

    @property
    def panels(self) -> AppPanels:
        """The five panels (built on first use)."""
        if self._panels is None:
            self._panels = AppPanels(
                login=LoginPanel(self.login),
                organisation=OrganisationPanel(self.organisation),
                sync=SyncPanel(self.sync),
                staleness=StalenessPanel(self.staleness),
                clearing=ClearingPanel(self.clearing),
            )
        return self._panels

    @property
    def widget(self) -> ipw.VBox:
        """The whole app as one widget (built on first use)."""
        if self._widget is None:
            panels = self.panels
            header = ipw.HTML(
                '<div style="font-size:19px;font-weight:600;color:#1f2328">ContactSync — '
                'cache support console</div><div class="csk-help" style="margin-bottom:8px">'
                "Check and refresh this machine's offline copy of an organisation's contacts. "
                "Work top to bottom: sign in, pick an organisation, sync, check freshness."
                "</div>")
            self._widget = ipw.VBox(
                [header, panels.login, panels.organisation, panels.sync, panels.staleness,
                 panels.clearing],
                layout=ipw.Layout(max_width="820px"))
            self._widget.add_class("csk-app")
        return self._widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
