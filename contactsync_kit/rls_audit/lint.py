"""The policy lint over a catalog snapshot: tables, policies, indexes and the exposed surface.
Pure. Every finding carries its fix in one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl

from .expressions import (
    bare_auth_calls,
    called_functions,
    constrains_by_caller,
    is_true,
    reads_claims,
    reads_user_metadata,
    referenced_columns,
)
from .frames import LINT_SCHEMA, SURFACE_SCHEMA
from .rules import ERROR, INFO, WARNING, level_of
from .surface import surface_line

__all__ = [
    "ERROR",
    "INFO",
    "PERSONAL_DATA_COLUMN",
    "WARNING",
    "PolicyCatalog",
    "claims_readers",
    "lint_policies",
]
__io__ = "none"

#: Column names that mark a table as holding personal data (names, contact details, free text
#: about a person, the link from a person to an organisation).
PERSONAL_DATA_COLUMN: Final = re.compile(
    r"^(full_name|first_name|last_name|email|phone|address|body|birth_?date|date_of_birth|"
    r"user_id)$|email|phone|address",
    re.IGNORECASE,
)
_EXAMPLE_SCOPE: Final = "organisation_id IN (SELECT private.member_organisation_ids())"
_S = pl.String()
#: Functions and views the lint reads the text of (see `PolicyCatalog`).
ROUTINES_SCHEMA: Final = pl.Schema({"schema": _S, "name": _S, "source": _S})
VIEWS_SCHEMA: Final = pl.Schema({"schema": _S, "name": _S, "definition": _S})


@dataclass(frozen=True)
class PolicyCatalog:
    """What the lint reads from the catalog.

    * `tables`: ``schema``, ``table``, ``rls_enabled`` (bool), ``columns`` (list of str);
    * `policies`: ``schema``, ``table``, ``policy``, ``permissive`` (str), ``roles`` (list of
      str), ``command``, ``using`` and ``with_check`` (deparsed expressions or null);
    * `indexes`: ``schema``, ``table``, ``index``, ``columns`` (list of str, in key order);
    * `surface`: the exposed surface (`SURFACE_SCHEMA`);
    * `routines`: every function outside the system schemas and ``auth`` (``schema``,
      ``name`` without arguments, ``source``), to follow what a policy calls;
    * `views`: the exposed views and materialised views with their ``definition``;
    * `exposed_schemas`, and `schemas_known`: whether the database said which they are.
    """

    tables: pl.DataFrame
    policies: pl.DataFrame
    indexes: pl.DataFrame
    surface: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SURFACE_SCHEMA))
    exposed_schemas: tuple[str, ...] = ("public",)
    schemas_known: bool = True
    routines: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ROUTINES_SCHEMA))
    views: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=VIEWS_SCHEMA))


_Finding = tuple[str, str, str | None, str, str, str, str]


def _finding(
    schema: str, table: str, policy: str | None, rule: str, detail: str, fix: str
) -> _Finding:
    return (schema, table, policy, rule, level_of(rule), detail, fix)


def lint_policies(catalog: PolicyCatalog, accepted_surface: Iterable[str] = ()) -> pl.DataFrame:
    """Policy lint over a catalog snapshot (`LINT_SCHEMA`). Pure.

    The rules, their levels and fixes are declared in `rules.RULES`. `accepted_surface` are
    the expected-surface file's lines: a ``SECURITY DEFINER`` function whose line (definer,
    owner and search_path included) is accepted there is reported as
    ``definer_function_accepted`` instead of the error ``definer_function_exposed``.
    """
    readers = _metadata_readers(catalog.routines)
    findings = [
        *_schema_findings(catalog),
        *_table_findings(catalog, readers),
        *_surface_findings(catalog, readers, frozenset(accepted_surface)),
    ]
    return pl.DataFrame(findings, schema=LINT_SCHEMA, orient="row").sort(
        ["severity", "schema", "table", "rule", "policy"], nulls_last=True
    )


def _closure(routines: pl.DataFrame, direct: Callable[[str | None], bool]) -> set[str]:
    """``schema.name`` of every routine whose source satisfies `direct`, or calls one that
    does (transitively).
    """
    sources = {f"{schema}.{name}".lower(): source for schema, name, source in routines.rows()}
    found = {name for name, source in sources.items() if direct(source)}
    while True:
        more = {
            name
            for name, source in sources.items()
            if name not in found and called_functions(source) & found
        }
        if not more:
            return found
        found |= more


def _metadata_readers(routines: pl.DataFrame) -> set[str]:
    return _closure(routines, reads_user_metadata)


def claims_readers(catalog: PolicyCatalog) -> list[str]:
    """Policies, views and functions that read JWT claims beyond the caller's id and role
    (directly or through the functions they call): where a token's user_metadata could
    change what a caller sees. Empty means no claims probe can find anything.
    """
    readers = _closure(catalog.routines, reads_claims)

    def reads(text: str | None) -> bool:
        return reads_claims(text) or bool(called_functions(text) & readers)

    found = [
        f"policy {p['policy']} on {p['schema']}.{p['table']}"
        for p in catalog.policies.iter_rows(named=True)
        if reads(p["using"]) or reads(p["with_check"])
    ]
    found += [
        f"view {v['schema']}.{v['name']}"
        for v in catalog.views.iter_rows(named=True)
        if reads(v["definition"])
    ]
    exposed = {
        f"{o['schema']}.{o['name'].split('(')[0]}".lower()
        for o in catalog.surface.filter(pl.col("kind") == "function").iter_rows(named=True)
    }
    found += [f"function {name}" for name in sorted(readers & exposed)]
    return found


def _metadata_detail(text: str | None, readers: set[str]) -> str | None:
    """How SQL text reads user-editable claims (None when it does not)."""
    if reads_user_metadata(text):
        return "reads user_metadata / raw_user_meta_data, which the user edits with updateUser"
    through = sorted(called_functions(text) & readers)
    if through:
        return (
            f"calls {', '.join(through)}, which reads user_metadata / raw_user_meta_data "
            "(the user edits it with updateUser)"
        )
    return None


def _scoped_by_metadata(
    schema: str, name: str, kind: str, definition: str | None, readers: set[str]
) -> Iterator[_Finding]:
    """A view's or function's scoping by user-editable claims, as a finding with its fix."""
    how = _metadata_detail(definition, readers)
    if how is not None:
        yield _finding(
            schema,
            name,
            None,
            "user_metadata_scoping",
            f"the {kind} {how}",
            f"scope {schema}.{name} by a membership table or app_metadata instead",
        )


def _schema_findings(catalog: PolicyCatalog) -> Iterator[_Finding]:
    if not catalog.schemas_known:
        yield _finding(
            ",".join(catalog.exposed_schemas),
            "",
            None,
            "exposed_schemas_unknown",
            "the database does not say which schemas PostgREST exposes; "
            "assumed: " + ", ".join(catalog.exposed_schemas),
            "ALTER ROLE authenticator SET pgrst.db_schemas = 'public'; "
            "(and PostgREST's db-config on)",
        )


def _table_findings(catalog: PolicyCatalog, readers: set[str]) -> Iterator[_Finding]:
    for table in catalog.tables.iter_rows(named=True):
        schema, name = table["schema"], table["table"]
        own = catalog.policies.filter((pl.col("schema") == schema) & (pl.col("table") == name))
        if not table["rls_enabled"]:
            yield _finding(
                schema,
                name,
                None,
                "policy_exists_rls_disabled" if own.height else "rls_disabled",
                "row level security is off on this exposed table"
                + (f", so its {own.height} policy(ies) do not apply" if own.height else ""),
                f"ALTER TABLE {schema}.{name} ENABLE ROW LEVEL SECURITY;",
            )
        elif own.is_empty():
            yield _finding(
                schema,
                name,
                None,
                "rls_without_policies",
                "RLS is enabled but no policy exists: the API roles see nothing",
                "nothing to fix if the table is closed on purpose; else add a policy",
            )
        leading = {
            cols[0]
            for cols in catalog.indexes.filter(
                (pl.col("schema") == schema) & (pl.col("table") == name)
            )
            .get_column("columns")
            .to_list()
            if cols
        }
        columns = list(table["columns"] or [])
        personal = any(PERSONAL_DATA_COLUMN.search(c) for c in columns)
        for policy in own.iter_rows(named=True):
            yield from _policy_findings(schema, name, policy, columns, leading, personal, readers)


@dataclass(frozen=True)
class _Policy:
    """One policy as the lint reads it: where it is, whom it admits, its expressions."""

    schema: str
    table: str
    name: str
    roles: list[str]
    permissive: bool
    expressions: list[tuple[str, str]]  # ("USING" / "WITH CHECK", expression)

    @classmethod
    def of(cls, schema: str, table: str, policy: dict[str, Any]) -> _Policy:
        return cls(
            schema,
            table,
            policy["policy"],
            list(policy["roles"] or []) or ["public"],
            str(policy["permissive"]).upper() == "PERMISSIVE",
            [
                (label, e)
                for label, e in (("USING", policy["using"]), ("WITH CHECK", policy["with_check"]))
                if e
            ],
        )

    @property
    def where(self) -> str:
        return f"{self.schema}.{self.table}"

    def finding(self, rule: str, detail: str, fix: str) -> _Finding:
        return _finding(self.schema, self.table, self.name, rule, detail, fix)


def _policy_findings(
    schema: str,
    table: str,
    policy: dict[str, Any],
    columns: list[str],
    leading: set[str],
    personal: bool,
    readers: set[str],
) -> Iterator[_Finding]:
    p = _Policy.of(schema, table, policy)
    yield from _scope_findings(p, columns, readers)
    yield from _role_findings(p, personal)
    yield from _cost_findings(p, columns, leading)


def _scope_findings(p: _Policy, columns: list[str], readers: set[str]) -> Iterator[_Finding]:
    """Expressions that do not tie a row to the caller, or tie it to a claim they edit."""
    scoped = f"({_EXAMPLE_SCOPE})"
    for label, expression in p.expressions:
        how = _metadata_detail(expression, readers)
        if how is not None:
            yield p.finding(
                "user_metadata_scoping",
                f"{label} {how}: anyone can name another organisation there",
                f"ALTER POLICY {p.name} ON {p.where} {label} {scoped}; "
                "(or read app_metadata, which only the server writes)",
            )
    for label, expression in p.expressions if p.permissive else []:
        if is_true(expression):
            yield p.finding(
                "using_true",
                f"{label} (true): every row is open to {', '.join(p.roles)}",
                f"ALTER POLICY {p.name} ON {p.where} {label} {scoped};",
            )
        elif not constrains_by_caller(expression, columns):
            yield p.finding(
                "policy_not_scoped",
                f"{label} never ties the row to the caller ({_short(expression)}): "
                f"open to every {' / '.join(p.roles)} caller",
                f"ALTER POLICY {p.name} ON {p.where} {label} {scoped};",
            )


def _role_findings(p: _Policy, personal: bool) -> Iterator[_Finding]:
    """A policy for every role, or one admitting the anon key to personal data."""
    if p.roles == ["public"]:
        yield p.finding(
            "no_role",
            "the policy is not limited to a role (applies to public, anon included)",
            f"ALTER POLICY {p.name} ON {p.where} TO authenticated;",
        )
    if p.permissive and personal and ({"anon", "public"} & set(p.roles)):
        yield p.finding(
            "anon_personal_data",
            "a permissive policy admits the anon key to a table with personal data",
            f"ALTER POLICY {p.name} ON {p.where} TO authenticated; "
            f"REVOKE ALL ON {p.where} FROM anon;",
        )


def _cost_findings(p: _Policy, columns: list[str], leading: set[str]) -> Iterator[_Finding]:
    """What makes the policy slow: auth calls evaluated per row, filters with no index."""
    for _label, expression in p.expressions:
        bare = bare_auth_calls(expression)
        if bare > 0:
            yield p.finding(
                "bare_auth_call",
                f"{bare} auth.uid()/jwt()/role() call(s) not wrapped in (select ...): "
                "evaluated once per row",
                "write (select auth.uid()) instead of auth.uid()",
            )
    referenced = sorted({c for _label, e in p.expressions for c in referenced_columns(e, columns)})
    for column in referenced:
        if column not in leading:
            yield p.finding(
                "missing_index",
                f"no index leads with {column}, which the policy filters on",
                f"CREATE INDEX ON {p.where} ({column});",
            )


_AUTH_USERS: Final = re.compile(r"\bauth\.users\b", re.IGNORECASE)


def _surface_findings(
    catalog: PolicyCatalog, readers: set[str], accepted: frozenset[str]
) -> Iterator[_Finding]:
    definitions = {(s, n): d for s, n, d in catalog.views.rows()}
    sources = {f"{s}.{n}".lower(): src for s, n, src in catalog.routines.rows()}
    for obj in catalog.surface.iter_rows(named=True):
        roles = ", ".join(obj["roles"] or [])
        if obj["kind"] == "function":
            yield from _function_findings(obj, roles, sources, readers, accepted)
        else:
            definition = definitions.get((obj["schema"], obj["name"]))
            yield from _relation_findings(obj, roles, definition, readers)


_NOT_EXPOSED: Final = "(or move it out of the exposed schemas)"
#: Relations that have no RLS: their lint rule and what they are, in words.
_NO_RLS: Final = {
    "materialized view": ("materialized_view_exposed", "a materialised view"),
    "foreign table": ("foreign_table_exposed", "a foreign table"),
}


def _relation_findings(
    obj: dict[str, Any], roles: str, definition: str | None, readers: set[str]
) -> Iterator[_Finding]:
    """An exposed view, materialised view or foreign table (`definition`: a view's)."""
    schema, name, kind = obj["schema"], obj["name"], obj["kind"]
    where = f"{schema}.{name}"
    revoke = f"REVOKE ALL ON {where} FROM anon, authenticated; {_NOT_EXPOSED}"
    if kind in ("view", "materialized view"):
        if definition and _AUTH_USERS.search(definition):
            yield _finding(
                schema,
                name,
                None,
                "auth_users_exposed",
                f"the {kind} reads auth.users and {roles} can read it",
                revoke,
            )
        yield from _scoped_by_metadata(schema, name, kind, definition, readers)
    if kind == "view" and not obj["security_invoker"]:
        yield _finding(
            schema,
            name,
            None,
            "security_definer_view",
            f"the view runs as its owner, bypassing RLS, for {roles}",
            f"ALTER VIEW {where} SET (security_invoker = true);",
        )
    elif kind in _NO_RLS:
        rule, what = _NO_RLS[kind]
        yield _finding(
            schema, name, None, rule, f"{what} has no RLS and {roles} can read it", revoke
        )


def _function_findings(
    obj: dict[str, Any],
    roles: str,
    sources: dict[str, str],
    readers: set[str],
    accepted: frozenset[str],
) -> Iterator[_Finding]:
    schema, name = obj["schema"], obj["name"]
    where = f"{schema}.{name}"
    base = f"{schema}.{name.split('(')[0]}".lower()
    yield from _scoped_by_metadata(schema, name, "function", sources.get(base), readers - {base})
    if not obj["search_path_fixed"]:
        yield _finding(
            schema,
            name,
            None,
            "definer_function_search_path"
            if obj["security_definer"]
            else "function_search_path_mutable",
            ("SECURITY DEFINER" if obj["security_definer"] else "SECURITY INVOKER")
            + f" without a fixed search_path, callable by {roles}",
            f"ALTER FUNCTION {where} SET search_path = '';",
        )
    if obj["security_definer"]:
        if surface_line(obj) in accepted:
            yield _finding(
                schema,
                name,
                None,
                "definer_function_accepted",
                f"SECURITY DEFINER, callable by {roles}: accepted in the expected-surface file",
                "nothing while the probes pass",
            )
        else:
            yield _finding(
                schema,
                name,
                None,
                "definer_function_exposed",
                f"SECURITY DEFINER runs as its owner, bypassing RLS, callable by {roles}",
                f"REVOKE EXECUTE ON FUNCTION {where} FROM PUBLIC, anon, authenticated; "
                "(or SECURITY INVOKER, or accept its surface line after review)",
            )


def _short(expression: str, limit: int = 60) -> str:
    text = " ".join(expression.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
