"""Cached data panel: search and browse what this computer holds for one organisation.

Only while someone is signed in, and only for the organisation picked from that person's own
memberships (read through RLS): contacts, and the notes and assignments of the contacts
shown. A search matches names, emails, phone numbers, addresses and ids, ignoring case. It
reads the cache only, so it works the same while the server does not answer. Diagnose can
open it on the rows it named (`show_rows`), which are then marked with how they differ.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Final

import ipywidgets as ipw
import polars as pl
from traitlets import Dict, Int, List, Unicode, observe

from ..bootstrap import UserSession
from ..staleness import format_age
from . import _view
from ._base import PanelModel
from .static import StaticFallback
from .tables import csv_link, present, rows_html

__all__ = ["CachedData", "CachedDataModel", "CachedDataPanel", "filter_contacts"]

_SEARCHED = ("full_name", "email", "phone", "address", "id")
#: Rows each table shows at once; the search narrows the rest.
_SHOWN: Final = 25


def filter_contacts(contacts: pl.DataFrame, search: str) -> pl.DataFrame:
    """Contacts whose name, email, phone, address or id contains `search` (any case)."""
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
        self,
        contacts: pl.DataFrame,
        notes: pl.DataFrame,
        assignments: pl.DataFrame,
        synced_at: datetime | None = None,
    ) -> None:
        self.contacts, self.notes, self.assignments = contacts, notes, assignments
        #: When the organisation last synced here (None: never): "synced, 0 contacts" is
        #: then a fact, not "nothing cached".
        self.synced_at = synced_at

    @classmethod
    def read(cls, session: UserSession, organisation_id: str) -> CachedData:
        """Read the organisation's rows from the session's cache (blocking: use a thread)."""
        cache = session.cache
        return cls(
            cache.read_table("contacts", organisation_id),
            cache.read_table("notes", organisation_id),
            cache.read_table("contact_assignments", organisation_id),
            cache.last_synced_at(organisation_id),
        )

    def focused(self, ids: list[str]) -> CachedData:
        """The contacts with these ids, or owning notes / assignments with these ids."""
        wanted = {i.lower() for i in ids}
        owners: set[str] = set()
        for frame in (self.notes, self.assignments):
            if {"id", "contact_id"} <= set(frame.columns):
                owners.update(
                    str(o)
                    for o in frame.filter(pl.col("id").is_in(list(wanted)))
                    .get_column("contact_id")
                    .to_list()
                )
        keep = list(wanted | {str(o) for o in owners})
        contacts = (
            self.contacts.filter(pl.col("id").is_in(keep))
            if "id" in self.contacts.columns
            else self.contacts
        )
        return self._with(contacts)

    def matching(self, search: str) -> CachedData:
        """The contacts matching `search`, with only their notes and assignments."""
        contacts = filter_contacts(self.contacts, search)
        if contacts.height == self.contacts.height:
            return self
        return self._with(contacts)

    def _with(self, contacts: pl.DataFrame) -> CachedData:
        ids = contacts.get_column("id") if "id" in contacts.columns else pl.Series([])
        notes, assignments = (
            frame.filter(pl.col("contact_id").is_in(ids.implode()))
            if "contact_id" in frame.columns
            else frame
            for frame in (self.notes, self.assignments)
        )
        return CachedData(contacts, notes, assignments, self.synced_at)

    def for_people(
        self,
        people: dict[str, str] | None = None,
        marks: dict[str, str] | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """The three frames with names first and contact names next to contact ids.

        `people` names user ids (assignees, note authors) where a name is known; `marks`
        (row id → words, from Diagnose) adds a first column saying how a row differs.
        """
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

        def person(frame: pl.DataFrame, column: str, label: str) -> pl.DataFrame:
            if column not in frame.columns:
                return frame
            known = people or {}
            return frame.with_columns(
                pl.col(column)
                .replace_strict(known, default=pl.lit("someone else"), return_dtype=pl.String)
                .alias(label)
            ).select([label if c == column else c for c in frame.columns] + [column])

        def marked(frame: pl.DataFrame) -> pl.DataFrame:
            if not marks or "id" not in frame.columns:
                return frame
            return frame.with_columns(
                pl.col("id")
                .replace_strict(marks, default=None, return_dtype=pl.String)
                .alias("diagnosis")
            ).select(["diagnosis", *frame.columns])

        return (
            marked(contacts),
            marked(
                person(
                    named(self.notes, ["body", "updated_at", "author_id", "id"]),
                    "author_id",
                    "author",
                )
            ),
            marked(
                person(
                    named(self.assignments, ["role", "assignee_id", "assigned_at", "id"]),
                    "assignee_id",
                    "assignee",
                )
            ),
        )


class CachedDataModel(PanelModel):
    """What the cache holds for the picked organisation, filtered by `search`.

    `refresh()` reads the cache again (after a sync or a clear); `counts` says how many rows
    are shown of how many cached. `focus` (ids, set by `show_rows`) narrows the view to the
    rows Diagnose named; `marks` (row id → words) says how each differs. `people` names user
    ids (the signed-in person's own). Signed out, it holds nothing.
    """

    organisation_id = Unicode(None, allow_none=True)
    organisation_name = Unicode("")
    search = Unicode("", help="Filter contacts by name, email, phone, address or id.")
    focus: List[str] = List(help="Row ids Diagnose asked to show; empty: no such filter.")
    focus_label = Unicode("", help="What `focus` is, in words.")
    marks = Dict(help="Row id → how it differs from the server (from Diagnose).")
    people = Dict(help="User id → a name people know (e.g. 'you (ada@example.org)').")
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
        with self.hold_trait_notifications():
            self.focus, self.focus_label, self.marks = [], "", {}
        self.forget()
        if self.session is not None and self.organisation_id:
            self.schedule(self.refresh(), what="Reading the cache")

    @observe("search", "focus", "marks", "people")
    def _on_search(self, _change: object) -> None:
        self._show()

    @property
    def cached_contacts(self) -> int:
        """Contacts cached for the picked organisation, whatever the search."""
        return 0 if self._all is None else self._all.contacts.height

    def show_rows(self, ids: list[str], label: str = "") -> None:
        """Show only these rows (contact ids, or note / assignment ids: their contacts)."""
        with self.hold_trait_notifications():
            self.search = ""
            self.focus_label = label or f"{len(ids)} row(s) from the diagnosis"
            self.focus = list(ids)

    def show_all(self) -> None:
        """Drop the diagnosis filter and the search."""
        with self.hold_trait_notifications():
            self.focus, self.focus_label, self.search = [], "", ""

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
            data = self._all
            if data is not None and self.focus:
                data = data.focused(list(self.focus))
            self.shown = None if data is None else data.matching(self.search)
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
            self._say(shown)

    def _say(self, shown: CachedData | None) -> None:
        name = self.organisation_name or self.organisation_id or ""
        every = self._all
        if self.session is None:
            self.say("info", "Sign in and pick an organisation to see its cached contacts.")
        elif shown is None or every is None:
            self.say(
                "info",
                f"Reading the cached contacts of {name}…"
                if self.organisation_id
                else "Pick an organisation.",
            )
        elif every.contacts.is_empty() and every.synced_at is not None:
            ago = format_age(((self.read_at or every.synced_at) - every.synced_at).total_seconds())
            self.say(
                "ok",
                f"{name}: synced {ago} ago, 0 contacts — the server shows you no contacts "
                "in this organisation.",
            )
        elif every.contacts.is_empty():
            self.say("info", f"Nothing of {name} is cached on this computer. Sync to fetch it.")
        else:
            total = every.contacts.height
            if self.focus:
                found = (
                    f"showing {shown.contacts.height:,} of {total:,} cached contacts: "
                    f"{self.focus_label}"
                )
            elif self.search.strip():
                found = (
                    f"{shown.contacts.height:,} of {total:,} cached contacts match "
                    f"'{self.search.strip()}'"
                )
            else:
                found = f"{total:,} cached contacts"
            self.say("ok", f"{name}: {found}.")


#: The columns support scans per table; the rest is behind each row's "more".
_VISIBLE: Final = {
    "contacts": ["diagnosis", "full name", "status", "phone", "email", "updated at"],
    "notes": ["diagnosis", "contact", "body", "author", "updated at"],
    "contact_assignments": ["diagnosis", "contact", "role", "assignee", "assigned at"],
}


class CachedDataPanel(StaticFallback, ipw.VBox):  # type: ignore[misc]
    """The view of a `CachedDataModel`: one search box, then contacts, notes, assignments
    (the columns support scans; the rest behind each row's "more"; a CSV of each).
    """

    def __init__(self, model: CachedDataModel, **kwargs: Any) -> None:
        self.model = model
        self.search = _view.tag(
            ipw.Text(
                description="Search",
                placeholder="name, email, phone, address or id",
                continuous_update=False,
                layout=ipw.Layout(width="28em"),
            ),
            "csk-search",
        )
        self.search.observe(lambda c: setattr(model, "search", c["new"]), names="value")
        model.observe(self._search_changed, names="search")
        self.show_all_button = _view.tag(
            ipw.Button(
                description="Show all",
                icon="times",
                tooltip="Drop the filter from the diagnosis and the search",
            ),
            "csk-show-all",
        )
        self.show_all_button.on_click(lambda _: model.show_all())
        self.status = _view.tag(ipw.HTML(), "csk-data-status")
        self.grids = _view.tag(ipw.HTML(), "csk-data")
        super().__init__(
            children=[
                _view.card(
                    "Cached data",
                    "What this computer holds for the organisation picked, for the signed-in "
                    "person only. It reads this computer's copy, so it works while the server "
                    "does not answer.",
                    ipw.HBox([self.search, self.show_all_button]),
                    self.status,
                    self.grids,
                )
            ],
            **kwargs,
        )
        model.observe(self._render, names=["version", "status", "tone", "session"])
        self._render()

    def _search_changed(self, change: dict[str, Any]) -> None:
        if self.search.value != change["new"]:
            self.search.value = change["new"]

    def _render(self, _change: object = None) -> None:
        model = self.model
        self.search.disabled = model.session is None
        self.show_all_button.layout.display = "" if model.focus or model.search.strip() else "none"
        self.status.value = _view.status_html(model.tone, model.status)
        shown = model.shown
        if shown is None or not model.cached_contacts:
            self.grids.value = ""
            return
        frames = shown.for_people(dict(model.people), dict(model.marks))
        parts = []
        for (title, key, css), frame in zip(
            (
                ("Contacts", "contacts", "csk-contacts"),
                ("Notes", "notes", "csk-notes"),
                ("Assignments", "contact_assignments", "csk-assignments"),
            ),
            frames,
            strict=True,
        ):
            people = present(frame, now=model.read_at)
            parts.append(
                f"<div style='margin-top:8px'><b>{title}</b> <span class='csk-help'>"
                f"{people.height:,} · {csv_link(people, key)}</span></div>"
                + rows_html(people, visible=_VISIBLE[key], limit=_SHOWN, css_class=css)
            )
        self.grids.value = "".join(parts)
