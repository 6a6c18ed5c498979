"""Declared polars schemas: what the server sends, and what the cache stores.

Pure data: imports neither supabase nor SQLAlchemy.
"""

from __future__ import annotations

from typing import Final

import polars as pl

__all__ = [
    "ASSIGNMENT_COLUMNS",
    "ASSIGNMENT_ROLES",
    "CONTACT_COLUMNS",
    "CONTACT_STATUSES",
    "DATA_TABLES",
    "EMBEDDED_SELECT",
    "NOTE_COLUMNS",
    "RAW_CONTACT_SCHEMA",
    "TABLE_COLUMNS",
    "TIMESTAMP_COLUMNS",
    "UUID_PATTERN",
    "table_schema",
]

#: The one remote query shape a sync uses (never N+1).
EMBEDDED_SELECT: Final = "*, notes(*), contact_assignments(*)"

UUID_PATTERN: Final = (
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

CONTACT_STATUSES: Final = ("active", "inactive", "archived")
ASSIGNMENT_ROLES: Final = ("primary", "backup")

# Column -> (required, is_uuid). Timestamps are listed separately below.
CONTACT_COLUMNS: Final[dict[str, tuple[bool, bool]]] = {
    "id": (True, True),
    "organisation_id": (True, True),
    "chapter_id": (False, True),
    "full_name": (True, False),
    "phone": (False, False),
    "email": (False, False),
    "address": (False, False),
    "status": (True, False),
    "created_at": (True, False),
    "updated_at": (True, False),
}
NOTE_COLUMNS: Final[dict[str, tuple[bool, bool]]] = {
    "id": (True, True),
    "contact_id": (True, True),
    "organisation_id": (True, True),
    "author_id": (False, True),
    "body": (True, False),
    "created_at": (True, False),
    "updated_at": (True, False),
}
ASSIGNMENT_COLUMNS: Final[dict[str, tuple[bool, bool]]] = {
    "id": (True, True),
    "contact_id": (True, True),
    "organisation_id": (True, True),
    "assignee_id": (True, True),
    "role": (True, False),
    "assigned_at": (True, False),
    "updated_at": (True, False),
}

#: Cache table name -> its columns, in storage order.
TABLE_COLUMNS: Final[dict[str, dict[str, tuple[bool, bool]]]] = {
    "contacts": CONTACT_COLUMNS,
    "notes": NOTE_COLUMNS,
    "contact_assignments": ASSIGNMENT_COLUMNS,
}

#: The cache's data tables, parents first (the order they are written in).
DATA_TABLES: Final = tuple(TABLE_COLUMNS)

TIMESTAMP_COLUMNS: Final = frozenset({"created_at", "updated_at", "assigned_at"})


def table_schema(table: str) -> pl.Schema:
    """The schema of one cache table's frame: every column a string.

    Timestamps are stored as ISO-8601 UTC text (``2026-01-02T03:04:05.000000Z``), the same
    form `last_synced_at` uses, so the SQLite file sorts and compares them as text.
    """
    return pl.Schema({name: pl.String for name in TABLE_COLUMNS[table]})


def _struct(columns: dict[str, tuple[bool, bool]]) -> pl.Struct:
    return pl.Struct({name: pl.String for name in columns})


#: What one row of the embedded select looks like on the wire.
_RAW_COLUMNS: dict[str, pl.DataType] = {name: pl.String() for name in CONTACT_COLUMNS}
_RAW_COLUMNS["notes"] = pl.List(_struct(NOTE_COLUMNS))
_RAW_COLUMNS["contact_assignments"] = pl.List(_struct(ASSIGNMENT_COLUMNS))
RAW_CONTACT_SCHEMA: Final = pl.Schema(_RAW_COLUMNS)
