"""Where a leak comes from: the policy (or exposed object) that let leaked rows through, named
from the leaked cells, the memberships, the policy catalog and the lint, with its fix. Pure.

The lint reads policies one at a time and cannot see a policy that is well formed but too
wide (say a root table policy that dropped its chapter rule); the probes see the rows but not
the policy. `leak_sources` joins the two: for every table that leaked, how the rows leaked
(to chapter-bound members from other chapters, to callers from organisations they are not
in, to the anon key, or through an edited ``user_metadata``), which callers saw them, and
which permissive policies on that table admit that caller's role for reading: those the lint
flags (with the lint's fix), or when it flags none, each of them (with a fix for that kind of
leak).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import polars as pl

from ..schemas import SYNCED_TABLES
from .frames import (
    ALL_ORGANISATIONS,
    ANON_USER,
    CHAPTER_COLUMN,
    LEAK_SOURCES_SCHEMA,
    LINT_SCHEMA,
    Probe,
    root_of,
)
from .rules import ERROR

__all__ = ["LEAK_KINDS", "leak_kind", "leak_sources"]
__io__ = "none"

#: How rows leaked, in words (the ``leak`` column of `LEAK_SOURCES_SCHEMA`).
LEAK_KINDS: Final = {
    "chapter": "chapter-bound members see rows of other chapters of their organisation",
    "organisation": "callers see rows of organisations they are not members of",
    "anon": "the anon key alone (no sign-in) sees rows",
    "claims": "a caller who writes another organisation into user_metadata sees its rows",
}
_CLAIMS_PROBES: Final = frozenset(
    {Probe.CLAIMS.value, Probe.CLAIMS_SURFACE.value, Probe.CLAIMS_ARGS.value}
)
_ORG_SCOPE: Final = "organisation_id IN (SELECT private.member_organisation_ids())"
_ORG_WIDE: Final = "organisation_id IN (SELECT private.org_wide_organisation_ids())"


def _chapter_scopes() -> dict[str, str]:
    """How a chapter-bound membership narrows a table, by the column the table has: its own
    chapter, else its parent root row (through the stack's ``private.bound_chapter_<root
    noun>_ids()`` helper, e.g. ``bound_chapter_contact_ids``).
    """
    root = root_of()
    scopes = {
        CHAPTER_COLUMN: f"{_ORG_WIDE} OR {CHAPTER_COLUMN} IN (SELECT private.bound_chapter_ids())"
    }
    for spec in SYNCED_TABLES:
        if spec.parent is not None and spec.parent[1] == root.name:
            column = spec.parent[0]
            scopes.setdefault(
                column,
                f"{_ORG_WIDE} OR {column} IN (SELECT private.bound_chapter_{root.noun}_ids())",
            )
    return scopes


def leak_kind(probe: str, user: str, member_of_organisation: bool) -> str:
    """The `LEAK_KINDS` key of one leaked cell."""
    if probe in _CLAIMS_PROBES:
        return "claims"
    if user == ANON_USER:
        return "anon"
    return "chapter" if member_of_organisation else "organisation"


def leak_sources(
    matrix: pl.DataFrame,
    discrepancies: pl.DataFrame,
    members: pl.DataFrame,
    *,
    policies: pl.DataFrame | None = None,
    tables: pl.DataFrame | None = None,
    lint: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per (leaked table or object, kind of leak, policy that lets it through)
    (`LEAK_SOURCES_SCHEMA`). Pure.

    `matrix` and `discrepancies` are the audit's; `members` the users' memberships
    (`MEMBERS_SCHEMA`); `policies` and `tables` the catalog's (see `lint.PolicyCatalog`),
    `lint` its findings. Without `policies`, a table's row names no policy (``policy``
    null) and says so. Counts across all organisations (the ``*`` bucket) say nothing of
    whose rows leaked and are left out; their rows leak through the other probes too.
    """
    cells = matrix.filter(
        (pl.col("leaked").fill_null(0) > 0) & (pl.col("organisation_id") != ALL_ORGANISATIONS)
    )
    if cells.is_empty():
        return pl.DataFrame(schema=LEAK_SOURCES_SCHEMA)
    groups = _grouped(_with_kinds(cells, members), discrepancies)
    found = [
        row
        for group in groups.iter_rows(named=True)
        for row in _sources(group, policies, tables, lint)
    ]
    return _through_policies(pl.DataFrame(found, schema=LEAK_SOURCES_SCHEMA, orient="row"))


def _with_kinds(cells: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """The leaked cells with their `LEAK_KINDS` key (``kind``: `leak_kind`, vectorised)."""
    membership = (
        members.select("user", "organisation_id")
        .unique()
        .with_columns(pl.lit(True).alias("member"))
    )
    return (
        cells.join(membership, on=["user", "organisation_id"], how="left")
        .with_columns(
            pl.when(pl.col("probe").is_in(sorted(_CLAIMS_PROBES)))
            .then(pl.lit("claims"))
            .when(pl.col("user") == ANON_USER)
            .then(pl.lit("anon"))
            .when(pl.col("member").fill_null(False))
            .then(pl.lit("chapter"))
            .otherwise(pl.lit("organisation"))
            .alias("kind")
        )
        .select("user", "organisation_id", "table", "probe", "leaked", "kind")
    )


def _grouped(kinds: pl.DataFrame, discrepancies: pl.DataFrame) -> pl.DataFrame:
    """Per (table, kind of leak): the callers, the distinct rows leaked, the most per cell."""
    ids = discrepancies.filter(pl.col("kind") == "leaked").select(
        "user", "organisation_id", "table", "probe", "id"
    )
    return (
        kinds.join(ids, on=["user", "organisation_id", "table", "probe"], how="left")
        .group_by("table", "kind", maintain_order=True)
        .agg(
            pl.col("user").unique().sort().alias("callers"),
            pl.col("id").drop_nulls().n_unique().alias("rows"),
            pl.col("leaked").max().alias("most"),
        )
        .sort("table", "kind")
    )


def _through_policies(sources: pl.DataFrame) -> pl.DataFrame:
    """An exposed object the lint does not flag, leaking the same way as a table whose policy
    is named, returns what that policy lets through (it reads as the caller): point its fix
    at the policy rather than at the object.
    """
    named = sources.filter(pl.col("policy").is_not_null())
    if named.is_empty():
        return sources
    by_leak = named.group_by("leak").agg(
        pl.format("{} on {}", "policy", "table").unique().sort().str.join(", ").alias("named")
    )
    innocent = pl.col("table").str.contains(".", literal=True) & pl.col("lint").is_null()
    return (
        sources.join(by_leak, on="leak", how="left")
        .with_columns(
            pl.when(innocent & pl.col("named").is_not_null())
            .then(
                pl.format(
                    "nothing flags {} itself: it reads as the caller and returns what {} lets "
                    "through; fix that policy",
                    "table",
                    "named",
                )
            )
            .otherwise(pl.col("fix"))
            .alias("fix")
        )
        .select(list(LEAK_SOURCES_SCHEMA))
    )


def _sources(
    group: dict[str, Any],
    policies: pl.DataFrame | None,
    tables: pl.DataFrame | None,
    lint: pl.DataFrame | None,
) -> Iterator[tuple[Any, ...]]:
    table, kind = group["table"], group["kind"]
    callers = ", ".join(group["callers"])
    rows = group["rows"] or group["most"]
    base = (table, LEAK_KINDS[kind], callers, rows)
    errors = lint.filter(pl.col("severity") == ERROR) if lint is not None else None
    if "." in table:  # an exposed view, materialised view or function: the object itself
        yield _object_source(base, table, errors)
        return
    candidates = _admitting(policies, table, kind)
    if candidates is None or candidates.is_empty():
        flagged = (
            errors.filter((pl.col("table") == table) & pl.col("policy").is_null())
            if errors is not None
            else None
        )
        fix = _joined(flagged, "fix", "; ") or (
            "no policy in the catalog admits this caller: check grants and RLS on "
            f"{table} (audit with a database URL to name the policy)"
        )
        yield (*base, None, None, _joined(flagged, "rule"), fix)
        return
    flagged_by = {
        name: errors.filter((pl.col("table") == table) & (pl.col("policy") == name))
        if errors is not None
        else pl.DataFrame(schema=LINT_SCHEMA)
        for name in candidates.get_column("policy").to_list()
    }
    # Permissive policies add up: when the lint flags some of them, those let the rows
    # through; when it flags none, each one is a suspect (usually there is one).
    suspects = {n for n, f in flagged_by.items() if not f.is_empty()} or set(flagged_by)
    for policy in candidates.filter(pl.col("policy").is_in(sorted(suspects))).iter_rows(named=True):
        name, where = policy["policy"], f"{policy['schema']}.{table}"
        flagged = flagged_by[name]
        fix = _joined(flagged, "fix", "; ") or _fix(kind, name, where, _columns(tables, table))
        yield (*base, name, policy["using"], _joined(flagged, "rule"), fix)


def _object_source(
    base: tuple[Any, ...], label: str, errors: pl.DataFrame | None
) -> tuple[Any, ...]:
    """The source row of an exposed view, materialised view or function (`label`)."""
    flagged = (
        errors.filter(pl.format("{}.{}", "schema", "table") == label)
        if errors is not None
        else None
    )
    fix = _joined(flagged, "fix", "; ") or (
        f"REVOKE ALL ON {label} FROM anon, authenticated; or scope what it returns "
        "by the caller's memberships"
    )
    return (*base, None, None, _joined(flagged, "rule"), fix)


def _admitting(policies: pl.DataFrame | None, table: str, kind: str) -> pl.DataFrame | None:
    """The permissive policies on `table` that let a caller of this kind read rows."""
    if policies is None:
        return None
    role = "anon" if kind == "anon" else "authenticated"
    return policies.filter(
        (pl.col("table") == table)
        & (pl.col("permissive").cast(pl.String).str.to_uppercase() == "PERMISSIVE")
        & pl.col("command").cast(pl.String).str.to_uppercase().is_in(["SELECT", "ALL"])
        & (
            pl.col("roles").list.contains(role)
            | pl.col("roles").list.contains("public")
            | pl.col("roles").list.len().fill_null(0).eq(0)
        )
    ).sort("policy")


def _columns(tables: pl.DataFrame | None, table: str) -> list[str]:
    if tables is None:
        return []
    found = tables.filter(pl.col("table") == table).get_column("columns").to_list()
    return list(found[0] or []) if found else []


def _fix(kind: str, policy: str, where: str, columns: list[str]) -> str:
    alter = f"ALTER POLICY {policy} ON {where}"
    if kind == "chapter":
        scope = next((s for column, s in _chapter_scopes().items() if column in columns), None)
        return (
            f"{alter} USING ({scope});"
            if scope
            else f"{alter} USING (…) so that a chapter-bound membership admits only its chapter"
        )
    if kind == "anon":
        return f"{alter} TO authenticated; REVOKE ALL ON {where} FROM anon;"
    if kind == "claims":
        return f"{alter} USING ({_ORG_SCOPE}); (or read app_metadata, which only the server writes)"
    return f"{alter} USING ({_ORG_SCOPE});"


def _joined(frame: pl.DataFrame | None, column: str, sep: str = ", ") -> str | None:
    if frame is None or frame.is_empty():
        return None
    return sep.join(dict.fromkeys(frame.get_column(column).to_list())) or None
