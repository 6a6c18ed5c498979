"""The audit's vocabulary: the tables it probes, the probes, and every frame's schema. Pure.

The tables come from the spec (`schemas.SYNCED_TABLES`): the server's scoping tables
(`SCOPE_TABLES`), then every synced table, parents first. Which probes a synced table gets
follows from its place in the spec: the root table (no parent) is searched and read with its
children embedded, as the sync reads it; a child table is read embedded under its root.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Final

import polars as pl

from ..schemas import SYNCED_TABLES, TableSpec

__all__ = [
    "ALL_ORGANISATIONS",
    "ANON_USER",
    "AUDIT_TABLES",
    "CHAPTER_COLUMN",
    "CHECKS_SCHEMA",
    "COUNT_PROBES",
    "DISCREPANCY_SCHEMA",
    "EXPECTED_SCHEMA",
    "LEAK_SOURCES_SCHEMA",
    "LINT_SCHEMA",
    "MATRIX_SCHEMA",
    "MEMBERS_SCHEMA",
    "OBSERVED_SCHEMA",
    "PROBES_BY_TABLE",
    "REQUESTED_SCHEMA",
    "RUNS_SCHEMA",
    "RUN_KEYS",
    "SCOPE_TABLES",
    "SEARCH_COLUMN",
    "SURFACE_DIFF_SCHEMA",
    "SURFACE_PROBES",
    "SURFACE_SCHEMA",
    "UNFILTERED_BY_TABLE",
    "UNFILTERED_PROBES",
    "UNIVERSE_SCHEMA",
    "Probe",
    "audit_tables",
    "probe_rank",
    "probes_by_table",
    "root_of",
    "table_rank",
    "unfiltered_by_table",
]
__io__ = "none"

#: The server's tables that say who may see what (not synced, not in the spec): the audit
#: probes them beside the synced tables, and ground truth reads memberships from them.
SCOPE_TABLES: Final = ("organisations", "chapters", "organisation_members")
#: The root table's column the app's search matches (people's names).
SEARCH_COLUMN: Final = "full_name"
#: The root table's column that puts a row in a chapter (what chapter-bound members see).
CHAPTER_COLUMN: Final = "chapter_id"


def audit_tables(tables: Iterable[TableSpec] = SYNCED_TABLES) -> tuple[str, ...]:
    """The tables the audit probes: the scoping tables, then `tables` (parents first)."""
    return (*SCOPE_TABLES, *(spec.name for spec in tables))


def root_of(tables: Iterable[TableSpec] = SYNCED_TABLES) -> TableSpec:
    """The table a sync pages through (the one without a parent); the others embed under it."""
    return next(spec for spec in tables if spec.parent is None)


#: The default probed tables (`audit_tables` of the spec).
AUDIT_TABLES: Final = audit_tables()

#: The label of the probe run with the anon key alone (no user signed in).
ANON_USER: Final = "anon (no sign-in)"


class Probe(enum.StrEnum):
    """One way of asking the server for rows.

    The first five are filtered to the audited organisations; the ``all_*`` probes are not
    filtered by organisation at all (every row the caller can see, wherever it belongs), and
    ``surface`` reads an exposed view, materialised view or function that is not an app table.
    ``foreign_args`` calls an exposed function with the ids of an organisation (its rows, a
    member) the caller must not see; its number is how many answer rows carry data. The
    ``claims*`` probes repeat ``all_rows``, ``surface`` and ``foreign_args`` with a token whose
    user_metadata (the claims a user edits with updateUser) names that organisation.
    """

    SELECT = "select"
    COUNT = "count"
    SEARCH = "search"
    EMBEDDED = "embedded"
    FOREIGN_IDS = "foreign_ids"
    ALL_ROWS = "all_rows"
    ALL_COUNT = "all_count"
    ALL_SEARCH = "all_search"
    ALL_EMBEDDED = "all_embedded"
    SURFACE = "surface"
    FOREIGN_ARGS = "foreign_args"
    CLAIMS = "claims"
    CLAIMS_SURFACE = "claims_surface"
    CLAIMS_ARGS = "claims_args"


#: The organisation of a run that is not filtered by organisation. Runs of row-returning
#: probes are spread over the organisations of their rows in the matrix; counts stay here.
ALL_ORGANISATIONS: Final = "*"
#: Probes whose run holds a number rather than rows.
COUNT_PROBES: Final = frozenset(
    {Probe.COUNT.value, Probe.ALL_COUNT.value, Probe.FOREIGN_ARGS.value, Probe.CLAIMS_ARGS.value}
)
#: Probes not filtered by organisation, whose rows are attributed to their own organisation.
UNFILTERED_PROBES: Final = frozenset(
    {
        Probe.ALL_ROWS.value,
        Probe.ALL_SEARCH.value,
        Probe.ALL_EMBEDDED.value,
        Probe.SURFACE.value,
        Probe.CLAIMS.value,
        Probe.CLAIMS_SURFACE.value,
    }
)
#: Probes whose rows are settled to the organisation ground truth gives their id.
SURFACE_PROBES: Final = frozenset({Probe.SURFACE.value, Probe.CLAIMS_SURFACE.value})


def probes_by_table(tables: Sequence[TableSpec] = SYNCED_TABLES) -> dict[str, tuple[Probe, ...]]:
    """The probes filtered to the audited organisations, per table: select and count on
    every table; on the synced ones also the embedded read and foreign ids, and on the root
    the search.
    """
    probes: dict[str, tuple[Probe, ...]] = {n: (Probe.SELECT, Probe.COUNT) for n in SCOPE_TABLES}
    for spec in tables:
        search = (Probe.SEARCH,) if spec.parent is None else ()
        probes[spec.name] = (
            Probe.SELECT,
            Probe.COUNT,
            *search,
            Probe.EMBEDDED,
            Probe.FOREIGN_IDS,
        )
    return probes


def unfiltered_by_table(
    tables: Sequence[TableSpec] = SYNCED_TABLES,
) -> dict[str, tuple[Probe, ...]]:
    """The probes across all organisations, per table: every row and the count of every
    table; on the synced ones the embedded read (the root with its children embedded, as the
    sync reads it), and on the root the search.
    """
    probes: dict[str, tuple[Probe, ...]] = {
        n: (Probe.ALL_ROWS, Probe.ALL_COUNT) for n in SCOPE_TABLES
    }
    for spec in tables:
        search = (Probe.ALL_SEARCH,) if spec.parent is None else ()
        probes[spec.name] = (Probe.ALL_ROWS, Probe.ALL_COUNT, *search, Probe.ALL_EMBEDDED)
    return probes


#: Which probes run on which table, for the spec's tables. ``organisation_members`` gets the
#: plain select and count like every table, and is deliberately not also read embedded under
#: ``organisations``: that read only reaches members of organisations the user may already
#: see, so it can reveal no leak the plain select would miss (the select is filtered by the
#: members' own policy alone), and the app never asks for members that way.
PROBES_BY_TABLE: Final = probes_by_table()
#: The probes across all organisations, per table, for the spec's tables.
UNFILTERED_BY_TABLE: Final = unfiltered_by_table()


def table_rank(table: pl.Expr) -> pl.Expr:
    """A sort key putting tables in the audit's order: the scoping tables, then the spec's
    synced tables parents first; any other table or exposed object after them (sort by the
    name next to break ties).
    """
    order = {name: i for i, name in enumerate(AUDIT_TABLES)}
    return table.replace_strict(order, default=len(order), return_dtype=pl.Int64)


def probe_rank(probe: pl.Expr) -> pl.Expr:
    """A sort key putting probes in their declared order (`Probe`)."""
    order = {member.value: i for i, member in enumerate(Probe)}
    return probe.replace_strict(order, default=len(order), return_dtype=pl.Int64)


_S = pl.String()
_I = pl.Int64()
_B = pl.Boolean()

#: Every row of every organisation, ids only (from the superuser side).
#: ``chapter_id`` is the row's chapter (a chapter's own id; for a synced row, its root row's
#: chapter); ``root_id`` the root row a synced row belongs to (a root row's own id);
#: ``user_id`` is set for ``organisation_members`` rows, whose ``id`` is
#: ``"<user_id>:<organisation_id>"`` (the table's key); ``name_match`` says whether a root row
#: matches the search pattern.
UNIVERSE_SCHEMA: Final = pl.Schema(
    {
        "table": _S,
        "organisation_id": _S,
        "id": _S,
        "chapter_id": _S,
        "root_id": _S,
        "user_id": _S,
        "name_match": _B,
    }
)
#: The users' expected memberships: ``chapter_id`` null means the whole organisation.
MEMBERS_SCHEMA: Final = pl.Schema(
    {
        "user": _S,
        "user_id": _S,
        "organisation_id": _S,
        "chapter_id": _S,
        "role": _S,
    }
)
#: The rows each user should see.
EXPECTED_SCHEMA: Final = pl.Schema({"user": _S, "table": _S, "organisation_id": _S, "id": _S})
#: One probe request's outcome (``count`` only for the count probe).
RUNS_SCHEMA: Final = pl.Schema(
    {
        "user": _S,
        "organisation_id": _S,
        "table": _S,
        "probe": _S,
        "count": _I,
        "error_kind": _S,
        "error_code": _S,
        "denied": _B,
    }
)
#: The rows a probe returned: ids, the organisation the row says it belongs to and, for
#: embedded rows, the parent id the row names (``row_parent_id``, its parent column) and the
#: id and organisation of the row it came embedded under (``parent_id``,
#: ``parent_organisation_id``).
OBSERVED_SCHEMA: Final = pl.Schema(
    {
        "user": _S,
        "organisation_id": _S,
        "table": _S,
        "probe": _S,
        "id": _S,
        "row_organisation_id": _S,
        "row_parent_id": _S,
        "parent_id": _S,
        "parent_organisation_id": _S,
    }
)
#: The ids a ``foreign_ids`` probe asked for.
REQUESTED_SCHEMA: Final = pl.Schema(
    {
        "user": _S,
        "organisation_id": _S,
        "table": _S,
        "probe": _S,
        "id": _S,
    }
)
#: The audit matrix.
MATRIX_SCHEMA: Final = pl.Schema(
    {
        "user": _S,
        "organisation_id": _S,
        "access": _S,
        "table": _S,
        "probe": _S,
        "visible": _I,
        "expected": _I,
        "leaked": _I,
        "missing": _I,
        "error": _S,
        "verdict": _S,
    }
)
#: The ids behind the matrix's leaked / missing numbers.
DISCREPANCY_SCHEMA: Final = pl.Schema(
    {
        "user": _S,
        "organisation_id": _S,
        "table": _S,
        "probe": _S,
        "id": _S,
        "kind": _S,
    }
)
#: Checks beyond counts.
CHECKS_SCHEMA: Final = pl.Schema(
    {
        "check": _S,
        "user": _S,
        "organisation_id": _S,
        "table": _S,
        "violations": _I,
        "passed": _B,
        "detail": _S,
    }
)
#: Policy lint findings; ``fix`` is the remedy in one line.
LINT_SCHEMA: Final = pl.Schema(
    {
        "schema": _S,
        "table": _S,
        "policy": _S,
        "rule": _S,
        "severity": _S,
        "detail": _S,
        "fix": _S,
    }
)
#: Where leaked rows come from (`sources.leak_sources`): the leaked ``table`` (or exposed
#: ``schema.object``), how rows leaked (``leak``, in words), the ``callers`` who saw them, how
#: many distinct ``rows``, the ``policy`` that admits them and its ``using`` expression (null
#: for an exposed object, or without a catalog), the ``lint`` rules that flag it (if any) and
#: the ``fix``.
LEAK_SOURCES_SCHEMA: Final = pl.Schema(
    {
        "table": _S,
        "leak": _S,
        "callers": _S,
        "rows": _I,
        "policy": _S,
        "using": _S,
        "lint": _S,
        "fix": _S,
    }
)
#: The exposed surface: every relation and function the API roles can reach through the
#: exposed schemas. ``kind`` is table, view, materialized view, foreign table or function;
#: ``name`` carries a function's argument types; ``roles`` the API roles that reach it and
#: ``grants`` how (``role:PRIVILEGE,…``); ``columns`` the relation's (or the function's result)
#: columns; ``security_invoker`` is set for views, ``security_definer``, ``search_path_fixed``
#: and ``required_args`` for functions, ``rls_enabled`` for tables; ``owner`` is the object's
#: owner, ``search_path`` a function's fixed search_path (null when not set) and
#: ``arguments`` its input arguments as ``"<name> <type>"``.
SURFACE_SCHEMA: Final = pl.Schema(
    {
        "schema": _S,
        "name": _S,
        "kind": _S,
        "roles": pl.List(_S),
        "grants": _S,
        "columns": pl.List(_S),
        "rls_enabled": _B,
        "security_invoker": _B,
        "security_definer": _B,
        "search_path_fixed": _B,
        "required_args": _I,
        "returns_set": _B,
        "owner": _S,
        "search_path": _S,
        "arguments": pl.List(_S),
    }
)
#: The surface against the expected-surface file: ``added`` (reachable, not accepted: fails
#: the audit) or ``removed`` (accepted, no longer reachable).
SURFACE_DIFF_SCHEMA: Final = pl.Schema({"change": _S, "entry": _S})

RUN_KEYS: Final = ["user", "organisation_id", "table", "probe"]
