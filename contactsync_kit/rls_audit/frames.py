"""The audit's vocabulary: the tables it probes, the probes, and every frame's schema. Pure."""

from __future__ import annotations

import enum
from typing import Final

import polars as pl

__all__ = [
    "ALL_ORGANISATIONS",
    "ANON_USER",
    "AUDIT_TABLES",
    "CHECKS_SCHEMA",
    "COUNT_PROBES",
    "DISCREPANCY_SCHEMA",
    "EXPECTED_SCHEMA",
    "LINT_SCHEMA",
    "MATRIX_SCHEMA",
    "MEMBERS_SCHEMA",
    "OBSERVED_SCHEMA",
    "PROBES_BY_TABLE",
    "REQUESTED_SCHEMA",
    "RUNS_SCHEMA",
    "RUN_KEYS",
    "SURFACE_DIFF_SCHEMA",
    "SURFACE_PROBES",
    "SURFACE_SCHEMA",
    "UNFILTERED_BY_TABLE",
    "UNFILTERED_PROBES",
    "UNIVERSE_SCHEMA",
    "Probe",
]

AUDIT_TABLES: Final = (
    "organisations",
    "chapters",
    "organisation_members",
    "contacts",
    "notes",
    "contact_assignments",
)

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


#: Which probes run on which table. ``organisation_members`` gets the plain select and count
#: like every table, and is deliberately not also read embedded under ``organisations``: that
#: read only reaches members of organisations the user may already see, so it can reveal no
#: leak the plain select would miss (the select is filtered by the members' own policy alone),
#: and the app never asks for members that way.
PROBES_BY_TABLE: Final[dict[str, tuple[Probe, ...]]] = {
    "organisations": (Probe.SELECT, Probe.COUNT),
    "chapters": (Probe.SELECT, Probe.COUNT),
    "organisation_members": (Probe.SELECT, Probe.COUNT),
    "contacts": (Probe.SELECT, Probe.COUNT, Probe.SEARCH, Probe.EMBEDDED, Probe.FOREIGN_IDS),
    "notes": (Probe.SELECT, Probe.COUNT, Probe.EMBEDDED, Probe.FOREIGN_IDS),
    "contact_assignments": (Probe.SELECT, Probe.COUNT, Probe.EMBEDDED, Probe.FOREIGN_IDS),
}
#: The probes across all organisations, per app table (the embedded one reads contacts with
#: their notes and assignments, as the sync does).
UNFILTERED_BY_TABLE: Final[dict[str, tuple[Probe, ...]]] = {
    "organisations": (Probe.ALL_ROWS, Probe.ALL_COUNT),
    "chapters": (Probe.ALL_ROWS, Probe.ALL_COUNT),
    "organisation_members": (Probe.ALL_ROWS, Probe.ALL_COUNT),
    "contacts": (Probe.ALL_ROWS, Probe.ALL_COUNT, Probe.ALL_SEARCH, Probe.ALL_EMBEDDED),
    "notes": (Probe.ALL_ROWS, Probe.ALL_COUNT, Probe.ALL_EMBEDDED),
    "contact_assignments": (Probe.ALL_ROWS, Probe.ALL_COUNT, Probe.ALL_EMBEDDED),
}

_S = pl.String()
_I = pl.Int64()
_B = pl.Boolean()

#: Every row of every organisation, ids only (from the superuser side).
#: ``chapter_id`` is the row's chapter (a chapter's own id; a note's or assignment's parent
#: contact's chapter); ``user_id`` is set for ``organisation_members`` rows, whose ``id`` is
#: ``"<user_id>:<organisation_id>"`` (the table's key); ``name_match`` says whether a contact
#: matches the search pattern.
UNIVERSE_SCHEMA: Final = pl.Schema(
    {
        "table": _S,
        "organisation_id": _S,
        "id": _S,
        "chapter_id": _S,
        "contact_id": _S,
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
#: embedded rows, their parent contact's id and organisation.
OBSERVED_SCHEMA: Final = pl.Schema(
    {
        "user": _S,
        "organisation_id": _S,
        "table": _S,
        "probe": _S,
        "id": _S,
        "row_organisation_id": _S,
        "contact_id": _S,
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
