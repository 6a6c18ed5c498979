"""Naming the policy behind a leak (`sources.leak_sources`), and the matrix as a named table
(`render.matrix_view`, `render.organisation_labels`), on fixed frames."""

from __future__ import annotations

import polars as pl

from contactsync_kit.rls_audit import (
    ALL_ORGANISATIONS,
    ANON_USER,
    LEAK_SOURCES_SCHEMA,
    AuditReport,
    PolicyCatalog,
    evaluate,
    explain_leaks,
    leak_sources,
    lint_policies,
    matrix_view,
    organisation_labels,
    summary_markdown,
)
from contactsync_kit.rls_audit.sources import LEAK_KINDS, leak_kind
from contactsync_kit.widgets.tables import present
from tests.unit.test_rls_audit import NOW, O1, O2, TRUTH, catalog, run, seen

COLUMNS = ["id", "organisation_id", "chapter_id", "full_name"]
ORG_ONLY = "(organisation_id IN ( SELECT private.member_organisation_ids() AS ids))"
OPENED = f"(organisation_id = '{O2}')"
SCOPED = (
    "((organisation_id IN ( SELECT private.org_wide_organisation_ids() AS x)) OR "
    "(chapter_id IN ( SELECT private.bound_chapter_ids() AS y)))"
)


def audited(
    runs: list[tuple[object, ...]],
    observed: list[tuple[object, ...]],
    cat: PolicyCatalog | None,
) -> AuditReport:
    lint = lint_policies(cat) if cat is not None else None
    return evaluate(
        runs,
        observed,
        [],
        TRUTH,
        generated_at=NOW,
        lint=lint,
        policies=cat.policies if cat is not None else None,
        tables=cat.tables if cat is not None else None,
        organisation_names={O1: "Elvebredd", O2: "Bjørkelia"},
    )


def chapter_leak(cat: PolicyCatalog | None) -> AuditReport:
    """The volunteer (bound to ch-a of O1) sees c2, of ch-b: the chapter rule is missing."""
    return audited(
        [run("vol", O1, "contacts", "select"), run("vol", O1, "contacts", "count", 2)],
        [seen("vol", O1, "contacts", "select", "c1"), seen("vol", O1, "contacts", "select", "c2")],
        cat,
    )


def test_a_policy_too_wide_for_the_lint_is_named_with_its_fix() -> None:
    cat = catalog(
        [("contacts", True, COLUMNS)],
        [("contacts", "contacts_select", "PERMISSIVE", ["authenticated"], ORG_ONLY, None)],
        [("contacts", "by_org", ["organisation_id"]), ("contacts", "by_ch", ["chapter_id"])],
    )
    report = chapter_leak(cat)
    assert report.errors().is_empty()  # the lint alone cannot see it
    assert not report.passed
    sources = report.leak_sources
    assert sources.schema == LEAK_SOURCES_SCHEMA
    assert sources.select("table", "leak", "callers", "rows", "policy", "using", "lint").rows() == [
        ("contacts", LEAK_KINDS["chapter"], "vol", 1, "contacts_select", ORG_ONLY, None)
    ]
    assert sources["fix"][0] == (
        "ALTER POLICY contacts_select ON public.contacts USING (organisation_id IN (SELECT "
        "private.org_wide_organisation_ids()) OR chapter_id IN (SELECT "
        "private.bound_chapter_ids()));"
    )
    text = summary_markdown(report)
    assert "## Where the leaked rows come through" in text
    assert f"- policy contacts_select on contacts (USING {ORG_ONLY}): " in text
    assert "Fix: `ALTER POLICY contacts_select ON public.contacts USING (" in text
    assert explain_leaks(report.leak_sources) in text
    assert explain_leaks(report.leak_sources.head(0)) == ""


def test_the_policy_the_lint_flags_is_named_not_the_sound_one_beside_it() -> None:
    cat = catalog(
        [("contacts", True, COLUMNS)],
        [
            ("contacts", "contacts_select", "PERMISSIVE", ["authenticated"], SCOPED, None),
            (
                "contacts",
                "opened",
                "PERMISSIVE",
                ["authenticated"],
                f"(organisation_id = '{O2}')",
                None,
            ),
            ("contacts", "narrowing", "RESTRICTIVE", ["authenticated"], "true", None),
        ],
        [("contacts", "by_org", ["organisation_id"]), ("contacts", "by_ch", ["chapter_id"])],
    )
    report = audited(
        [run("vol", O2, "contacts", "all_rows")],
        [seen("vol", O2, "contacts", "all_rows", "c9")],
        cat,
    )
    [row] = report.leak_sources.rows(named=True)
    assert (row["leak"], row["policy"], row["lint"]) == (
        LEAK_KINDS["organisation"],
        "opened",
        "policy_not_scoped",
    )
    assert row["fix"].startswith("ALTER POLICY opened ON public.contacts USING (")


def test_every_admitting_policy_is_a_suspect_when_the_lint_flags_none() -> None:
    cat = catalog(
        [("contacts", True, COLUMNS)],
        [
            ("contacts", "a_scope", "PERMISSIVE", ["authenticated"], ORG_ONLY, None),
            ("contacts", "b_scope", "PERMISSIVE", ["authenticated"], SCOPED, None),
            ("contacts", "for_anon", "PERMISSIVE", ["anon"], ORG_ONLY, None),
        ],
        [("contacts", "by_org", ["organisation_id"]), ("contacts", "by_ch", ["chapter_id"])],
    )
    assert chapter_leak(cat).leak_sources["policy"].to_list() == ["a_scope", "b_scope"]


def test_an_anon_leak_names_the_policy_open_to_anon() -> None:
    cat = catalog(
        [("contacts", True, COLUMNS)],
        [
            ("contacts", "contacts_select", "PERMISSIVE", ["authenticated"], SCOPED, None),
            ("contacts", "to_anon", "PERMISSIVE", ["anon"], ORG_ONLY, None),
        ],
        [("contacts", "by_org", ["organisation_id"]), ("contacts", "by_ch", ["chapter_id"])],
    )
    report = audited(
        [run(ANON_USER, O1, "contacts", "all_rows")],
        [seen(ANON_USER, O1, "contacts", "all_rows", "c1")],
        cat,
    )
    [row] = report.leak_sources.rows(named=True)
    assert (row["leak"], row["callers"], row["policy"]) == (
        LEAK_KINDS["anon"],
        ANON_USER,
        "to_anon",
    )
    assert "anon_personal_data" in (row["lint"] or "")


def test_an_exposed_object_is_its_own_source_with_the_lints_fix() -> None:
    lint = pl.DataFrame(
        [("public", "v", None, "security_definer_view", "error", "runs as owner", "ALTER VIEW")],
        schema=lint_policies(catalog([], [], [])).schema,
        orient="row",
    )
    matrix = pl.DataFrame(
        [("vol", O2, "public.v", "surface", 1)],
        schema=["user", "organisation_id", "table", "probe", "leaked"],
        orient="row",
    )
    ids = pl.DataFrame(
        [("vol", O2, "public.v", "surface", "c9", "leaked")],
        schema=["user", "organisation_id", "table", "probe", "id", "kind"],
        orient="row",
    )
    sources = leak_sources(matrix, ids, TRUTH.members, lint=lint)
    assert sources.select("table", "policy", "lint", "fix").rows() == [
        ("public.v", None, "security_definer_view", "ALTER VIEW")
    ]


def test_without_a_catalog_the_leak_is_still_described() -> None:
    [row] = chapter_leak(None).leak_sources.rows(named=True)
    assert (row["table"], row["leak"], row["policy"]) == ("contacts", LEAK_KINDS["chapter"], None)
    assert "database URL" in row["fix"]


def test_leak_kinds() -> None:
    assert leak_kind("claims", "vol", False) == "claims"
    assert leak_kind("select", ANON_USER, False) == "anon"
    assert leak_kind("select", "vol", True) == "chapter"
    assert leak_kind("all_rows", "vol", False) == "organisation"


def test_a_clean_report_has_no_sources_and_counts_across_all_are_left_out() -> None:
    clean = chapter_leak(None).matrix.with_columns(pl.lit(0).alias("leaked"))
    assert leak_sources(clean, pl.DataFrame(), TRUTH.members).is_empty()
    star = pl.DataFrame(
        [("vol", ALL_ORGANISATIONS, "contacts", "all_count", 3)],
        schema=["user", "organisation_id", "table", "probe", "leaked"],
        orient="row",
    )
    assert leak_sources(star, pl.DataFrame(), TRUTH.members).is_empty()


def test_the_matrix_view_puts_failing_cells_first_with_names() -> None:
    report = audited(
        [
            run("admin", O1, "contacts", "select"),
            run("vol", O1, "contacts", "select"),
            run("vol", ALL_ORGANISATIONS, "contacts", "all_count", 1),
        ],
        [
            *(seen("admin", O1, "contacts", "select", c) for c in ("c1", "c2", "c3")),
            seen("vol", O1, "contacts", "select", "c1"),
            seen("vol", O1, "contacts", "select", "c2"),
        ],
        None,
    )
    view = matrix_view(report.matrix)
    assert view.columns[:3] == ["verdict", "user", "organisation_id"]
    assert view.select("verdict", "user", "leaked").row(0) == ("fail", "vol", 1)
    assert view.height == report.matrix.height
    shown = present(view, names=organisation_labels(report.organisation_names))
    assert set(shown["organisation"]) == {"Elvebredd", "all organisations"}
    assert set(shown["organisation id"]) == {O1, ALL_ORGANISATIONS}  # ids whole


def test_an_unflagged_object_leaking_like_a_named_policy_points_at_that_policy() -> None:
    cat = catalog(
        [("contacts", True, COLUMNS)],
        [("contacts", "contacts_select", "PERMISSIVE", ["authenticated"], ORG_ONLY, None)],
        [("contacts", "by_org", ["organisation_id"]), ("contacts", "by_ch", ["chapter_id"])],
    )
    report = audited(
        [
            run("vol", O1, "contacts", "select"),
            run("vol", O1, "public.f(p uuid)", "surface"),
        ],
        [
            seen("vol", O1, "contacts", "select", "c1"),
            seen("vol", O1, "contacts", "select", "c2"),
            seen("vol", O1, "public.f(p uuid)", "surface", "c2"),
        ],
        cat,
    )
    fixes = dict(report.leak_sources.select("table", "fix").rows())
    assert fixes["public.f(p uuid)"] == (
        "nothing flags public.f(p uuid) itself: it reads as the caller and returns what "
        "contacts_select on contacts lets through; fix that policy"
    )
    assert fixes["contacts"].startswith("ALTER POLICY contacts_select ")
