"""Pure, vectorised mapping of the embedded select's rows to cache frames.

`map_contacts_page` is the Python twin of the seed's "map Supabase records to Drift companions":
one page of raw rows in, one polars frame per cache table out, or a `MappingProblem` saying
what was wrong (counts only, never the offending values, which may be personal data).
Imports neither supabase nor SQLAlchemy.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import polars as pl

from .schemas import (
    DATA_TABLES,
    EMBEDDED_TABLES,
    RAW_CONTACT_SCHEMA,
    ROOT_TABLE,
    TABLES,
    UUID_PATTERN,
    table_schema,
)

__all__ = [
    "MappedPage",
    "MappingProblem",
    "empty_page",
    "map_contacts_page",
    "map_table_rows",
    "map_versions",
]

__io__ = "none"

_ISO_UTC = "%Y-%m-%dT%H:%M:%S%.6fZ"
# How PostgREST writes a UTC timestamptz (fractional digits trimmed): text in this form is
# brought to the cache's form by string operations, several times cheaper than a parse and a
# strftime, which remain for any other form (another offset, say).
_UTC_TEXT = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d{1,6})?(\+00(:00)?|Z)$"
)


@dataclass(frozen=True)
class MappedPage:
    """Validated frames, one per cache data table, ready for one bulk upsert each.

    `tables` is keyed by `schemas.DATA_TABLES`, in the same order; ``page["notes"]`` is one.
    """

    tables: Mapping[str, pl.DataFrame]

    def __getitem__(self, table: str) -> pl.DataFrame:
        return self.tables[table]

    def frames(self) -> dict[str, pl.DataFrame]:
        """Table name -> frame, in the order they must be written (parents first)."""
        return {table: self.tables[table] for table in DATA_TABLES}

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
    return MappedPage({name: pl.DataFrame(schema=table_schema(name)) for name in DATA_TABLES})


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
    embedded = frame.select_seq(
        *(pl.col(c).is_null().sum().alias(f"missing {c}") for c in EMBEDDED_TABLES),
        *(
            (pl.col(c).list.len() >= embedded_cap).sum().alias(f"at cap {c}")
            for c in EMBEDDED_TABLES
            if embedded_cap is not None
        ),
    ).row(0, named=True)
    for column in EMBEDDED_TABLES:
        missing = embedded[f"missing {column}"]
        if missing:
            reasons[f"contacts without an embedded {column} array"] = missing
    if embedded_cap is not None:
        for column in EMBEDDED_TABLES:
            at_cap = embedded[f"at cap {column}"]
            if at_cap:
                return MappingProblem(
                    "incomplete",
                    f"{at_cap} contact(s) came with {embedded_cap} or more embedded {column}, "
                    f"the server's row cap (db-max-rows); the array may be cut short",
                    {f"{column} arrays at the cap": at_cap},
                )

    root, root_reasons = _validate(frame, ROOT_TABLE, organisation_id)
    reasons.update(root_reasons)
    frames = {ROOT_TABLE: root}
    for table in EMBEDDED_TABLES:
        exploded = (
            frame.lazy()
            .select(pl.col(TABLES[ROOT_TABLE].key).alias(_PARENT), pl.col(table))
            .explode(table)
            .filter(pl.col(table).is_not_null())
            .unnest(table)
            .collect()
        )
        frames[table], child_reasons = _validate(exploded, table, organisation_id)
        reasons.update(child_reasons)

    if reasons:
        total = sum(reasons.values())
        detail = "; ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        return MappingProblem(
            "invalid_data", f"{total} invalid value(s) in the page: {detail}", reasons
        )
    return MappedPage(frames)


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
        return MappingProblem(
            "invalid_data", f"the response rows do not fit the schema ({type(exc).__name__})"
        )
    # supabase-py hands back a str when a 2xx body was not JSON (an HTML error page, say).
    return MappingProblem(
        "invalid_data", f"the response body is not a JSON list (got {type(raw).__name__})"
    )


_PARENT = "_parent_key"  # the embedding row's key, beside each exploded child row
# The form PostgreSQL gives a uuid: canonical and lower-case, so nothing is left to normalise.
_CANONICAL_UUID: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _validate(
    frame: pl.DataFrame, table: str, organisation_id: str
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Normalise one table's frame and count what is wrong with it, all as expressions.

    A first pass learns which uuid columns are canonical lower-case throughout and which
    timestamp columns are UTC text in PostgREST's form (what a server's ``uuid`` and
    ``timestamptz`` columns always send): those are checked by that pass alone and need no
    case folding, and their dates are checked once per distinct day. Any other column takes
    the general path, so a bad value is still found and counted.
    """
    canonical, utc_text, bad_days = _survey(frame, *_checked_columns(table))
    plan = _plan(table, organisation_id.lower(), canonical, utc_text)
    reasons: dict[str, int] = {}
    for name in utc_text:
        # The form is right; only an impossible date (30 February) is left to catch.
        if bad_days[name] and (impossible := _impossible_dates(frame, name)):
            reasons[f"{table}.{name} not a timestamp"] = impossible
    counts = frame.select_seq(plan.counts).row(0, named=True)
    reasons.update({reason: int(count) for reason, count in counts.items() if count})
    return frame.select_seq(plan.normalised), reasons


@dataclass(frozen=True)
class _Plan:
    """One table's checks and normalisation as polars expressions, for one kind of page."""

    counts: tuple[pl.Expr, ...]  # one count per reason, aliased by the reason
    normalised: tuple[pl.Expr, ...]


# Expressions are immutable and a sync's pages are nearly always of one kind: building them
# once per (table, organisation, kind of page) and not once per page saves most of the
# mapper's Python time. A page's frames are small (a few thousand rows), so their selects
# run on the mapping thread (`select_seq`): handing each expression to polars' pool cost
# more in waking and idling its threads than the work itself (100,000 contacts' saved pages:
# 1.45-1.73 CPU-s through the pool, 1.11-1.38 without; in the sync, polars' pool went from
# 0.83-0.95 to 0.44-0.48 CPU-s and the mapping thread from 0.75-0.93 to 1.10-1.27).
@functools.lru_cache(maxsize=256)
def _plan(table: str, org: str, canonical: frozenset[str], utc_text: frozenset[str]) -> _Plan:
    spec = TABLES[table]

    def folded(name: str) -> pl.Expr:
        return pl.col(name) if name in canonical else pl.col(name).str.to_lowercase()

    checks: dict[str, pl.Expr] = {}
    normalised: list[pl.Expr] = []
    for column in spec.columns:
        name, value = column.name, pl.col(column.name)
        if column.required:
            checks[f"{table}.{name} missing"] = value.is_null()
        if column.uuid:
            if name not in canonical:
                checks[f"{table}.{name} not a UUID"] = value.is_not_null() & ~value.str.contains(
                    UUID_PATTERN
                )
            normalised.append(folded(name))
        elif column.timestamp and name in utc_text:
            normalised.append(_utc_text_to_cache(value).alias(name))
        elif column.timestamp:
            parsed = value.str.to_datetime(time_zone="UTC", strict=False)
            checks[f"{table}.{name} not a timestamp"] = value.is_not_null() & parsed.is_null()
            normalised.append(parsed.dt.strftime(_ISO_UTC).alias(name))
        else:
            normalised.append(value)
        if column.values is not None:
            checks[f"{table}.{name} unknown"] = ~value.is_in(column.values)
    checks[f"{table} rows of another organisation"] = folded(spec.scope) != org
    key = pl.col(spec.key)
    checks[f"{table} ids repeated"] = key.is_duplicated() & key.is_not_null()
    if spec.parent is not None:
        checks[f"{table} under the wrong contact"] = folded(spec.parent[0]) != folded(_PARENT)
    return _Plan(
        counts=tuple(
            check.fill_null(False).sum().alias(reason) for reason, check in checks.items()
        ),
        normalised=tuple(normalised),
    )


@functools.cache
def _checked_columns(table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`table`'s uuid columns (with the parent key of an embedded row) and timestamp columns."""
    spec = TABLES[table]
    uuids = tuple(c.name for c in spec.columns if c.uuid)
    if spec.parent is not None:
        uuids += (_PARENT,)
    return uuids, tuple(c.name for c in spec.columns if c.timestamp)


def _utc_text_to_cache(value: pl.Expr) -> pl.Expr:
    """UTC text in PostgREST's form to the cache's (six fractional digits, ``Z``).

    After the seconds come an optional fraction and the offset (``+00:00``, ``+00`` or
    ``Z``): stripping the offset's characters and the fraction's trailing zeros from the end
    and padding back to six digits gives the fraction, whatever its length.
    """
    fraction = (
        value.str.slice(19)
        .str.strip_chars_end("+:0Z")
        .str.strip_chars_start(".")
        .str.pad_end(6, "0")
    )
    return pl.concat_str([value.str.slice(0, 19), pl.lit("."), fraction, pl.lit("Z")])


def _impossible_dates(frame: pl.DataFrame, name: str) -> int:
    """Rows of `name` (UTC text in the usual form) whose day does not exist (30 February)."""
    return int(
        frame.select_seq(_impossible_days(pl.col(name).drop_nulls().str.slice(0, 10))).item()
    )


def _impossible_days(days: pl.Expr) -> pl.Expr:
    """How many of `days` (``YYYY-MM-DD`` text) name a day that does not exist."""
    return days.str.to_date("%Y-%m-%d", strict=False).is_null().sum()


def _survey(
    frame: pl.DataFrame, uuids: tuple[str, ...], stamps: tuple[str, ...]
) -> tuple[frozenset[str], frozenset[str], dict[str, int]]:
    """One pass over the frame: what form its uuid and timestamp columns are in.

    Returns the uuid columns canonical lower-case throughout, the timestamp columns that are
    UTC text in PostgREST's form throughout (nulls are allowed in both), and per timestamp
    column the number of distinct days that do not exist (meaningful for the UTC-text ones).
    """
    present_uuids = tuple(n for n in uuids if n in frame.columns)
    present_stamps = tuple(n for n in stamps if n in frame.columns)
    if frame.height == 0:
        return frozenset(present_uuids), frozenset(present_stamps), dict.fromkeys(stamps, 0)
    probes = _probes(present_uuids, present_stamps)
    if not probes:
        return frozenset(), frozenset(), {}
    row = frame.select_seq(probes).row(0, named=True)
    return (
        frozenset(n for n in present_uuids if row[f"u:{n}"]),
        frozenset(n for n in present_stamps if row[f"t:{n}"]),
        {n: int(row[f"d:{n}"] or 0) for n in present_stamps},
    )


@functools.lru_cache(maxsize=64)
def _probes(uuids: tuple[str, ...], stamps: tuple[str, ...]) -> tuple[pl.Expr, ...]:
    canonical = tuple(
        (pl.col(n).is_null() | pl.col(n).str.contains(_CANONICAL_UUID)).all().alias(f"u:{n}")
        for n in uuids
    )
    utc_text = tuple(
        (pl.col(n).is_null() | pl.col(n).str.contains(_UTC_TEXT)).all().alias(f"t:{n}")
        for n in stamps
    )
    # Distinct days only: a page's timestamps fall on a few days, so the parse is cheap.
    days = tuple(
        _impossible_days(pl.col(n).drop_nulls().str.slice(0, 10).unique()).alias(f"d:{n}")
        for n in stamps
    )
    return canonical + utc_text + days


def map_table_rows(raw: Any, table: str, organisation_id: str) -> pl.DataFrame | MappingProblem:
    """Map a page of plain rows of one cache table (no embedding) to its cache frame.

    The checks are the embedded page's: well-formed values, the organisation asked for; a
    note or assignment is its own parent here (it arrived without one). Used by the
    incremental sync, which reads each table's changed rows on their own.
    """
    spec = TABLES[table]
    schema = pl.Schema({name: pl.String for name in spec.names})
    try:
        if isinstance(raw, bytes | bytearray | memoryview):
            body = bytes(raw).lstrip()
            if not body.startswith(b"["):
                return MappingProblem("invalid_data", "the response body is not a JSON list")
            frame = (
                pl.read_json(io.BytesIO(body), schema=schema)
                if body.rstrip() != b"[]"
                else pl.DataFrame(schema=schema)
            )
        elif isinstance(raw, list) and all(isinstance(row, dict) for row in raw):
            frame = pl.DataFrame(raw, schema=schema)
        else:
            return MappingProblem("invalid_data", f"the {table} response is not a JSON list")
    except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
        return MappingProblem(
            "invalid_data", f"the {table} rows do not fit the schema ({type(exc).__name__})"
        )
    if spec.parent is not None:
        frame = frame.with_columns(pl.col(spec.parent[0]).alias(_PARENT))
    mapped, reasons = _validate(frame, table, organisation_id)
    if reasons:
        detail = "; ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        return MappingProblem(
            "invalid_data",
            f"{sum(reasons.values())} invalid value(s) in the {table} rows: {detail}",
            reasons,
        )
    return mapped


_VERSIONS: Final = pl.Schema({"id": pl.String, "updated_at": pl.String})


def map_versions(body: bytes) -> pl.DataFrame | MappingProblem:
    """Map a listing of ``id`` and ``updated_at`` (the delta's reconcile reads one).

    Checked: uuids (stored lower-case) and timestamps, nothing null; else a `MappingProblem`.
    """
    try:
        text = body.strip()
        frame = (
            pl.read_json(io.BytesIO(text), schema=_VERSIONS)
            if text not in (b"", b"[]")
            else pl.DataFrame(schema=_VERSIONS)
        )
    except (pl.exceptions.PolarsError, ValueError) as exc:
        return MappingProblem(
            "invalid_data",
            f"the id listing is not a JSON list of ids and timestamps ({type(exc).__name__})",
        )
    bad = frame.select(
        (
            pl.col("id").is_null()
            | ~pl.col("id").str.contains(UUID_PATTERN)
            | pl.col("updated_at").str.to_datetime(time_zone="UTC", strict=False).is_null()
        )
        .fill_null(True)
        .sum()
    ).item()
    if bad:
        return MappingProblem("invalid_data", f"{bad} malformed row(s) in the id listing")
    return frame.with_columns(pl.col("id").str.to_lowercase())
