"""Organisation panel: pick one of the organisations the server lets this user see."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import ipywidgets as ipw
from traitlets import List, Unicode, dlink, link, observe

from ..bootstrap import UserSession
from ..remote import RemoteFailure, RemoteReader
from . import _view
from ._base import PanelModel

__all__ = [
    "OrganisationLister",
    "OrganisationModel",
    "OrganisationPanel",
    "list_organisations",
    "organisation_names",
]

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


class OrganisationModel(PanelModel):
    """The organisations the signed-in user belongs to, and the one picked.

    The list comes from the server through Row Level Security, never typed in by hand; it is
    reloaded whenever the session changes. `organisations` holds ``(name, id)`` pairs sorted
    by name; `organisation_id` is the pick (the first organisation after a load).
    """

    organisations: List[tuple[str, str]] = List(
        help="(name, id) pairs the user may see, sorted by name."
    )
    organisation_id = Unicode(None, allow_none=True, help="The picked organisation's id.")

    def __init__(self, *, lister: OrganisationLister | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lister: OrganisationLister = lister or list_organisations
        self.say("info", "Sign in to see your organisations.")

    @observe("session")
    def _on_session(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            self.organisations = []
            self.organisation_id = None
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
        """Reload the list from the server; returns the ``(name, id)`` pairs."""
        session = self.session
        if session is None:
            self.say("info", "Sign in to see your organisations.")
            return []
        self.busy = True
        self.say("busy", "Loading your organisations…")
        try:
            rows = await self._lister(session)
        except RemoteFailure as exc:
            self.say(
                "error",
                "Could not load your organisations: the server did not answer "
                "as expected. Press Reload; if it keeps failing, sign out and in again. "
                f"(Technical: {exc.error.kind.value}: {exc.error.message})",
            )
            return []
        finally:
            self.busy = False
        if session is not self.session:
            return []  # signed out (or in as someone else) while loading
        pairs = sorted(
            ((str(r.get("name") or r["id"]), str(r["id"])) for r in rows),
            key=lambda pair: (pair[0].casefold(), pair[1]),
        )
        self.organisations = pairs
        ids = [oid for _, oid in pairs]
        if self.organisation_id not in ids:
            self.organisation_id = ids[0] if ids else None
        if pairs:
            self.say(
                "ok", f"You belong to {len(pairs)} organisation{'' if len(pairs) == 1 else 's'}."
            )
        else:
            self.say(
                "warn",
                "This account belongs to no organisation, so there is nothing to "
                "sync. Ask an administrator to add you.",
            )
        return pairs

    def select(self, organisation: str) -> str:
        """Pick an organisation by id or by name; returns its id."""
        for name, oid in self.organisations:
            if organisation in (oid, name):
                self.organisation_id = oid
                return str(oid)
        raise ValueError(f"{organisation!r} is not one of this user's organisations")


class OrganisationPanel(ipw.VBox):  # type: ignore[misc]
    """The view of an `OrganisationModel`: a dropdown (names shown, ids as values)."""

    def __init__(self, model: OrganisationModel, **kwargs: Any) -> None:
        self.model = model
        self.dropdown = ipw.Dropdown(
            description="Organisation",
            options=[],
            layout=ipw.Layout(width="34em"),
            style={"description_width": "7em"},
        )
        dlink(
            (model, "organisations"),
            (self.dropdown, "options"),
            transform=lambda pairs: [tuple(p) for p in pairs],
        )
        link((model, "organisation_id"), (self.dropdown, "value"))
        self.reload_button = ipw.Button(
            description="Reload", icon="refresh", tooltip="Read the list again from the server"
        )
        self.reload_button.on_click(
            lambda _: model.schedule(model.refresh(), what="Loading organisations")
        )
        _view.tag(self.dropdown, "csk-organisation")
        self.id_line = ipw.HTML()
        self.status = _view.tag(ipw.HTML(), "csk-organisation-status")
        super().__init__(
            children=[
                _view.card(
                    "Organisation",
                    "Only the organisations this account belongs to are listed: the server's Row "
                    "Level Security decides.",
                    ipw.HBox([self.dropdown, self.reload_button]),
                    self.id_line,
                    self.status,
                )
            ],
            **kwargs,
        )
        model.observe(
            self._render,
            names=["session", "busy", "status", "tone", "organisation_id", "organisations"],
        )
        self._render()

    def _render(self, _change: object = None) -> None:
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
        self.status.value = _view.status_html(model.tone, model.status)
