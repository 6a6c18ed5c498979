"""Pure, vectorised mapping of the embedded select's rows to cache frames.

`map_contacts_page` is the Python twin of the seed's "map Supabase records to Drift companions":
one page of raw rows in, one polars frame per cache table out, or a `MappingProblem` saying
what was wrong (counts only, never the offending values, which may be personal data).
Imports neither supabase nor SQLAlchemy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from .schemas import (
    ASSIGNMENT_ROLES,
    CONTACT_STATUSES,
    RAW_CONTACT_SCHEMA,
    TABLE_COLUMNS,
    TIMESTAMP_COLUMNS,
    UUID_PATTERN,
    table_schema,
)

__all__ = ["MappedPage", "MappingProblem", "empty_page", "map_contacts_page", "map_table_rows"]

_ISO_UTC = "%Y-%m-%dT%H:%M:%S%.6fZ"
_EMBEDDED = ("notes", "contact_assignments")  # the embedded arrays, named as their tables


@dataclass(frozen=True)
class MappedPage:
    """Validated frames, one per cache table, ready for one bulk upsert each."""

    contacts: pl.DataFrame
    notes: pl.DataFrame
    contact_assignments: pl.DataFrame

    def frames(self) -> dict[str, pl.DataFrame]:
        """Table name -> frame, in the order they must be written (parents first)."""
        return {
            "contacts": self.contacts,
            "notes": self.notes,
            "contact_assignments": self.contact_assignments,
        }

    def counts(self) -> dict[str, int]:
        """Table name -> row count."""
        return {name: frame.height for name, frame in self.frames().items()}


@dataclass(frozen=True)
class MappingProblem:
    """Why a page cannot be cached. `kind` matches a `SyncErrorKind` value."""

    kind: Literal["invalid_data", "incomplete"]
    message: str
    reasons: dict[str, int] = field(default_factory=dict)


def empty_page() -> MappedPage:
    """A page with no rows, with the declared schemas."""
    return MappedPage(
        **{name: pl.DataFrame(schema=table_schema(name)) for name in TABLE_COLUMNS}
    )


def map_contacts_page(
    raw: Any, organisation_id: str, *, embedded_cap: int | None = None
) -> MappedPage | MappingProblem:
    """Map one page of the embedded select to cache frames.

    `raw` is the response body as bytes, or what supabase-py parsed it into (a list of dicts;
    a ``str`` there means the body was not JSON). Every contact, note and assignment must be
    well-formed and belong to `organisation_id`, and each note/assignment to its parent
    contact; otherwise the whole page is refused with kind ``invalid_data``.

    `embedded_cap` is the server's row cap (PostgREST ``db-max-rows``). An embedded array that
    reaches it may have been cut short silently, so the page is refused as ``incomplete``.
    """
    frame = _read_raw(raw)
    if isinstance(frame, MappingProblem):
        return frame
    if frame.height == 0:
        return empty_page()

    reasons: dict[str, int] = {}
    for column in _EMBEDDED:
        missing = frame.select(pl.col(column).is_null().sum()).item()
        if missing:
            reasons[f"contacts without an embedded {column} array"] = missing
    if embedded_cap is not None:
        for column in _EMBEDDED:
            at_cap = frame.select((pl.col(column).list.len() >= embedded_cap).sum()).item()
            if at_cap:
                return MappingProblem(
                    "incomplete",
                    f"{at_cap} contact(s) came with {embedded_cap} or more embedded {column}, "
                    f"the server's row cap (db-max-rows); the array may be cut short",
                    {f"{column} arrays at the cap": at_cap},
                )

    contacts, contact_reasons = _validate(frame, "contacts", organisation_id)
    reasons.update(contact_reasons)
    children: dict[str, pl.DataFrame] = {}
    for table in _EMBEDDED:
        exploded = (
            frame.select(pl.col("id").alias("_parent_id"), pl.col(table))
            .explode(table)
            .filter(pl.col(table).is_not_null())
            .unnest(table)
        )
        child, child_reasons = _validate(exploded, table, organisation_id)
        reasons.update(child_reasons)
        children[table] = child

    if reasons:
        total = sum(reasons.values())
        detail = "; ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        return MappingProblem("invalid_data", f"{total} invalid value(s) in the page: {detail}",
                              reasons)
    return MappedPage(contacts=contacts, notes=children["notes"],
                      contact_assignments=children["contact_assignments"])


def _read_raw(raw: Any) -> pl.DataFrame | MappingProblem:
    try:
        if isinstance(raw, bytes | bytearray | memoryview):
            body = bytes(raw).lstrip()
            if not body.startswith(b"["):
                return MappingProblem("invalid_data", "the response body is not a JSON list")
            return pl.read_json(io.BytesIO(body), schema=RAW_CONTACT_SCHEMA)
        if isinstance(raw, list):
            if not all(isinstance(row, dict) for row in raw):
                return MappingProblem("invalid_data", "the response holds items that are not rows")
            return pl.DataFrame(raw, schema=RAW_CONTACT_SCHEMA)
    except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
        return MappingProblem("invalid_data", f"the response rows do not fit the schema "
                              f"({type(exc).__name__})")
    # supabase-py hands back a str when a 2xx body was not JSON (an HTML error page, say).
    return MappingProblem("invalid_data",
                          f"the response body is not a JSON list (got {type(raw).__name__})")


def _validate(
    frame: pl.DataFrame, table: str, organisation_id: str
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Normalise one table's frame and count what is wrong with it, all as expressions."""
    columns = TABLE_COLUMNS[table]
    checks: dict[str, pl.Expr] = {}
    normalised: list[pl.Expr] = []
    for name, (required, is_uuid) in columns.items():
        value = pl.col(name)
        if required:
            checks[f"{table}.{name} missing"] = value.is_null()
        if is_uuid:
            checks[f"{table}.{name} not a UUID"] = value.is_not_null() & ~value.str.contains(
                UUID_PATTERN
            )
            normalised.append(value.str.to_lowercase())
        elif name in TIMESTAMP_COLUMNS:
            parsed = value.str.to_datetime(time_zone="UTC", strict=False)
            checks[f"{table}.{name} not a timestamp"] = value.is_not_null() & parsed.is_null()
            normalised.append(parsed.dt.strftime(_ISO_UTC).alias(name))
        else:
            normalised.append(value)
    checks[f"{table} rows of another organisation"] = (
        pl.col("organisation_id").str.to_lowercase() != organisation_id.lower()
    )
    checks[f"{table} ids repeated"] = pl.col("id").is_duplicated() & pl.col("id").is_not_null()
    if table == "contacts":
        checks["contacts.status unknown"] = ~pl.col("status").is_in(CONTACT_STATUSES)
    else:
        checks[f"{table} under the wrong contact"] = (
            pl.col("contact_id").str.to_lowercase() != pl.col("_parent_id").str.to_lowercase()
        )
    if table == "contact_assignments":
        checks["contact_assignments.role unknown"] = ~pl.col("role").is_in(ASSIGNMENT_ROLES)

    counts = frame.select(
        [check.fill_null(False).sum().alias(reason) for reason, check in checks.items()]
    ).row(0, named=True)
    reasons = {reason: int(count) for reason, count in counts.items() if count}
    return frame.select(normalised), reasons


def map_table_rows(raw: Any, table: str, organisation_id: str) -> pl.DataFrame | MappingProblem:
    """Map a page of plain rows of one cache table (no embedding) to its cache frame.

    The checks are the embedded page's: well-formed values, the organisation asked for; a
    note or assignment is its own parent here (it arrived without one). Used by the
    incremental sync, which reads each table's changed rows on their own.
    """
    columns = TABLE_COLUMNS[table]
    schema = pl.Schema({name: pl.String for name in columns})
    try:
        if isinstance(raw, bytes | bytearray | memoryview):
            body = bytes(raw).lstrip()
            if not body.startswith(b"["):
                return MappingProblem("invalid_data", "the response body is not a JSON list")
            frame = pl.read_json(io.BytesIO(body), schema=schema) if body.rstrip() != b"[]" \
                else pl.DataFrame(schema=schema)
        elif isinstance(raw, list) and all(isinstance(row, dict) for row in raw):
            frame = pl.DataFrame(raw, schema=schema)
        else:
            return MappingProblem("invalid_data", f"the {table} response is not a JSON list")
    except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
        return MappingProblem("invalid_data", f"the {table} rows do not fit the schema "
                              f"({type(exc).__name__})")
    if table != "contacts":
        frame = frame.with_columns(pl.col("contact_id").alias("_parent_id"))
    mapped, reasons = _validate(frame, table, organisation_id)
    if reasons:
        detail = "; ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        return MappingProblem("invalid_data", f"{sum(reasons.values())} invalid value(s) in "
                              f"the {table} rows: {detail}", reasons)
    return mapped
