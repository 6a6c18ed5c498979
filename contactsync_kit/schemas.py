"""The cache's tables, declared once; every other shape is derived from this spec.

`TABLES` names each table's columns with their storage type, UUID-ness, required-ness,
allowed values and parent relation (in the spirit of dataframely's `Schema`). From it come
the polars frame schemas (`table_schema`, `RAW_CONTACT_SCHEMA`), the embedded select, the
mapper's checks, the cache's current SQLite DDL and its merge and insert statements, and the
sync-log columns. Pure data: imports neither supabase nor SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

__all__ = [
    "CACHE_TABLES",
    "DATA_TABLES",
    "EMBEDDED_SELECT",
    "EMBEDDED_TABLES",
    "ORGANISATION_NAMES",
    "RAW_CONTACT_SCHEMA",
    "ROOT_TABLE",
    "SYNCED_TABLES",
    "SYNC_LOG",
    "SYNC_STATE",
    "TABLES",
    "TABLE_COLUMNS",
    "UUID_PATTERN",
    "Column",
    "TableSpec",
    "describe_rows",
    "listed",
    "table_schema",
]

__io__ = "none"

UUID_PATTERN: Final = (
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

SqlType = Literal["TEXT", "INTEGER"]
_POLARS_TYPES: Final[dict[str, pl.DataType]] = {"TEXT": pl.String(), "INTEGER": pl.Int64()}


@dataclass(frozen=True)
class Column:
    """One column of a cache table.

    `required` columns may not be null (the mapper refuses a page with a null there);
    `uuid` columns must hold a UUID (stored lower-case); `timestamp` columns hold ISO-8601
    UTC text (``2026-01-02T03:04:05.000000Z``), so the file sorts and compares them as text;
    `values` lists the only values allowed. `default` is the SQL default, if any.
    """

    name: str
    sql_type: SqlType = "TEXT"
    required: bool = False
    uuid: bool = False
    timestamp: bool = False
    values: tuple[str, ...] | None = None
    default: int | None = None

    @property
    def dtype(self) -> pl.DataType:
        """The polars type of this column in a frame."""
        return _POLARS_TYPES[self.sql_type]


@dataclass(frozen=True)
class TableSpec:
    """One cache table: its columns (storage order), key, parent and indexes.

    `key` is the primary key; `generated_key` marks an ``AUTOINCREMENT`` key the kit never
    writes. `parent` is ``(column, table)`` when each row belongs to a row of another table
    (notes and assignments arrive embedded under their contact). `scope` is the column that
    ties a row to its organisation. `indexes` list the indexed column groups. `noun` and
    `plural` are what people read for one row and for several ("assignment", "assignments");
    they default to the table's name.
    """

    name: str
    columns: tuple[Column, ...]
    key: str = "id"
    generated_key: bool = False
    parent: tuple[str, str] | None = None
    scope: str = "organisation_id"
    indexes: tuple[tuple[str, ...], ...] = ()
    noun: str = ""
    plural: str = ""

    def __post_init__(self) -> None:
        if not self.plural:
            object.__setattr__(self, "plural", self.name.replace("_", " "))
        if not self.noun:
            object.__setattr__(self, "noun", self.plural.removesuffix("s"))

    @property
    def title(self) -> str:
        """The plural with a capital, as a heading or a tab reads ("Assignments")."""
        return self.plural[:1].upper() + self.plural[1:]

    def __getitem__(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in storage order."""
        return tuple(column.name for column in self.columns)

    @property
    def written(self) -> tuple[str, ...]:
        """The columns the kit writes (all but a generated key)."""
        return tuple(n for n in self.names if not (self.generated_key and n == self.key))

    def frame_schema(self) -> pl.Schema:
        """The polars schema of this table's frames."""
        return pl.Schema({column.name: column.dtype for column in self.columns})


def _uuid(name: str, *, required: bool = True) -> Column:
    return Column(name, required=required, uuid=True)


def _stamp(name: str) -> Column:
    return Column(name, required=True, timestamp=True)


def _text(name: str, *, required: bool = False) -> Column:
    return Column(name, required=required)


def _count(name: str) -> Column:
    return Column(name, "INTEGER", required=True, default=0)


CONTACTS: Final = TableSpec(
    "contacts",
    (
        _uuid("id"),
        _uuid("organisation_id"),
        _uuid("chapter_id", required=False),
        _text("full_name", required=True),
        _text("phone"),
        _text("email"),
        _text("address"),
        Column("status", required=True, values=("active", "inactive", "archived")),
        _stamp("created_at"),
        _stamp("updated_at"),
    ),
    indexes=(("organisation_id",),),
)

NOTES: Final = TableSpec(
    "notes",
    (
        _uuid("id"),
        _uuid("contact_id"),
        _uuid("organisation_id"),
        _uuid("author_id", required=False),
        _text("body", required=True),
        _stamp("created_at"),
        _stamp("updated_at"),
    ),
    parent=("contact_id", "contacts"),
    indexes=(("organisation_id",), ("contact_id",)),
)

CONTACT_ASSIGNMENTS: Final = TableSpec(
    "contact_assignments",
    (
        _uuid("id"),
        _uuid("contact_id"),
        _uuid("organisation_id"),
        _uuid("assignee_id"),
        Column("role", required=True, values=("primary", "backup")),
        _stamp("assigned_at"),
        _stamp("updated_at"),
    ),
    parent=("contact_id", "contacts"),
    indexes=(("organisation_id",), ("contact_id",)),
    noun="assignment",
    plural="assignments",
)

#: The synced data tables, parents first: the one list to extend with a new table (plus the
#: server migration that creates it with its RLS policies). Everything else derives from it.
SYNCED_TABLES: Final = (CONTACTS, NOTES, CONTACT_ASSIGNMENTS)

#: Per organisation, when it last synced successfully. No personal data.
SYNC_STATE: Final = TableSpec(
    "sync_state",
    (
        Column("organisation_id", required=True),
        Column("last_synced_at", required=True),
    ),
    key="organisation_id",
    noun="sync timestamp",
    plural="sync timestamps",
)

#: Every sync attempt, for stale-cache diagnosis. Counts and codes only: no personal data.
SYNC_LOG: Final = TableSpec(
    "sync_log",
    (
        Column("id", "INTEGER"),
        Column("organisation_id", required=True),
        Column("started_at", required=True),
        Column("duration_ms", "INTEGER", required=True),
        Column("outcome", required=True),
        _text("error_kind"),
        _text("error_code"),
        Column("http_status", "INTEGER"),
        _text("message"),
        # Rows written per synced table, one column each (named as the table).
        *(_count(spec.name) for spec in SYNCED_TABLES),
        _count("pages"),
        # Cache migration 4: which mode ran ("full" / "delta") and whether the server's digest
        # proved the result (1 / 0); null in entries written before it.
        _text("mode"),
        Column("verified", "INTEGER"),
    ),
    generated_key=True,
    indexes=(("organisation_id", "started_at"),),
    noun="sync log entry",
    plural="sync log entries",
)

#: The names the server last gave the user's organisations, for reading the cache offline
#: (cache migration 5). Wiped with the cache like every other table.
ORGANISATION_NAMES: Final = TableSpec(
    "organisation_names",
    (Column("organisation_id", required=True), Column("name", required=True)),
    key="organisation_id",
)

_BOOKKEEPING: Final = (SYNC_STATE, SYNC_LOG, ORGANISATION_NAMES)
#: Every cache table by name: the synced data tables (parents first), then bookkeeping.
TABLES: Final[dict[str, TableSpec]] = {spec.name: spec for spec in (*SYNCED_TABLES, *_BOOKKEEPING)}

#: The cache's data tables, parents first (the order they are written in).
DATA_TABLES: Final = tuple(spec.name for spec in SYNCED_TABLES)
#: Every table of the cache file.
CACHE_TABLES: Final = tuple(TABLES)
#: The table a sync pages through; the others arrive embedded in its rows.
ROOT_TABLE: Final = next(name for name in DATA_TABLES if TABLES[name].parent is None)
#: The tables whose rows arrive embedded under a root row, as arrays named like the table.
EMBEDDED_TABLES: Final = tuple(name for name in DATA_TABLES if name != ROOT_TABLE)

#: Data table name -> its column names, in storage order.
TABLE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    name: TABLES[name].names for name in DATA_TABLES
}

#: The one remote query shape a sync uses (never N+1).
EMBEDDED_SELECT: Final = ", ".join(["*", *(f"{name}(*)" for name in EMBEDDED_TABLES)])


def table_schema(table: str) -> pl.Schema:
    """The polars schema of one cache table's frame (e.g. ``table_schema("sync_log")``).

    Data-table columns are all strings: timestamps are ISO-8601 UTC text, the same form
    `last_synced_at` uses. Integer columns (the sync log's counts) are Int64.
    """
    return TABLES[table].frame_schema()


def listed(words: Iterable[str]) -> str:
    """``["a", "b", "c"]`` as ``"a, b and c"``."""
    items = list(words)
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def describe_rows(counts: Mapping[str, int]) -> str:
    """Rows per synced table as people read them: ``"40 contacts, 120 notes and 1 assignment"``.

    Tables missing from `counts` read as 0; the spec's order, nouns and plurals.
    """
    return listed(
        f"{n:,} {spec.noun if n == 1 else spec.plural}"
        for spec in SYNCED_TABLES
        for n in (counts.get(spec.name, 0),)
    )


def _struct(spec: TableSpec) -> pl.Struct:
    return pl.Struct(dict(spec.frame_schema()))


#: What one row of the embedded select looks like on the wire.
RAW_CONTACT_SCHEMA: Final = pl.Schema(
    {
        **table_schema(ROOT_TABLE),
        **{name: pl.List(_struct(TABLES[name])) for name in EMBEDDED_TABLES},
    }
)
