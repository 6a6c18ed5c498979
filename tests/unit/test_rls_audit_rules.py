"""The lint's rule registry: declared once, the README's table generated from it, every
splinter security lint covered, every finding's level the registry's.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from contactsync_kit.rls_audit import RULES, SPLINTER_NOT_APPLICABLE, rules_frame, rules_markdown
from contactsync_kit.rls_audit.rules import RULES_BY_NAME, level_of, splinter_counterparts

README = Path(__file__).resolve().parents[2] / "README.md"
LINT = Path(__file__).resolve().parents[2] / "contactsync_kit" / "rls_audit" / "lint.py"

#: Supabase splinter's security lints (supabase/splinter, lints/*.sql).
SPLINTER_SECURITY = {
    "auth_users_exposed",
    "policy_exists_rls_disabled",
    "rls_enabled_no_policy",
    "security_definer_view",
    "function_search_path_mutable",
    "rls_disabled_in_public",
    "rls_references_user_metadata",
    "materialized_view_in_api",
    "foreign_table_in_api",
    "insecure_queue_exposed_in_api",
    "sensitive_columns_exposed",
    "rls_policy_always_true",
    "anon_security_definer_function_executable",
    "authenticated_security_definer_function_executable",
}


def test_the_readme_table_is_the_registry() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- rules:start -->\n", 1)[1].split("<!-- rules:end -->", 1)[0]
    assert block == rules_markdown()


def test_every_splinter_security_lint_has_a_counterpart_or_a_reason() -> None:
    covered = set(splinter_counterparts()) | set(SPLINTER_NOT_APPLICABLE)
    assert covered >= SPLINTER_SECURITY
    assert set(splinter_counterparts()["rls_references_user_metadata"]) == {"user_metadata_scoping"}


def test_rules_are_declared_once_with_a_level_and_a_fix() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names)) == len(RULES_BY_NAME)
    assert {r.level for r in RULES} <= {"error", "warning", "info"}
    assert all(r.catches and r.fix for r in RULES)
    frame = rules_frame()
    assert frame.height == len(RULES) and frame.filter(pl.col("fix") == "").is_empty()


def test_every_rule_the_lint_emits_is_declared() -> None:
    emitted = set(re.findall(r'"([a-z_]+)",\n', LINT.read_text(encoding="utf-8"))) & {
        n for n in re.findall(r'"([a-z][a-z_]+)"', LINT.read_text(encoding="utf-8"))
    }
    used = {name for name in emitted if name in RULES_BY_NAME}
    assert {"user_metadata_scoping", "definer_function_exposed", "auth_users_exposed"} <= used
    for name in used:
        assert level_of(name) == RULES_BY_NAME[name].level
