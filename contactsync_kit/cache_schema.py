"""The cache file's schema: the frozen migrations, and the DDL derived from the spec.

Shipped migrations are history and never change. Whatever the spec (`schemas.TABLES`) has that
a migrated file lacks, a table added to `SYNCED_TABLES` say, is created from the spec after
them (`spec_gaps_sql`), so a new synced table needs no hand-written cache migration. Pure:
strings in, strings out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .schemas import TABLES, TableSpec

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "FileShape",
    "create_table_sql",
    "index_sql",
    "spec_gaps_sql",
]

__io__ = "none"

# Each migration is frozen SQL: never edit one that has shipped, add the next instead.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE contacts (
            id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, chapter_id TEXT,
            full_name TEXT NOT NULL, phone TEXT, email TEXT, address TEXT,
            status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        "CREATE INDEX contacts_organisation ON contacts (organisation_id)",
        """CREATE TABLE notes (
            id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, organisation_id TEXT NOT NULL,
            author_id TEXT, body TEXT NOT NULL, created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        "CREATE INDEX notes_organisation ON notes (organisation_id)",
        "CREATE INDEX notes_contact ON notes (contact_id)",
        """CREATE TABLE contact_assignments (
            id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, organisation_id TEXT NOT NULL,
            assignee_id TEXT NOT NULL, role TEXT NOT NULL, assigned_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        "CREATE INDEX contact_assignments_organisation ON contact_assignments (organisation_id)",
        "CREATE INDEX contact_assignments_contact ON contact_assignments (contact_id)",
        # Holds no personal data: an organisation id and an ISO-8601 UTC timestamp.
        """CREATE TABLE sync_state (
            organisation_id TEXT PRIMARY KEY, last_synced_at TEXT NOT NULL)""",
    ),
    2: (
        # Every sync attempt, for stale-cache diagnosis. Counts and codes only: no personal data.
        """CREATE TABLE sync_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT, organisation_id TEXT NOT NULL,
            started_at TEXT NOT NULL, duration_ms INTEGER NOT NULL, outcome TEXT NOT NULL,
            error_kind TEXT, error_code TEXT, http_status INTEGER, message TEXT,
            contacts INTEGER NOT NULL DEFAULT 0, notes INTEGER NOT NULL DEFAULT 0,
            contact_assignments INTEGER NOT NULL DEFAULT 0, pages INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX sync_log_organisation ON sync_log (organisation_id, started_at)",
    ),
    3: (
        # Verified incremental sync (delta_store.py): per organisation and user, the server
        # watermarks, the mode and outcome of the last sync, and the digest of the cached rows
        # per table and id bucket. Ids, timestamps and numbers only: no personal data.
        """CREATE TABLE sync_digest_state (
            organisation_id TEXT NOT NULL, user_id TEXT NOT NULL, mode TEXT NOT NULL,
            verified INTEGER NOT NULL, synced_at TEXT NOT NULL, watermarks TEXT NOT NULL,
            PRIMARY KEY (organisation_id, user_id))""",
        """CREATE TABLE sync_digest_buckets (
            organisation_id TEXT NOT NULL, user_id TEXT NOT NULL, table_name TEXT NOT NULL,
            bucket TEXT NOT NULL, row_count INTEGER NOT NULL, s1 INTEGER NOT NULL,
            s2 INTEGER NOT NULL,
            PRIMARY KEY (organisation_id, user_id, table_name, bucket))""",
        # Wiped with the cache: clear() deletes sync_state, and the digest goes with it.
        """CREATE TRIGGER sync_state_wipes_digest AFTER DELETE ON sync_state BEGIN
            DELETE FROM sync_digest_buckets WHERE organisation_id = OLD.organisation_id;
            DELETE FROM sync_digest_state WHERE organisation_id = OLD.organisation_id;
        END""",
    ),
    4: (
        # Which mode each sync attempt ran, and whether the server's digest proved it.
        "ALTER TABLE sync_log ADD COLUMN mode TEXT",
        "ALTER TABLE sync_log ADD COLUMN verified INTEGER",
    ),
    5: (
        # The organisations' names, so the cache can be read by name while the server is down.
        """CREATE TABLE organisation_names (
            organisation_id TEXT PRIMARY KEY, name TEXT NOT NULL)""",
    ),
}
SCHEMA_VERSION: Final = max(MIGRATIONS)


def create_table_sql(spec: TableSpec) -> tuple[str, ...]:
    """The current schema's DDL for one table, derived from its spec: table, then indexes.

    Shipped migrations stay frozen SQL; a unit test holds a freshly migrated file equal to
    this (``PRAGMA table_info`` and indexes), so the spec and the history cannot drift. As in
    the frozen history, the key column is not declared NOT NULL (the mapper refuses null ids).
    """

    def column_sql(column_name: str) -> str:
        column = spec[column_name]
        parts = [column.name, column.sql_type]
        if column.name == spec.key:
            parts.append("PRIMARY KEY AUTOINCREMENT" if spec.generated_key else "PRIMARY KEY")
        elif column.required:
            parts.append("NOT NULL")
        if column.default is not None:
            parts.append(f"DEFAULT {column.default}")
        return " ".join(parts)

    table = f"CREATE TABLE {spec.name} ({', '.join(column_sql(c) for c in spec.names)})"
    return (table, *index_sql(spec).values())


def index_sql(spec: TableSpec) -> dict[str, str]:
    """Index name -> its ``CREATE INDEX``, for each of the spec's indexed column groups."""
    return {
        name: f"CREATE INDEX {name} ON {spec.name} ({', '.join(columns)})"
        for columns in spec.indexes
        for name in (f"{spec.name}_{columns[0].removesuffix('_id')}",)
    }


FileShape = Mapping[str, tuple[set[str], set[str]]]
"""Table name -> (its column names, its index names), as a cache file has them."""


def spec_gaps_sql(shape: FileShape) -> tuple[str, ...]:
    """The DDL that brings a migrated file up to the spec: what the spec has and it lacks.

    A table added to `schemas.SYNCED_TABLES` (and the sync log's count column for it) needs no
    hand-written cache migration: it is created here from its spec, after the frozen ones. An
    added column is nullable unless it has a default, as SQLite's ``ADD COLUMN`` requires.
    """
    statements: list[str] = []
    for spec in TABLES.values():
        if spec.name not in shape:
            statements.extend(create_table_sql(spec))
            continue
        columns, indexes = shape[spec.name]
        for column in spec.columns:
            if column.name not in columns:
                default = "" if column.default is None else f" NOT NULL DEFAULT {column.default}"
                statements.append(
                    f"ALTER TABLE {spec.name} ADD COLUMN {column.name} {column.sql_type}{default}"
                )
        statements.extend(sql for name, sql in index_sql(spec).items() if name not in indexes)
    return tuple(statements)
