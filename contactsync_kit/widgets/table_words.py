"""The synced tables as the panels show them, derived from `schemas.SYNCED_TABLES`.

No panel names a data table, a per-table column or a per-table word: titles, nouns and
plurals come from each `TableSpec`, column headings from column names ("assigned_at" reads
"assigned at"), and which columns a panel shows or searches from the columns' declared kinds.
A table added to the spec therefore shows in every panel with no change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..schemas import ROOT_TABLE, SYNCED_TABLES, TABLES, Column, TableSpec, listed

__all__ = [
    "NOUNS",
    "PLURALS",
    "ROOT",
    "css_class",
    "heading",
    "label_column",
    "listed",
    "person_columns",
    "plain_columns",
    "searched_columns",
    "table_counts",
    "words_for",
]

__io__ = "none"

#: The root table's spec (contacts): the rows every other synced table hangs under.
ROOT: Final = TABLES[ROOT_TABLE]

#: Every synced table's plural, as a sentence reads it: "contacts, notes and …".
PLURALS: Final = listed(spec.plural for spec in SYNCED_TABLES)
#: Every synced table's noun: "contact, note and …".
NOUNS: Final = listed(spec.noun for spec in SYNCED_TABLES)


def words_for(table: str) -> tuple[str, str]:
    """(one row, several rows) of any cache table in words; its name when it has none."""
    spec = TABLES.get(table)
    return (spec.noun, spec.plural) if spec is not None else (table, table)


def heading(column: str) -> str:
    """A column name as a heading: ``"assigned_at"`` reads ``"assigned at"``."""
    return column.replace("_", " ")


def css_class(spec: TableSpec) -> str:
    """The stable CSS class of a table's grid: ``csk-`` and its plural (``csk-notes``)."""
    return "csk-" + spec.plural.replace(" ", "-")


def _plain(column: Column) -> bool:
    # Free text people read: not an id, a timestamp or a code from a fixed list.
    return not (column.uuid or column.timestamp or column.values is not None)


def plain_columns(spec: TableSpec) -> tuple[str, ...]:
    """The free-text columns of a table (names, phones, bodies), in storage order."""
    return tuple(c.name for c in spec.columns if _plain(c) and c.sql_type == "TEXT")


def label_column(spec: TableSpec) -> str | None:
    """The column that names a row to people (the first required free-text column)."""
    return next((c.name for c in spec.columns if _plain(c) and c.required), None)


def searched_columns(spec: TableSpec) -> tuple[str, ...]:
    """What a search matches: the free-text columns, then the key."""
    return (*plain_columns(spec), spec.key)


def person_columns(spec: TableSpec) -> tuple[str, ...]:
    """The columns of a child table holding a person's user id (an author, an assignee).

    In a child table, a UUID column other than its key, its parent link and its scope
    points at a user: the synced tables hold no other references.
    """
    if spec.parent is None:
        return ()
    links = {spec.key, spec.parent[0], spec.scope}
    return tuple(c.name for c in spec.columns if c.uuid and c.name not in links)


def table_counts(row: Mapping[str, Any], table: str) -> tuple[int, int | None]:
    """(cached rows, rows on the server) of one table in a diagnosis's organisation row.

    The one place the panels read the diagnosis's per-table counts, whatever shape the
    diagnosis gives them (a ``tables`` mapping, or ``local_<table>`` / ``server_<table>``).
    """
    tables = row.get("tables")
    if isinstance(tables, Mapping) and table in tables:
        local, server = tables[table]
        return int(local or 0), server
    return int(row.get(f"local_{table}") or 0), row.get(f"server_{table}")
