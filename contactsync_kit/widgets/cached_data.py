"""Cached data panel: search and browse what this computer holds for one organisation.

Only while someone is signed in, and only for the organisation picked from that person's own
memberships (read through RLS): contacts, and the notes and assignments of the contacts
shown. A search matches names, emails, phone numbers and addresses, ignoring case.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import ipywidgets as ipw
import polars as pl
from traitlets import Dict, Int, Unicode, observe

from ..bootstrap import UserSession
from . import _view
from ._base import PanelModel
from .tables import table

__all__ = ["CachedData", "CachedDataModel", "CachedDataPanel", "filter_contacts"]

_SEARCHED = ("full_name", "email", "phone", "address")


def filter_contacts(contacts: pl.DataFrame, search: str) -> pl.DataFrame:
    """Contacts whose name, email, phone or address contains `search` (any case)."""
    text = search.strip()
    if not text or contacts.is_empty():
        return contacts
    columns = [c for c in _SEARCHED if c in contacts.columns]
    hit = pl.any_horizontal(
        [
            pl.col(c)
            .cast(pl.String)
            .str.to_lowercase()
            .str.contains(text.lower(), literal=True)
            .fill_null(False)
            for c in columns
        ]
    )
    return contacts.filter(hit)


class CachedData:
    """One organisation's cached rows: contacts, and their notes and assignments."""

    def __init__(
        self, contacts: pl.DataFrame, notes: pl.DataFrame, assignments: pl.DataFrame
    ) -> None:
        self.contacts, self.notes, self.assignments = contacts, notes, assignments

    @classmethod
    def read(cls, session: UserSession, organisation_id: str) -> CachedData:
        """Read the organisation's rows from the session's cache (blocking: use a thread)."""
        cache = session.cache
        return cls(
            cache.read_table("contacts", organisation_id),
            cache.read_table("notes", organisation_id),
            cache.read_table("contact_assignments", organisation_id),
        )

    def matching(self, search: str) -> CachedData:
        """The contacts matching `search`, with only their notes and assignments."""
        contacts = filter_contacts(self.contacts, search)
        if contacts.height == self.contacts.height:
            return self
        ids = contacts.get_column("id") if "id" in contacts.columns else pl.Series([])
        return CachedData(
            contacts,
            *(
                frame.filter(pl.col("contact_id").is_in(ids.implode()))
                if "contact_id" in frame.columns
                else frame
                for frame in (self.notes, self.assignments)
            ),
        )

    def for_people(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """The three frames with names first and contact names next to contact ids."""
        names = (
            self.contacts.select(
                pl.col("id").alias("contact_id"), pl.col("full_name").alias("contact")
            )
            if {"id", "full_name"} <= set(self.contacts.columns)
            else pl.DataFrame(schema={"contact_id": pl.String, "contact": pl.String})
        )
        contacts = self.contacts.select(
            [
                c
                for c in (
                    "full_name",
                    "status",
                    "phone",
                    "email",
                    "address",
                    "updated_at",
                    "id",
                    "chapter_id",
                )
                if c in self.contacts.columns
            ]
        )

        def named(frame: pl.DataFrame, first: list[str]) -> pl.DataFrame:
            if "contact_id" not in frame.columns:
                return frame
            joined = frame.join(names, on="contact_id", how="left")
            keep = ["contact", *[c for c in first if c in joined.columns], "contact_id"]
            return joined.select(keep)

        return (
            contacts,
            named(self.notes, ["body", "updated_at", "id"]),
            named(self.assignments, ["role", "assignee_id", "assigned_at", "id"]),
        )


class CachedDataModel(PanelModel):
    """What the cache holds for the picked organisation, filtered by `search`.

    `refresh()` reads the cache again (after a sync or a clear); `counts` says how many rows
    are shown of how many cached. Signed out, it holds nothing.
    """

    organisation_id = Unicode(None, allow_none=True)
    organisation_name = Unicode("")
    search = Unicode("", help="Filter contacts by name, email, phone or address.")
    counts = Dict(help="Rows shown per table.")
    version = Int(0, help="Bumped whenever `shown` changes, for the view.")

    def __init__(self, **kwargs: Any) -> None:
        self._all: CachedData | None = None
        self.shown: CachedData | None = None
        self.read_at: datetime | None = None
        self._reads = 0
        super().__init__(**kwargs)
        self.say("info", "Sign in and pick an organisation to see its cached contacts.")

    @observe("session", "organisation_id")
    def _on_change(self, _change: object) -> None:
        self.forget()
        if self.session is not None and self.organisation_id:
            self.schedule(self.refresh(), what="Reading the cache")

    @observe("search")
    def _on_search(self, _change: object) -> None:
        self._show()

    @property
    def cached_contacts(self) -> int:
        """Contacts cached for the picked organisation, whatever the search."""
        return 0 if self._all is None else self._all.contacts.height

    def forget(self) -> None:
        """Show nothing (signed out, or before the next read)."""
        self._all = None
        self._show()

    async def refresh(self) -> CachedData | None:
        """Read the picked organisation's rows from the cache again."""
        session, org = self.session, self.organisation_id
        if session is None or not org:
            self.forget()
            return None
        self._reads += 1
        read = self._reads
        data = await asyncio.to_thread(CachedData.read, session, org)
        if read != self._reads or session is not self.session or org != self.organisation_id:
            return None  # superseded by a newer read, a sign-out or another pick
        self._all = data
        self.read_at = session.clock.now()
        self._show()
        return self.shown

    def _show(self) -> None:
        with self.hold_trait_notifications():
            self.shown = None if self._all is None else self._all.matching(self.search)
            shown = self.shown
            self.counts = (
                {}
                if shown is None
                else {
                    "contacts": shown.contacts.height,
                    "notes": shown.notes.height,
                    "contact_assignments": shown.assignments.height,
                }
            )
            self.version += 1
            name = self.organisation_name or self.organisation_id or ""
            if self.session is None:
                self.say("info", "Sign in and pick an organisation to see its cached contacts.")
            elif shown is None:
                self.say(
                    "info",
                    f"Reading the cached contacts of {name}…"
                    if self.organisation_id
                    else "Pick an organisation.",
                )
            elif self._all is not None and self._all.contacts.is_empty():
                self.say("info", f"Nothing of {name} is cached on this computer. Sync to fetch it.")
            else:
                total = self._all.contacts.height if self._all is not None else 0
                found = (
                    f"{shown.contacts.height:,} of {total:,} cached contacts match "
                    f"'{self.search.strip()}'"
                    if self.search.strip()
                    else f"{total:,} cached contacts"
                )
                self.say("ok", f"{name}: {found}.")


class CachedDataPanel(ipw.VBox):  # type: ignore[misc]
    """The view of a `CachedDataModel`: a search box, then contacts, notes, assignments."""

    def __init__(self, model: CachedDataModel, **kwargs: Any) -> None:
        self.model = model
        self.search = _view.tag(
            ipw.Text(
                description="Search",
                placeholder="name, email, phone",
                continuous_update=False,
                layout=ipw.Layout(width="28em"),
            ),
            "csk-search",
        )
        self.search.observe(lambda c: setattr(model, "search", c["new"]), names="value")
        self.status = _view.tag(ipw.HTML(), "csk-data-status")
        self.grids = _view.tag(ipw.VBox(), "csk-data")
        super().__init__(
            children=[
                _view.card(
                    "Cached data",
                    "What this computer holds for the organisation picked, for the signed-in "
                    "person "
                    "only. Sort or filter any column, or download it as CSV.",
                    self.search,
                    self.status,
                    self.grids,
                )
            ],
            **kwargs,
        )
        model.observe(self._render, names=["version", "status", "tone", "session"])
        self._render()

    def _render(self, _change: object = None) -> None:
        model = self.model
        self.search.disabled = model.session is None
        self.status.value = _view.status_html(model.tone, model.status)
        shown = model.shown
        if shown is None or not model.cached_contacts:
            _view.replace_children(self.grids, [])
            return
        contacts, notes, assignments = shown.for_people()
        now = model.read_at
        _view.replace_children(
            self.grids,
            [
                ipw.HTML("<b>Contacts</b>"),
                table(contacts, now=now, css_class="csk-contacts", file_name="contacts"),
                ipw.HTML("<b>Notes</b>"),
                table(notes, now=now, css_class="csk-notes", file_name="notes"),
                ipw.HTML("<b>Assignments</b>"),
                table(assignments, now=now, css_class="csk-assignments", file_name="assignments"),
            ],
        )
