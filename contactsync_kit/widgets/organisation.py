"""Organisation panel: pick one of the organisations the server lets this user see."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import ipywidgets as ipw
from traitlets import Bool, List, Unicode, observe

from ..bootstrap import UserSession
from ..remote import RemoteFailure, RemoteReader
from . import _view
from ._base import PanelModel
from ._panel import Panel, button, scheduled
from .connection import ServerStatusModel, is_outage
from .known_names import read_names, remember_names

__all__ = [
    "OrganisationLister",
    "OrganisationModel",
    "OrganisationPanel",
    "list_organisations",
    "organisation_names",
]

__io__ = "ui"

#: Reads the organisations a session may see, as rows with ``id`` and ``name``.
OrganisationLister = Callable[[UserSession], Awaitable[list[dict[str, Any]]]]


async def list_organisations(session: UserSession) -> list[dict[str, Any]]:
    """The signed-in user's organisations, read through RLS (no client-side filter)."""
    return await RemoteReader(session.client).rows("organisations", "id, name")


async def organisation_names(session: UserSession) -> dict[str, str]:
    """Organisation id → name for the organisations the server shows this user (RLS).

    For labels in tables and verdicts; on a real project this is the only source of names.
    """
    return {str(r["id"]): str(r.get("name") or r["id"]) for r in await list_organisations(session)}


def _cached_organisations(session: UserSession) -> tuple[dict[str, str], str | None]:
    """The organisations this computer's cache knows (cached rows or a sync log entry), named
    from the names remembered beside it, and the one synced last (blocking).
    """
    cache = session.cache
    overview = cache.overview()
    log = cache.read_table("sync_log", None, ("organisation_id", "started_at"))
    ids = {str(o) for o in overview.get_column("organisation_id").to_list() if o}
    ids.update(str(o) for o in log.get_column("organisation_id").to_list() if o)
    names = read_names(session)
    last = log.sort("started_at").get_column("organisation_id").to_list()
    return {oid: names.get(oid, f"organisation {oid[:8]}") for oid in ids}, (
        str(last[-1]) if last else None
    )


def _sorted_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(name, id) pairs by name, ignoring case (then by id)."""
    return sorted(pairs, key=lambda pair: (pair[0].casefold(), pair[1]))


class OrganisationModel(PanelModel):
    """The organisations the signed-in user belongs to, and the one picked.

    The list comes from the server through Row Level Security, never typed in by hand; it is
    reloaded whenever the session changes. `organisations` holds ``(name, id)`` pairs sorted
    by name; `organisation_id` is the pick: kept across reloads, else the organisation synced
    last on this computer, else the first. When the server does not answer, the list is the
    organisations cached on this computer, named as the server last named them
    (`from_cache` is then True), and the console works from the cache.
    """

    organisations: List[tuple[str, str]] = List(
        help="(name, id) pairs the user may see, sorted by name."
    )
    organisation_id = Unicode(None, allow_none=True, help="The picked organisation's id.")
    from_cache = Bool(False, help="True when the list came from the cache (server silent).")

    def __init__(
        self,
        *,
        lister: OrganisationLister | None = None,
        server: ServerStatusModel | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._lister: OrganisationLister = lister or list_organisations
        self.server = server
        self._loads = 0
        self.say("info", "Sign in to see your organisations.")

    @observe("session")
    def _on_session(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            with self.hold_trait_notifications():
                self.organisations = []
                self.organisation_id = None
                self.from_cache = False
            self.say("info", "Sign in to see your organisations.")
        else:
            self.schedule(self.refresh(), what="Loading organisations")

    def name_of(self, organisation_id: str | None) -> str:
        """The picked (or given) organisation's name, or its id when unknown."""
        for name, oid in self.organisations:
            if oid == organisation_id:
                return str(name)
        return organisation_id or ""

    @property
    def names(self) -> dict[str, str]:
        """Organisation id → name."""
        return {str(oid): str(name) for name, oid in self.organisations}

    async def refresh(self) -> list[tuple[str, str]]:
        """Reload the list from the server (from the cache when it does not answer)."""
        session = self.session
        if session is None:
            self.say("info", "Sign in to see your organisations.")
            return []
        self._loads += 1
        load = self._loads
        keep = self.organisation_id
        self.busy = True
        self.say("busy", "Loading your organisations…")
        try:
            try:
                rows = await self._lister(session)
            except RemoteFailure as exc:
                if load != self._loads or session is not self.session:
                    return []
                if not is_outage(exc.error):
                    self.say(
                        "error",
                        "Could not load your organisations: the server answered with an "
                        "error. Press Reload to try again; the copy on this computer is kept. "
                        f"(Technical: {exc.error.kind.value}: {exc.error.message})",
                    )
                    return []
                if self.server is not None:
                    self.server.failed(exc.error.message)
                return await self._from_cache(session, keep, load)
            known, last = await asyncio.to_thread(_cached_organisations, session)
        finally:
            if load == self._loads:
                self.busy = False
        if load != self._loads or session is not self.session:
            return []  # signed out (or in as someone else, or reloaded again) meanwhile
        if self.server is not None:
            self.server.answered()
        pairs = _sorted_pairs((str(r.get("name") or r["id"]), str(r["id"])) for r in rows)
        names = {oid: name for name, oid in pairs}
        await asyncio.to_thread(remember_names, session, names)
        self._show(pairs, keep, last, from_cache=False)
        self._say_loaded(len(pairs), gone=len(set(known) - set(names)))
        return pairs

    def _say_loaded(self, found: int, *, gone: int) -> None:
        if not found:
            self.say(
                "warn",
                "This account belongs to no organisation, so there is nothing to "
                "sync. Ask an administrator to add you.",
            )
            return
        extra = (
            f" This computer also holds {gone} organisation{'' if gone == 1 else 's'} the "
            "server no longer shows you."
            if gone
            else ""
        )
        self.say("ok", f"You belong to {found} organisation{'' if found == 1 else 's'}." + extra)

    async def _from_cache(
        self, session: UserSession, keep: str | None, load: int
    ) -> list[tuple[str, str]]:
        known, last = await asyncio.to_thread(_cached_organisations, session)
        if load != self._loads or session is not self.session:
            return []
        pairs = _sorted_pairs((name, oid) for oid, name in known.items())
        self._show(pairs, keep, last, from_cache=True)
        if pairs:
            self.say(
                "warn",
                "The server does not answer, so these are the organisations cached on this "
                "computer. Everything cached stays readable; the list is read from the server "
                "again as soon as it answers.",
            )
        else:
            self.say(
                "warn",
                "The server does not answer and nothing is cached on this computer yet. The "
                "list is read from the server as soon as it answers.",
            )
        return pairs

    def _show(
        self, pairs: list[tuple[str, str]], keep: str | None, last: str | None, *, from_cache: bool
    ) -> None:
        ids = [oid for _, oid in pairs]
        pick = next((o for o in (keep, last) if o in ids), ids[0] if ids else None)
        with self.hold_trait_notifications():
            self.from_cache = from_cache
            self.organisations = pairs
            self.organisation_id = pick

    def select(self, organisation: str) -> str:
        """Pick an organisation by id or by name; returns its id."""
        for name, oid in self.organisations:
            if organisation in (oid, name):
                self.organisation_id = oid
                return str(oid)
        raise ValueError(f"{organisation!r} is not one of this user's organisations")


_RELOAD_TIP = "Read the list again from the server"


class OrganisationPanel(Panel[OrganisationModel]):
    """The view of an `OrganisationModel`: a dropdown (names shown, ids as values)."""

    title = "Organisation"
    help_text = (
        "Only the organisations this account belongs to are listed: the server's Row Level "
        "Security decides."
    )
    watched = ("organisation_id", "organisations")
    status_css = "csk-organisation-status"

    def build(self) -> list[Any]:
        """The dropdown, Reload and the organisation's id."""
        model = self.model
        self.dropdown = _view.tag(
            ipw.Dropdown(
                description="Organisation",
                options=[],
                layout=ipw.Layout(width="34em"),
                style={"description_width": "7em"},
            ),
            "csk-organisation",
        )
        # Options and value are set together: a dropdown given new options falls back to the
        # first one, which must never become the pick (a reload keeps the chosen organisation).
        self._syncing = False
        self.dropdown.observe(self._picked, names="value")
        model.observe(self._fill, names=["organisations", "organisation_id"])
        self._fill()
        reload = scheduled(model, model.refresh, "Loading organisations")
        self.reload_button = button("Reload", "csk-reload", reload, "refresh", _RELOAD_TIP)
        self.id_line = ipw.HTML()
        return [ipw.HBox([self.dropdown, self.reload_button]), self.id_line, self.status]

    def _fill(self, _change: object = None) -> None:
        options = [tuple(p) for p in self.model.organisations]
        self._syncing = True
        try:
            if list(self.dropdown.options) != options:
                self.dropdown.options = options
            self.dropdown.value = self.model.organisation_id if options else None
        finally:
            self._syncing = False

    def _picked(self, change: dict[str, Any]) -> None:
        if not self._syncing and change["new"] is not None:
            self.model.organisation_id = change["new"]

    def render(self) -> None:
        """Enable the dropdown and Reload; show the picked organisation's id."""
        model = self.model
        self.dropdown.disabled = model.session is None or model.busy or not model.organisations
        self.reload_button.disabled = model.session is None or model.busy
        oid = model.organisation_id
        self.id_line.value = (
            _view.details_html(
                [("Organisation id", f'<span class="csk-mono">{_view.esc(oid)}</span>')]
            )
            if oid
            else ""
        )
