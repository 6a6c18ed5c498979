"""The policy lint over a catalog snapshot: tables, policies, indexes and the exposed surface.
Pure. Every finding carries its fix in one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl

from .expressions import bare_auth_calls, constrains_by_caller, is_true, referenced_columns
from .frames import LINT_SCHEMA, SURFACE_SCHEMA

__all__ = ["ERROR", "INFO", "PERSONAL_DATA_COLUMN", "WARNING", "PolicyCatalog", "lint_policies"]

ERROR, WARNING, INFO = "error", "warning", "info"
#: Column names that mark a table as holding personal data (names, contact details, free text
#: about a person, the link from a person to an organisation).
PERSONAL_DATA_COLUMN: Final = re.compile(
    r"^(full_name|first_name|last_name|email|phone|address|body|birth_?date|date_of_birth|"
    r"user_id)$|email|phone|address",
    re.IGNORECASE,
)
_EXAMPLE_SCOPE: Final = "organisation_id IN (SELECT private.member_organisation_ids())"


@dataclass(frozen=True)
class PolicyCatalog:
    """What the lint reads from the catalog.

    * `tables`: ``schema``, ``table``, ``rls_enabled`` (bool), ``columns`` (list of str);
    * `policies`: ``schema``, ``table``, ``policy``, ``permissive`` (str), ``roles`` (list of
      str), ``command``, ``using`` and ``with_check`` (deparsed expressions or null);
    * `indexes`: ``schema``, ``table``, ``index``, ``columns`` (list of str, in key order);
    * `surface`: the exposed surface (`SURFACE_SCHEMA`);
    * `exposed_schemas`, and `schemas_known`: whether the database said which they are.
    """

    tables: pl.DataFrame
    policies: pl.DataFrame
    indexes: pl.DataFrame
    surface: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SURFACE_SCHEMA))
    exposed_schemas: tuple[str, ...] = ("public",)
    schemas_known: bool = True


_Finding = tuple[str, str, str | None, str, str, str, str]


def lint_policies(catalog: PolicyCatalog) -> pl.DataFrame:
    """Policy lint over a catalog snapshot (`LINT_SCHEMA`). Pure.

    Errors: ``rls_disabled`` (a table in an exposed schema without RLS is readable by whoever
    holds a grant), ``using_true`` (a permissive ``USING`` / ``WITH CHECK (true)``),
    ``policy_not_scoped`` (a permissive policy whose expression never ties the row to the
    caller: ``(select auth.uid()) is not null``, ``auth.role() = 'authenticated'``, ``1 = 1``,
    ``organisation_id = '<one organisation>'``), ``anon_personal_data`` (a permissive policy
    for ``anon`` or ``public`` on a table with personal data), ``security_definer_view`` (an
    exposed view without ``security_invoker = true`` runs as its owner, bypassing RLS),
    ``materialized_view_exposed`` (materialised views have no RLS) and
    ``definer_function_search_path`` (a ``SECURITY DEFINER`` function the API roles may call,
    without a fixed ``search_path``).
    Warnings: ``no_role`` (the policy applies to ``public``, anon included),
    ``bare_auth_call`` (``auth.uid()`` not wrapped in ``(select …)`` runs per row),
    ``missing_index`` (a column a policy filters on leads no index),
    ``definer_function_exposed`` (the API roles may call a ``SECURITY DEFINER`` function) and
    ``exposed_schemas_unknown``. Info: ``rls_without_policies``.
    """
    findings = [
        *_schema_findings(catalog),
        *_table_findings(catalog),
        *_surface_findings(catalog.surface),
    ]
    return pl.DataFrame(findings, schema=LINT_SCHEMA, orient="row").sort(
        ["severity", "schema", "table", "rule", "policy"], nulls_last=True
    )


def _schema_findings(catalog: PolicyCatalog) -> Iterator[_Finding]:
    if not catalog.schemas_known:
        yield (
            ",".join(catalog.exposed_schemas),
            "",
            None,
            "exposed_schemas_unknown",
            WARNING,
            "the database does not say which schemas PostgREST exposes; "
            "assumed: " + ", ".join(catalog.exposed_schemas),
            "ALTER ROLE authenticator SET pgrst.db_schemas = 'public'; "
            "(and PostgREST's db-config on)",
        )


def _table_findings(catalog: PolicyCatalog) -> Iterator[_Finding]:
    for table in catalog.tables.iter_rows(named=True):
        schema, name = table["schema"], table["table"]
        own = catalog.policies.filter((pl.col("schema") == schema) & (pl.col("table") == name))
        if not table["rls_enabled"]:
            yield (
                schema,
                name,
                None,
                "rls_disabled",
                ERROR,
                "row level security is not enabled on this exposed table",
                f"ALTER TABLE {schema}.{name} ENABLE ROW LEVEL SECURITY;",
            )
        elif own.is_empty():
            yield (
                schema,
                name,
                None,
                "rls_without_policies",
                INFO,
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
            yield from _policy_findings(schema, name, policy, columns, leading, personal)


def _policy_findings(
    schema: str,
    table: str,
    policy: dict[str, Any],
    columns: list[str],
    leading: set[str],
    personal: bool,
) -> Iterator[_Finding]:
    name = policy["policy"]
    where = f"{schema}.{table}"
    roles = list(policy["roles"] or []) or ["public"]
    permissive = str(policy["permissive"]).upper() == "PERMISSIVE"
    expressions = [
        (label, e)
        for label, e in (("USING", policy["using"]), ("WITH CHECK", policy["with_check"]))
        if e
    ]
    for label, expression in expressions if permissive else []:
        if is_true(expression):
            yield (
                schema,
                table,
                name,
                "using_true",
                ERROR,
                f"{label} (true): every row is open to {', '.join(roles)}",
                f"ALTER POLICY {name} ON {where} {label} ({_EXAMPLE_SCOPE});",
            )
        elif not constrains_by_caller(expression, columns):
            yield (
                schema,
                table,
                name,
                "policy_not_scoped",
                ERROR,
                f"{label} never ties the row to the caller ({_short(expression)}): "
                f"open to every {' / '.join(roles)} caller",
                f"ALTER POLICY {name} ON {where} {label} ({_EXAMPLE_SCOPE});",
            )
    if roles == ["public"]:
        yield (
            schema,
            table,
            name,
            "no_role",
            WARNING,
            "the policy is not limited to a role (applies to public, anon included)",
            f"ALTER POLICY {name} ON {where} TO authenticated;",
        )
    if permissive and personal and ({"anon", "public"} & set(roles)):
        yield (
            schema,
            table,
            name,
            "anon_personal_data",
            ERROR,
            "a permissive policy admits the anon key to a table with personal data",
            f"ALTER POLICY {name} ON {where} TO authenticated; REVOKE ALL ON {where} FROM anon;",
        )
    for _label, expression in expressions:
        bare = bare_auth_calls(expression)
        if bare > 0:
            yield (
                schema,
                table,
                name,
                "bare_auth_call",
                WARNING,
                f"{bare} auth.uid()/jwt()/role() call(s) not wrapped in (select ...): "
                "evaluated once per row",
                "write (select auth.uid()) instead of auth.uid()",
            )
    referenced = sorted({c for _label, e in expressions for c in referenced_columns(e, columns)})
    for column in referenced:
        if column not in leading:
            yield (
                schema,
                table,
                name,
                "missing_index",
                WARNING,
                f"no index leads with {column}, which the policy filters on",
                f"CREATE INDEX ON {where} ({column});",
            )


def _surface_findings(surface: pl.DataFrame) -> Iterator[_Finding]:
    for obj in surface.iter_rows(named=True):
        schema, name, kind = obj["schema"], obj["name"], obj["kind"]
        roles = ", ".join(obj["roles"] or [])
        if kind == "view" and not obj["security_invoker"]:
            yield (
                schema,
                name,
                None,
                "security_definer_view",
                ERROR,
                f"the view runs as its owner, bypassing RLS, for {roles}",
                f"ALTER VIEW {schema}.{name} SET (security_invoker = true);",
            )
        elif kind == "materialized view":
            yield (
                schema,
                name,
                None,
                "materialized_view_exposed",
                ERROR,
                f"a materialised view has no RLS and {roles} can read it",
                f"REVOKE ALL ON {schema}.{name} FROM anon, authenticated; "
                "(or move it out of the exposed schemas)",
            )
        elif kind == "function" and obj["security_definer"]:
            if not obj["search_path_fixed"]:
                yield (
                    schema,
                    name,
                    None,
                    "definer_function_search_path",
                    ERROR,
                    f"SECURITY DEFINER without a fixed search_path, callable by {roles}",
                    f"ALTER FUNCTION {schema}.{name} SET search_path = '';",
                )
            yield (
                schema,
                name,
                None,
                "definer_function_exposed",
                WARNING,
                f"SECURITY DEFINER runs as its owner, bypassing RLS, callable by {roles}",
                f"REVOKE EXECUTE ON FUNCTION {schema}.{name} FROM PUBLIC, anon, "
                "authenticated; (or move it to a schema the API does not expose)",
            )


def _short(expression: str, limit: int = 60) -> str:
    text = " ".join(expression.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
