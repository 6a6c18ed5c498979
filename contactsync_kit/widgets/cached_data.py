"""Cached data panel: search and browse what this computer holds for one organisation.

Only while someone is signed in, and only for the organisation picked from that person's own
memberships (read through RLS): the root table's rows (contacts), and the rows of every other
synced table that belong to the ones shown. A search matches the root rows' free text and
ids, ignoring case. It reads the cache only, so it works the same while the server does not
answer. Diagnose can open it on the rows it named (`show_rows`), which are then marked with
how they differ. Every synced table of `schemas.SYNCED_TABLES` gets its own grid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import ipywidgets as ipw
import polars as pl
from traitlets import Dict, Int, List, Unicode, observe

from ..bootstrap import UserSession
from ..schemas import DATA_TABLES, ROOT_TABLE, SYNCED_TABLES, TABLES, TableSpec
from ..staleness import format_age
from . import _view
from ._base import PanelModel
from ._panel import Panel, button
from .table_words import (
    ROOT,
    css_class,
    heading,
    label_column,
    person_columns,
    plain_columns,
    searched_columns,
)
from .tables import csv_link, present, rows_html

__all__ = ["CachedData", "CachedDataModel", "CachedDataPanel", "filter_contacts"]

__io__ = "ui"

#: Rows each table shows at once; the search narrows the rest.
_SHOWN: Final = 25
#: The heading of the column Diagnose fills with how a row differs.
_DIAGNOSIS: Final = "diagnosis"


def filter_contacts(contacts: pl.DataFrame, search: str) -> pl.DataFrame:
    """Root rows whose free text (name, email, phone, address) or id contains `search`."""
    text = search.strip()
    if not text or contacts.is_empty():
        return contacts
    columns = [c for c in searched_columns(ROOT) if c in contacts.columns]
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


def _children() -> tuple[TableSpec, ...]:
    return tuple(spec for spec in SYNCED_TABLES if spec.parent is not None)


class CachedData:
    """One organisation's cached rows: one frame per synced table (`frames`, by name)."""

    def __init__(self, frames: Mapping[str, pl.DataFrame], synced_at: datetime | None = None):
        self.frames: dict[str, pl.DataFrame] = {
            name: frames.get(name, pl.DataFrame(schema=TABLES[name].frame_schema()))
            for name in DATA_TABLES
        }
        #: When the organisation last synced here (None: never): "synced, 0 contacts" is
        #: then a fact, not "nothing cached".
        self.synced_at = synced_at

    @property
    def root(self) -> pl.DataFrame:
        """The root table's rows (contacts)."""
        return self.frames[ROOT_TABLE]

    def counts(self) -> dict[str, int]:
        """Rows per synced table."""
        return {name: frame.height for name, frame in self.frames.items()}

    @classmethod
    def read(cls, session: UserSession, organisation_id: str) -> CachedData:
        """Read the organisation's rows from the session's cache (blocking: use a thread)."""
        cache = session.cache
        return cls(
            {name: cache.read_table(name, organisation_id) for name in DATA_TABLES},
            cache.last_synced_at(organisation_id),
        )

    def focused(self, ids: list[str]) -> CachedData:
        """The root rows with these ids, or owning child rows with these ids."""
        wanted = {i.lower() for i in ids}
        owners: set[str] = set()
        for spec in _children():
            frame, link = self.frames[spec.name], spec.parent[0] if spec.parent else ""
            if {spec.key, link} <= set(frame.columns):
                hits = frame.filter(pl.col(spec.key).is_in(list(wanted)))
                owners.update(str(o) for o in hits.get_column(link).to_list())
        keep = list(wanted | owners)
        root = self.root
        return self._with(
            root.filter(pl.col(ROOT.key).is_in(keep)) if ROOT.key in root.columns else root
        )

    def matching(self, search: str) -> CachedData:
        """The root rows matching `search`, with only their child rows."""
        root = filter_contacts(self.root, search)
        return self if root.height == self.root.height else self._with(root)

    def _with(self, root: pl.DataFrame) -> CachedData:
        ids = root.get_column(ROOT.key) if ROOT.key in root.columns else pl.Series([])
        frames = {ROOT_TABLE: root}
        for spec in _children():
            frame, link = self.frames[spec.name], spec.parent[0] if spec.parent else ""
            keep = (
                frame.filter(pl.col(link).is_in(ids.implode())) if link in frame.columns else frame
            )
            frames[spec.name] = keep
        return CachedData(frames, self.synced_at)

    def for_people(
        self,
        people: dict[str, str] | None = None,
        marks: dict[str, str] | None = None,
    ) -> dict[str, pl.DataFrame]:
        """Each table's frame as people read it, by table name (the spec's order).

        Labels first, the root row's label next to each child row's link, person ids
        named where `people` (user id → name) knows them; `marks` (row id → words, from
        Diagnose) adds a first column saying how a row differs.
        """
        shown = {}
        for spec in SYNCED_TABLES:
            frame = _ordered(self.frames[spec.name], spec)
            if spec.parent is not None:
                frame = _named(frame, spec, self.root)
            for column in person_columns(spec):
                frame = _person(frame, column, people or {})
            shown[spec.name] = _marked(frame, spec, marks or {})
        return shown


def _ordered(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    # Free text and codes first, ids and the scope (the organisation, picked) last.
    first = [*plain_columns(spec), *(c.name for c in spec.columns if c.values)]
    rest = [c for c in spec.names if c not in first and c != spec.scope]
    return frame.select([c for c in (*first, *rest) if c in frame.columns])


def _named(frame: pl.DataFrame, spec: TableSpec, root: pl.DataFrame) -> pl.DataFrame:
    # The root row's label (the contact's name) first, next to the link to it.
    link, label, noun = spec.parent[0] if spec.parent else "", label_column(ROOT), ROOT.noun
    if label is None or link not in frame.columns or not {ROOT.key, label} <= set(root.columns):
        return frame
    names = root.select(pl.col(ROOT.key).alias(link), pl.col(label).alias(noun))
    joined = frame.join(names, on=link, how="left")
    return joined.select([noun, *[c for c in frame.columns if c != link], link])


def _person(frame: pl.DataFrame, column: str, known: dict[str, str]) -> pl.DataFrame:
    if column not in frame.columns:
        return frame
    label = column.removesuffix("_id")
    named = pl.col(column).replace_strict(
        known, default=pl.lit("someone else"), return_dtype=pl.String
    )
    return frame.with_columns(named.alias(label)).select(
        [label if c == column else c for c in frame.columns] + [column]
    )


def _marked(frame: pl.DataFrame, spec: TableSpec, marks: dict[str, str]) -> pl.DataFrame:
    if not marks or spec.key not in frame.columns:
        return frame
    mark = pl.col(spec.key).replace_strict(marks, default=None, return_dtype=pl.String)
    return frame.with_columns(mark.alias(_DIAGNOSIS)).select([_DIAGNOSIS, *frame.columns])


def visible_columns(spec: TableSpec) -> list[str]:
    """The headings support scans in a table's grid; the rest sit behind each row's "more".

    How the row differs, the root row it belongs to, its free text and codes, the people it
    names, and its own time: a timestamp of its own (``assigned_at``), else ``updated_at``.
    """
    stamps = [c.name for c in spec.columns if c.timestamp]
    own = [s for s in stamps if s not in ("created_at", "updated_at")] or [
        s for s in stamps if s == "updated_at"
    ]
    codes = [c.name for c in spec.columns if c.values]
    people = [c.removesuffix("_id") for c in person_columns(spec)]
    parent = [ROOT.noun] if spec.parent is not None else []
    shown = [*plain_columns(spec), *codes, *people, *own[:1]]
    return [_DIAGNOSIS, *parent, *(heading(c) for c in shown)]


class CachedDataModel(PanelModel):
    """What the cache holds for the picked organisation, filtered by `search`.

    `refresh()` reads the cache again (after a sync or a clear); `counts` says how many rows
    are shown per synced table. `focus` (ids, set by `show_rows`) narrows the view to the
    rows Diagnose named; `marks` (row id → words) says how each differs. `people` names user
    ids (the signed-in person's own). Signed out, it holds nothing.
    """

    organisation_id = Unicode(None, allow_none=True)
    organisation_name = Unicode("")
    search = Unicode("", help="Filter the root rows by their free text or id.")
    focus: List[str] = List(help="Row ids Diagnose asked to show; empty: no such filter.")
    focus_label = Unicode("", help="What `focus` is, in words.")
    marks = Dict(help="Row id → how it differs from the server (from Diagnose).")
    people = Dict(help="User id → a name people know (e.g. 'you (ada@example.org)').")
    counts = Dict(help="Rows shown per synced table.")
    version = Int(0, help="Bumped whenever `shown` changes, for the view.")

    def __init__(self, **kwargs: Any) -> None:
        self._all: CachedData | None = None
        self.shown: CachedData | None = None
        self.read_at: datetime | None = None
        self._reads = 0
        super().__init__(**kwargs)
        self.say("info", f"Sign in and pick an organisation to see its cached {ROOT.plural}.")

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
        """Root rows (contacts) cached for the picked organisation, whatever the search."""
        return 0 if self._all is None else self._all.root.height

    def show_rows(self, ids: list[str], label: str = "") -> None:
        """Show only these rows (root row ids, or child row ids: their root rows)."""
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
            self.counts = {} if self.shown is None else self.shown.counts()
            self.version += 1
            self._say(self.shown)

    def _say(self, shown: CachedData | None) -> None:
        name = self.organisation_name or self.organisation_id or ""
        every, many = self._all, ROOT.plural
        if self.session is None:
            self.say("info", f"Sign in and pick an organisation to see its cached {many}.")
        elif shown is None or every is None:
            reading = f"Reading the cached {many} of {name}…"
            self.say("info", reading if self.organisation_id else "Pick an organisation.")
        elif every.root.is_empty() and every.synced_at is not None:
            ago = format_age(((self.read_at or every.synced_at) - every.synced_at).total_seconds())
            self.say(
                "ok",
                f"{name}: synced {ago} ago, 0 {many} — the server shows you no {many} "
                "in this organisation.",
            )
        elif every.root.is_empty():
            self.say("info", f"Nothing of {name} is cached on this computer. Sync to fetch it.")
        else:
            self.say("ok", f"{name}: {self._found(shown.root.height, every.root.height)}.")

    def _found(self, shown: int, total: int) -> str:
        many = ROOT.plural
        if self.focus:
            return f"showing {shown:,} of {total:,} cached {many}: {self.focus_label}"
        if self.search.strip():
            return f"{shown:,} of {total:,} cached {many} match '{self.search.strip()}'"
        return f"{total:,} cached {many}"


_ALL_TIP = "Drop the filter from the diagnosis and the search"


class CachedDataPanel(Panel[CachedDataModel]):
    """The view of a `CachedDataModel`: one search box, then one grid per synced table
    (the columns support scans; the rest behind each row's "more"; a CSV of each).
    """

    title = "Cached data"
    help_text = (
        "What this computer holds for the organisation picked, for the signed-in person only. "
        "It reads this computer's copy, so it works while the server does not answer."
    )
    watched = ("version",)
    status_css = "csk-data-status"

    def build(self) -> list[Any]:
        """The search box, Show all, the status line and the grids."""
        model = self.model
        self.search = _view.tag(
            ipw.Text(
                description="Search",
                placeholder=", ".join(map(heading, plain_columns(ROOT))) + f" or {ROOT.key}",
                continuous_update=False,
                layout=ipw.Layout(width="28em"),
            ),
            "csk-search",
        )
        self.search.observe(lambda c: setattr(model, "search", c["new"]), names="value")
        model.observe(self._search_changed, names="search")
        self.show_all_button = button("Show all", "csk-show-all", model.show_all, "times", _ALL_TIP)
        self.grids = _view.tag(ipw.HTML(), "csk-data")
        return [ipw.HBox([self.search, self.show_all_button]), self.status, self.grids]

    def _search_changed(self, change: dict[str, Any]) -> None:
        if self.search.value != change["new"]:
            self.search.value = change["new"]

    def render(self) -> None:
        """Enable the search, and draw one grid per synced table."""
        model = self.model
        self.search.disabled = model.session is None
        self.show_all_button.layout.display = "" if model.focus or model.search.strip() else "none"
        shown = model.shown
        if shown is None or not model.cached_contacts:
            self.grids.value = ""
            return
        frames = shown.for_people(dict(model.people), dict(model.marks))
        self.grids.value = "".join(
            _grid_html(spec, present(frames[spec.name], now=model.read_at))
            for spec in SYNCED_TABLES
        )


def _grid_html(spec: TableSpec, people: pl.DataFrame) -> str:
    return (
        f"<div style='margin-top:8px'><b>{_view.esc(spec.title)}</b> <span class='csk-help'>"
        f"{people.height:,} · {csv_link(people, spec.name)}</span></div>"
        + rows_html(people, visible=visible_columns(spec), limit=_SHOWN, css_class=css_class(spec))
    )
