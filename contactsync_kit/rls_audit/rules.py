"""The lint's rule registry: every rule declared once — name, level, what it catches, its fix —
and how each of Supabase's own security lints (splinter) maps to a rule here. Pure.

The lint (`lint`) emits findings by rule name and takes the level from here; the README's rule
table and notebook 03's rule list are generated from `RULES` (`rules_frame`, `rules_markdown`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import polars as pl

__all__ = [
    "ERROR",
    "INFO",
    "RULES",
    "RULES_BY_NAME",
    "SPLINTER_NOT_APPLICABLE",
    "WARNING",
    "Rule",
    "level_of",
    "rules_frame",
    "rules_markdown",
    "splinter_counterparts",
]

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Rule:
    """One lint rule: its `name` (the finding's ``rule``), `level`, what it `catches`, the
    general `fix` (each finding also carries its own, for the object it names) and the
    splinter lints it is the counterpart of.
    """

    name: str
    level: str
    catches: str
    fix: str
    splinter: tuple[str, ...] = ()


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "rls_disabled",
        ERROR,
        "a table in an exposed schema without row level security: every row is readable by "
        "whoever holds a grant",
        "ALTER TABLE … ENABLE ROW LEVEL SECURITY; then add scoped policies",
        ("rls_disabled_in_public", "sensitive_columns_exposed", "insecure_queue_exposed_in_api"),
    ),
    Rule(
        "policy_exists_rls_disabled",
        ERROR,
        "a table has policies but row level security is off, so none of them applies",
        "ALTER TABLE … ENABLE ROW LEVEL SECURITY;",
        ("policy_exists_rls_disabled",),
    ),
    Rule(
        "using_true",
        ERROR,
        "a permissive USING / WITH CHECK (true): every row is open to the policy's roles",
        "scope the policy: organisation_id IN (SELECT private.member_organisation_ids())",
        ("rls_policy_always_true",),
    ),
    Rule(
        "policy_not_scoped",
        ERROR,
        "a permissive policy that never ties the row to the caller (auth.uid() IS NOT NULL, "
        "auth.role() = 'authenticated', 1 = 1, one fixed organisation)",
        "scope the policy by a membership: organisation_id IN (SELECT "
        "private.member_organisation_ids())",
    ),
    Rule(
        "user_metadata_scoping",
        ERROR,
        "a policy, view or function whose scoping reads user_metadata / raw_user_meta_data "
        "(auth.jwt(), auth.users or request.jwt.claims): the user edits it with updateUser",
        "scope by app_metadata (only the server writes it) or by a membership table",
        ("rls_references_user_metadata",),
    ),
    Rule(
        "anon_personal_data",
        ERROR,
        "a permissive policy admits the anon key (or public) to a table with personal data",
        "limit the policy TO authenticated and REVOKE the anon grant",
        ("sensitive_columns_exposed",),
    ),
    Rule(
        "auth_users_exposed",
        ERROR,
        "an exposed view or materialised view reads auth.users: the users' emails and "
        "metadata reach the API",
        "drop the view from the exposed schemas, or REVOKE it from anon and authenticated",
        ("auth_users_exposed",),
    ),
    Rule(
        "security_definer_view",
        ERROR,
        "an exposed view without security_invoker runs as its owner, bypassing RLS",
        "ALTER VIEW … SET (security_invoker = true);",
        ("security_definer_view",),
    ),
    Rule(
        "materialized_view_exposed",
        ERROR,
        "an exposed materialised view: it has no RLS",
        "REVOKE it from anon and authenticated, or move it out of the exposed schemas",
        ("materialized_view_in_api",),
    ),
    Rule(
        "foreign_table_exposed",
        ERROR,
        "an exposed foreign table: it has no RLS",
        "REVOKE it from anon and authenticated, or move it out of the exposed schemas",
        ("foreign_table_in_api",),
    ),
    Rule(
        "definer_function_exposed",
        ERROR,
        "an API role may call a SECURITY DEFINER function: it runs as its owner, bypassing "
        "RLS, and is not accepted in the expected-surface file",
        "REVOKE EXECUTE from PUBLIC, anon, authenticated (or SECURITY INVOKER); or accept its "
        "surface line, definer included, after review",
        (
            "anon_security_definer_function_executable",
            "authenticated_security_definer_function_executable",
        ),
    ),
    Rule(
        "definer_function_search_path",
        ERROR,
        "a SECURITY DEFINER function the API roles may call, without a fixed search_path",
        "ALTER FUNCTION … SET search_path = '';",
        ("function_search_path_mutable",),
    ),
    Rule(
        "function_search_path_mutable",
        WARNING,
        "an exposed function without a fixed search_path: objects it names resolve by the "
        "caller's path",
        "ALTER FUNCTION … SET search_path = '';",
        ("function_search_path_mutable",),
    ),
    Rule(
        "no_role",
        WARNING,
        "the policy is not limited to a role (it applies to public, anon included)",
        "ALTER POLICY … TO authenticated;",
    ),
    Rule(
        "bare_auth_call",
        WARNING,
        "auth.uid()/jwt()/role() not wrapped in (select …): evaluated once per row",
        "write (select auth.uid()) instead of auth.uid()",
    ),
    Rule(
        "missing_index",
        WARNING,
        "a column a policy filters on leads no index",
        "CREATE INDEX ON … (column);",
    ),
    Rule(
        "exposed_schemas_unknown",
        WARNING,
        "the database does not say which schemas PostgREST exposes; public is assumed",
        "ALTER ROLE authenticator SET pgrst.db_schemas = 'public'; (and PostgREST's db-config)",
    ),
    Rule(
        "rls_without_policies",
        INFO,
        "RLS is enabled but no policy exists: the API roles see nothing",
        "nothing if the table is closed on purpose; else add a scoped policy",
        ("rls_enabled_no_policy",),
    ),
    Rule(
        "definer_function_accepted",
        INFO,
        "a SECURITY DEFINER function the API roles may call, accepted (definer included) in "
        "the expected-surface file; the probes still call it with ids the caller must not see",
        "nothing while the probes pass; review it when its surface line changes",
    ),
)

RULES_BY_NAME: Final = {rule.name: rule for rule in RULES}

#: Splinter's security lints with no rule of their own here, and why.
SPLINTER_NOT_APPLICABLE: Final[dict[str, str]] = {}


def level_of(rule: str) -> str:
    """The declared level of `rule` (KeyError for an undeclared rule: declare it first)."""
    return RULES_BY_NAME[rule].level


def splinter_counterparts() -> dict[str, list[str]]:
    """Each splinter security lint -> the rules here that cover it."""
    mapping: dict[str, list[str]] = {}
    for rule in RULES:
        for lint in rule.splinter:
            mapping.setdefault(lint, []).append(rule.name)
    return dict(sorted(mapping.items()))


def rules_frame() -> pl.DataFrame:
    """The registry as a frame: rule, level, catches, fix, splinter counterparts."""
    return pl.DataFrame(
        [(r.name, r.level, r.catches, r.fix, ", ".join(r.splinter)) for r in RULES],
        schema={
            "rule": pl.String,
            "level": pl.String,
            "catches": pl.String,
            "fix": pl.String,
            "splinter": pl.String,
        },
        orient="row",
    )


def rules_markdown() -> str:
    """The registry as a markdown table (the README's rule table is exactly this)."""
    lines = ["| rule | level | catches | fix | splinter |", "|---|---|---|---|---|"]
    for r in RULES:
        cells = (r.name, r.level, r.catches, r.fix, ", ".join(r.splinter) or "—")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
