"""The policy lint over a catalog snapshot. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

from .frames import LINT_SCHEMA

__all__ = ["ERROR", "INFO", "WARNING", "PolicyCatalog", "lint_policies"]



@dataclass(frozen=True)
class PolicyCatalog:
    """What the lint reads from the catalog.

    * `tables`: ``schema``, ``table``, ``rls_enabled`` (bool), ``columns`` (list of str);
    * `policies`: ``schema``, ``table``, ``policy``, ``permissive`` (str), ``roles`` (list of
      str), ``command``, ``using`` and ``with_check`` (deparsed expressions or null);
    * `indexes`: ``schema``, ``table``, ``index``, ``columns`` (list of str, in key order).
    """

    tables: pl.DataFrame
    policies: pl.DataFrame
    indexes: pl.DataFrame


_AUTH_CALL: Final = re.compile(r"auth\.(uid|jwt|role)\(\)")
_WRAPPED_AUTH_CALL: Final = re.compile(r"SELECT\s+auth\.(uid|jwt|role)\(\)", re.IGNORECASE)
ERROR, WARNING, INFO = "error", "warning", "info"


def _is_true(expression: str | None) -> bool:
    return expression is not None and expression.strip().strip("()").strip().lower() == "true"


def _policy_columns(expression: str, columns: Sequence[str]) -> list[str]:
    """The table's own columns an expression filters on (unqualified references)."""
    text = expression.replace('"', "")
    found = []
    for column in columns:
        # Unqualified only: `m.user_id` inside a subquery is another table's column, and
        # `name(` is a function call.
        if re.search(rf"(?<![\w.]){re.escape(column)}(?![\w(])", text):
            found.append(column)
    return found


def lint_policies(catalog: PolicyCatalog) -> pl.DataFrame:
    """Policy lint over a catalog snapshot (`LINT_SCHEMA`). Pure.

    Rules: ``rls_disabled`` (error: a table in an exposed schema without RLS is readable by
    whoever holds a grant), ``rls_without_policies`` (info: RLS denies everything to the API
    roles), ``using_true`` (error: a permissive policy whose ``USING`` / ``WITH CHECK`` is
    ``true`` opens the table to its roles), ``no_role`` (warning: the policy applies to
    ``public``, i.e. also to ``anon``), ``bare_auth_call`` (warning: ``auth.uid()`` /
    ``auth.jwt()`` / ``auth.role()`` not wrapped in ``(select …)`` is evaluated per row) and
    ``missing_index`` (warning: a column the policy filters on leads no index).
    """
    findings: list[tuple[str, str, str | None, str, str, str]] = []
    policies = catalog.policies
    for table in catalog.tables.iter_rows(named=True):
        schema, name = table["schema"], table["table"]
        own = policies.filter((pl.col("schema") == schema) & (pl.col("table") == name))
        if not table["rls_enabled"]:
            findings.append((schema, name, None, "rls_disabled", ERROR,
                             "row level security is not enabled on this exposed table"))
        elif own.is_empty():
            findings.append((schema, name, None, "rls_without_policies", INFO,
                             "RLS is enabled but no policy exists: the API roles see nothing"))
        leading = {cols[0] for cols in catalog.indexes.filter(
            (pl.col("schema") == schema) & (pl.col("table") == name)
        ).get_column("columns").to_list() if cols}
        for policy in own.iter_rows(named=True):
            policy_name = policy["policy"]
            expressions = [e for e in (policy["using"], policy["with_check"]) if e]
            permissive = str(policy["permissive"]).upper() == "PERMISSIVE"
            for label, expression in (("USING", policy["using"]),
                                      ("WITH CHECK", policy["with_check"])):
                if permissive and _is_true(expression):
                    findings.append((schema, name, policy_name, "using_true", ERROR,
                                     f"{label} (true): every row is open to "
                                     f"{', '.join(policy['roles'] or ['public'])}"))
            roles = list(policy["roles"] or [])
            if not roles or roles == ["public"]:
                findings.append((schema, name, policy_name, "no_role", WARNING,
                                 "the policy is not limited to a role (applies to public, "
                                 "anon included); add TO authenticated"))
            for expression in expressions:
                bare = len(_AUTH_CALL.findall(expression)) - len(
                    _WRAPPED_AUTH_CALL.findall(expression))
                if bare > 0:
                    findings.append((schema, name, policy_name, "bare_auth_call", WARNING,
                                     f"{bare} auth.uid()/jwt()/role() call(s) not wrapped in "
                                     "(select ...): evaluated once per row"))
            referenced = sorted({c for e in expressions
                                 for c in _policy_columns(e, table["columns"] or [])})
            for column in referenced:
                if column not in leading:
                    findings.append((schema, name, policy_name, "missing_index", WARNING,
                                     f"no index leads with {column}, which the policy "
                                     "filters on"))
    return pl.DataFrame(findings, schema=LINT_SCHEMA, orient="row").sort(
        ["severity", "schema", "table", "rule"])

