"""The RLS audit's reach beyond the audited organisations, the exposed surface and the
stronger lint, on fixed frames (pure; the live versions are in tests/integration)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest

from contactsync_kit.rls_audit import (
    SURFACE_SCHEMA,
    UNIVERSE_SCHEMA,
    AuditUser,
    GroundTruth,
    PolicyCatalog,
    evaluate,
    lint_policies,
    members_frame,
    parse_surface_lines,
    surface_diff,
    surface_lines,
)
from contactsync_kit.rls_audit.expressions import constrains_by_caller
from contactsync_kit.rls_audit.surface import surface_targets
from contactsync_kit.rls_audit.truth import with_recorded_memberships

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AUDITED, OUTSIDE = "org-a", "org-x"
UNIVERSE = pl.DataFrame(
    [
        ("organisations", AUDITED, AUDITED, None, None, None, None),
        ("organisations", OUTSIDE, OUTSIDE, None, None, None, None),
        ("contacts", AUDITED, "c1", "ch-1", "c1", None, True),
        ("contacts", AUDITED, "c2", "ch-2", "c2", None, False),
        ("contacts", OUTSIDE, "x1", None, "x1", None, True),
        ("contacts", OUTSIDE, "x2", None, "x2", None, False),
    ],
    schema=UNIVERSE_SCHEMA,
    orient="row",
)
VOL = AuditUser("vol@example.org", "pw", ((AUDITED, "ch-1", "volunteer"),), "vol", "u-vol")
TRUTH = GroundTruth(universe=UNIVERSE, members=members_frame([VOL]))
CONTACTS = ["id", "organisation_id", "chapter_id", "full_name", "email"]


def run(user: str, org: str, table: str, probe: str, count: int | None = None) -> tuple[Any, ...]:
    return (user, org, table, probe, count, None, None, False)


def seen(
    user: str, org: str, table: str, probe: str, row_id: str, row_org: str | None = None
) -> tuple[Any, ...]:
    return (user, org, table, probe, row_id, row_org or org, None, None, None)


# -- beyond the audited set -----------------------------------------------------------------


def test_rows_of_an_outside_organisation_are_leaks_named_with_that_organisation() -> None:
    report = evaluate(
        [run("vol", "*", "contacts", "all_rows"), run("vol", "*", "contacts", "all_count", 2)],
        [
            seen("vol", AUDITED, "contacts", "all_rows", "c1"),
            seen("vol", OUTSIDE, "contacts", "all_rows", "x2"),
        ],
        [],
        TRUTH,
        generated_at=NOW,
        audited_organisations=[AUDITED],
    )
    assert report.leaked_cells() == {
        ("vol", OUTSIDE, "contacts", "all_rows"),
        ("vol", "*", "contacts", "all_count"),
    }
    assert report.leaks().filter(pl.col("probe") == "all_rows").select(
        "organisation_id", "outside_audited_set"
    ).rows() == [(OUTSIDE, True)]
    audited = report.matrix.filter(pl.col("organisation_id") == AUDITED)
    assert audited.select("visible", "expected", "verdict").rows() == [(1, 1, "pass")]
    assert report.discrepancies.select("id", "kind").rows() == [("x2", "leaked")]
    assert "## Leaks outside the audited organisations" in report.markdown()


def test_an_unfiltered_probe_that_misses_an_expected_row_fails_there() -> None:
    report = evaluate([run("vol", "*", "contacts", "all_rows")], [], [], TRUTH, generated_at=NOW)
    assert report.matrix.select("organisation_id", "missing", "verdict").rows() == [
        (AUDITED, 1, "fail")
    ]


def test_an_unfiltered_probe_that_saw_and_expected_nothing_keeps_one_cell() -> None:
    report = evaluate([run("nobody", "*", "contacts", "all_rows")], [], [], TRUTH, generated_at=NOW)
    assert report.matrix.select("organisation_id", "visible", "verdict").rows() == [
        ("*", 0, "pass")
    ]


def test_recorded_memberships_count_only_outside_the_audited_set() -> None:
    expected = members_frame([VOL])
    recorded = pl.DataFrame(
        [("vol", "u-vol", OUTSIDE, None, "admin"), ("vol", "u-vol", AUDITED, None, "admin")],
        schema=expected.schema,
        orient="row",
    )
    merged = with_recorded_memberships(expected, recorded, [AUDITED])
    assert sorted(merged.select("organisation_id", "chapter_id").rows()) == [
        (AUDITED, "ch-1"),
        (OUTSIDE, None),
    ]


def test_surface_rows_are_settled_to_their_organisation_and_judged_by_id() -> None:
    label = "public.contacts_overview"
    report = evaluate(
        [run("vol", "*", label, "surface")],
        [
            seen("vol", "*", label, "surface", "c1", AUDITED),
            seen("vol", "*", label, "surface", "x1", OUTSIDE),
            seen("vol", "*", label, "surface", "zz", OUTSIDE),
        ],
        [],
        TRUTH,
        generated_at=NOW,
    )
    assert sorted(report.matrix.select("organisation_id", "visible", "leaked").rows()) == [
        (AUDITED, 1, 0),
        (OUTSIDE, 2, 2),
    ]
    assert report.checks["passed"].all()


# -- the lint ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "(( SELECT auth.uid() AS uid) IS NOT NULL)",
        "(( SELECT auth.role() AS role) = 'authenticated'::text)",
        "(1 = 1)",
        "(organisation_id = 'c0ffee00-0000-4000-8000-000000000000'::uuid)",
        "(EXISTS ( SELECT 1 FROM organisation_members m WHERE (m.user_id = auth.uid())))",
        "('full_name' = 'full_name')",
    ],
)
def test_expressions_that_never_tie_the_row_to_the_caller(expression: str) -> None:
    assert not constrains_by_caller(expression, CONTACTS)


@pytest.mark.parametrize(
    "expression",
    [
        "(organisation_id IN ( SELECT private.member_organisation_ids() AS ids))",
        "(user_id = ( SELECT auth.uid() AS uid))",
        "((auth.jwt() ->> 'org'::text) = (organisation_id)::text)",
    ],
)
def test_expressions_that_do(expression: str) -> None:
    assert constrains_by_caller(expression, [*CONTACTS, "user_id"])


def catalog(
    policies: list[tuple[str, list[str], str]], surface: Sequence[tuple[Any, ...]] = ()
) -> PolicyCatalog:
    strings = pl.List(pl.String)
    return PolicyCatalog(
        tables=pl.DataFrame(
            [("public", "contacts", True, CONTACTS)],
            orient="row",
            schema={
                "schema": pl.String,
                "table": pl.String,
                "rls_enabled": pl.Boolean,
                "columns": strings,
            },
        ),
        policies=pl.DataFrame(
            [
                ("public", "contacts", name, "PERMISSIVE", roles, "SELECT", using, None)
                for name, roles, using in policies
            ],
            orient="row",
            schema={
                "schema": pl.String,
                "table": pl.String,
                "policy": pl.String,
                "permissive": pl.String,
                "roles": strings,
                "command": pl.String,
                "using": pl.String,
                "with_check": pl.String,
            },
        ),
        indexes=pl.DataFrame(
            [("public", "contacts", "i", ["organisation_id"])],
            orient="row",
            schema={
                "schema": pl.String,
                "table": pl.String,
                "index": pl.String,
                "columns": strings,
            },
        ),
        surface=pl.DataFrame(list(surface), schema=SURFACE_SCHEMA, orient="row"),
    )


def rules(findings: pl.DataFrame) -> list[tuple[str | None, str, str]]:
    return findings.select("policy", "rule", "severity").rows()


def test_a_tautology_and_anon_on_personal_data_are_errors_with_fixes() -> None:
    findings = lint_policies(
        catalog(
            [
                (
                    "scoped",
                    ["authenticated"],
                    "(organisation_id IN ( SELECT private.member_organisation_ids() AS ids))",
                ),
                ("everyone", ["authenticated"], "(( SELECT auth.uid() AS uid) IS NOT NULL)"),
                (
                    "anon_scoped",
                    ["anon"],
                    "(organisation_id IN ( SELECT private.member_organisation_ids() AS ids))",
                ),
            ]
        )
    )
    assert sorted(rules(findings)) == [
        ("anon_scoped", "anon_personal_data", "error"),
        ("everyone", "policy_not_scoped", "error"),
    ]
    assert findings["fix"].str.starts_with("ALTER POLICY").all()


def test_surface_rules() -> None:
    def obj(name: str, kind: str, **flags: Any) -> tuple[Any, ...]:
        return (
            "public",
            name,
            kind,
            ["authenticated"],
            "authenticated:SELECT",
            ["id"],
            flags.get("rls"),
            flags.get("invoker"),
            flags.get("definer"),
            flags.get("path"),
            flags.get("args"),
            flags.get("setof"),
            "postgres",
            '""' if flags.get("path") else None,
            [],
        )

    findings = lint_policies(
        catalog(
            [],
            [
                obj("v_owner", "view", invoker=False),
                obj("v_invoker", "view", invoker=True),
                obj("mv", "materialized view"),
                obj("f_open()", "function", definer=True, path=False),
                obj("f_pinned()", "function", definer=True, path=True),
                obj("f_invoker()", "function", definer=False, path=False),
            ],
        )
    )
    about_surface = findings.filter(pl.col("rule") != "rls_without_policies")
    assert sorted(about_surface.select("table", "rule", "severity").rows()) == [
        ("f_invoker()", "function_search_path_mutable", "warning"),
        ("f_open()", "definer_function_exposed", "error"),
        ("f_open()", "definer_function_search_path", "error"),
        ("f_pinned()", "definer_function_exposed", "error"),
        ("mv", "materialized_view_exposed", "error"),
        ("v_owner", "security_definer_view", "error"),
    ]
    assert findings.filter(pl.col("rule") == "security_definer_view")["fix"].to_list() == [
        "ALTER VIEW public.v_owner SET (security_invoker = true);"
    ]


def test_unknown_exposed_schemas_are_reported() -> None:
    base = catalog([])
    unknown = PolicyCatalog(base.tables, base.policies, base.indexes, schemas_known=False)
    assert (None, "exposed_schemas_unknown", "warning") in rules(lint_policies(unknown))
    assert (None, "exposed_schemas_unknown", "warning") not in rules(lint_policies(base))


# -- the surface ------------------------------------------------------------------------------


SURFACE = pl.DataFrame(
    [
        (
            "public",
            "contacts",
            "table",
            ["authenticated"],
            "authenticated:SELECT",
            CONTACTS,
            True,
            None,
            None,
            None,
            None,
            None,
            "postgres",
            None,
            [],
        ),
        (
            "public",
            "overview",
            "view",
            ["anon", "authenticated"],
            "anon:SELECT authenticated:SELECT",
            ["id", "organisation_id"],
            None,
            False,
            None,
            None,
            None,
            None,
            "postgres",
            None,
            [],
        ),
        (
            "public",
            "totals",
            "materialized view",
            ["authenticated"],
            "authenticated:SELECT",
            ["organisation_id", "n"],
            None,
            None,
            None,
            None,
            None,
            None,
            "postgres",
            None,
            [],
        ),
        (
            "public",
            "search(text)",
            "function",
            ["authenticated"],
            "authenticated:EXECUTE",
            ["id"],
            None,
            None,
            True,
            True,
            1,
            True,
            "postgres",
            '""',
            ["q text"],
        ),
        (
            "public",
            "everyone()",
            "function",
            ["anon", "authenticated"],
            "anon:EXECUTE authenticated:EXECUTE",
            ["id", "organisation_id"],
            None,
            None,
            True,
            False,
            0,
            True,
            "postgres",
            None,
            [],
        ),
        (
            "api",
            "extra",
            "view",
            ["authenticated"],
            "authenticated:SELECT",
            ["id"],
            None,
            True,
            None,
            None,
            None,
            None,
            "postgres",
            None,
            [],
        ),
    ],
    schema=SURFACE_SCHEMA,
    orient="row",
)


def test_what_the_surface_probes_and_why_not() -> None:
    targets, skipped = surface_targets(SURFACE, ("public", "api"))
    assert [(t.label, t.path, t.columns) for t in targets] == [
        ("public.overview", "overview", "id, organisation_id"),
        ("public.everyone()", "rpc/everyone", "id, organisation_id"),
    ]
    assert skipped == {
        "public.totals": "its rows have no id column",
        "public.search(text)": (
            "takes required arguments (called with foreign ids when they are ids)"
        ),
        "api.extra": "schema api is not the default profile",
    }


def test_the_expected_surface_diff() -> None:
    accepted = parse_surface_lines("""
        # accepted by the team
        table   public.contacts authenticated
        view public.overview authenticated   # before anon could read it
        table public.gone authenticated
    """)
    diff = surface_diff(SURFACE, accepted)
    assert diff.rows() == [
        (
            "added",
            "function public.everyone() anon,authenticated definer owner=postgres "
            "search_path=unset",
        ),
        (
            "added",
            'function public.search(text) authenticated definer owner=postgres search_path=""',
        ),
        ("added", "materialized_view public.totals authenticated"),
        ("added", "view api.extra authenticated"),
        ("added", "view public.overview anon,authenticated"),
        ("removed", "table public.gone authenticated"),
        ("removed", "view public.overview authenticated"),
    ]
    assert surface_diff(SURFACE, surface_lines(SURFACE)).is_empty()
