"""The RLS audit's pure half on fixed frames: expectations, the matrix, the checks, the lint,
rendering and export."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from contactsync_kit import PrivilegedKeyError
from contactsync_kit.remote import Filter, RemoteFailure
from contactsync_kit.results import SyncError, SyncErrorKind
from contactsync_kit.rls_audit import (
    ANON_USER,
    CHECKS_SCHEMA,
    LINT_SCHEMA,
    MATRIX_SCHEMA,
    OBSERVED_SCHEMA,
    UNIVERSE_SCHEMA,
    AuditReport,
    AuditUser,
    GroundTruth,
    PolicyCatalog,
    anon_reader,
    audit_checks,
    audit_matrix,
    evaluate,
    expected_visibility,
    export_report,
    heatmap_frame,
    heatmap_png,
    lint_policies,
    members_frame,
    plot_heatmap,
    summary_markdown,
)
from contactsync_kit.rls_audit.callers import Collected
from contactsync_kit.rls_audit.plan import caller_plan
from contactsync_kit.rls_audit.probes import probe_caller

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
O1, O2 = "org-1", "org-2"

# Two organisations. O1 has chapters ch-a and ch-b; contacts c1 (ch-a), c2 (ch-b), c3 (none);
# each contact has one note. O2 has one contact c9 with a note.
UNIVERSE = pl.DataFrame(
    [
        ("organisations", O1, O1, None, None, None, None),
        ("organisations", O2, O2, None, None, None, None),
        ("chapters", O1, "ch-a", "ch-a", None, None, None),
        ("chapters", O1, "ch-b", "ch-b", None, None, None),
        ("organisation_members", O1, "u-admin:org-1", None, None, "u-admin", None),
        ("organisation_members", O1, "u-vol:org-1", "ch-a", None, "u-vol", None),
        ("contacts", O1, "c1", "ch-a", "c1", None, True),
        ("contacts", O1, "c2", "ch-b", "c2", None, False),
        ("contacts", O1, "c3", None, "c3", None, True),
        ("notes", O1, "n1", "ch-a", "c1", None, None),
        ("notes", O1, "n2", "ch-b", "c2", None, None),
        ("notes", O1, "n3", None, "c3", None, None),
        ("contacts", O2, "c9", None, "c9", None, True),
        ("notes", O2, "n9", None, "c9", None, None),
    ],
    schema=UNIVERSE_SCHEMA,
    orient="row",
)

ADMIN = AuditUser("admin@example.org", "pw", ((O1, None, "admin"),), "admin", "u-admin")
VOLUNTEER = AuditUser("vol@example.org", "pw", ((O1, "ch-a", "volunteer"),), "vol", "u-vol")
MEMBERS = members_frame([ADMIN, VOLUNTEER])
TRUTH = GroundTruth(universe=UNIVERSE, members=MEMBERS, search_pattern="*a*")


def visible(user: str, org: str | None = None) -> set[tuple[str, str]]:
    frame = expected_visibility(UNIVERSE, MEMBERS).filter(pl.col("user") == user)
    if org is not None:
        frame = frame.filter(pl.col("organisation_id") == org)
    return set(frame.select("table", "id").rows())


def test_org_wide_members_see_the_whole_organisation_and_their_own_membership() -> None:
    assert visible("admin") == {
        ("organisations", O1),
        ("chapters", "ch-a"),
        ("chapters", "ch-b"),
        ("organisation_members", "u-admin:org-1"),
        ("contacts", "c1"),
        ("contacts", "c2"),
        ("contacts", "c3"),
        ("notes", "n1"),
        ("notes", "n2"),
        ("notes", "n3"),
    }


def test_chapter_bound_members_see_their_chapter_only_not_unassigned_contacts() -> None:
    assert visible("vol") == {
        ("organisations", O1),
        ("chapters", "ch-a"),
        ("organisation_members", "u-vol:org-1"),
        ("contacts", "c1"),
        ("notes", "n1"),
    }


def test_nobody_sees_an_organisation_they_are_not_a_member_of() -> None:
    assert visible("admin", O2) == set() and visible("vol", O2) == set()


def test_members_frame_resolves_user_ids_by_email() -> None:
    user = AuditUser("x@example.org", "pw", ((O1.upper(), None, "admin"),))
    frame = members_frame([user], {"x@example.org": "u-x"})
    assert frame.rows() == [("x@example.org", "u-x", O1, None, "admin")]


def test_audit_user_from_a_seeded_user_shape() -> None:
    @dataclass
    class Seeded:
        email: str
        password: str
        user_id: str
        memberships: list[tuple[str, str | None, str]]
        label: str

    user = AuditUser.of(Seeded("a@x.org", "pw", "u1", [(O1, None, "admin")], "org1-admin"))
    assert (user.name, user.user_id, user.memberships) == (
        "org1-admin",
        "u1",
        ((O1, None, "admin"),),
    )


# -- the matrix ---------------------------------------------------------------------------


def run(
    user: str,
    org: str,
    table: str,
    probe: str,
    count: int | None = None,
    error: tuple[str, str | None, bool] | None = None,
) -> tuple[Any, ...]:
    kind, code, denied = error if error else (None, None, False)
    return (user, org, table, probe, count, kind, code, denied)


def seen(
    user: str,
    org: str,
    table: str,
    probe: str,
    row_id: str,
    row_org: str | None = None,
    contact: str | None = None,
    parent: str | None = None,
    parent_org: str | None = None,
) -> tuple[Any, ...]:
    return (user, org, table, probe, row_id, row_org or org, contact, parent, parent_org)


def matrix_of(
    runs: list[tuple[Any, ...]],
    observed: list[tuple[Any, ...]],
    requested: list[tuple[Any, ...]] | None = None,
) -> AuditReport:
    return evaluate(runs, observed, requested or [], TRUTH, generated_at=NOW)


def cell(report: AuditReport, user: str, org: str, table: str, probe: str) -> dict[str, Any]:
    rows = report.matrix.filter(
        (pl.col("user") == user)
        & (pl.col("organisation_id") == org)
        & (pl.col("table") == table)
        & (pl.col("probe") == probe)
    )
    assert rows.height == 1
    return rows.row(0, named=True)


def test_a_correct_answer_passes() -> None:
    report = matrix_of(
        [
            run("vol", O1, "contacts", "select"),
            run("vol", O1, "contacts", "count", 1),
            run("vol", O2, "contacts", "select"),
        ],
        [seen("vol", O1, "contacts", "select", "c1")],
    )
    assert report.matrix.schema == MATRIX_SCHEMA
    assert report.passed, report.matrix
    row = cell(report, "vol", O1, "contacts", "select")
    assert (row["visible"], row["expected"], row["leaked"], row["missing"], row["verdict"]) == (
        1,
        1,
        0,
        0,
        "pass",
    )
    assert row["access"] == "volunteer (one chapter)"
    assert cell(report, "vol", O2, "contacts", "select")["access"] == "not a member"
    assert report.discrepancies.is_empty()


def test_a_leak_is_named_down_to_the_row() -> None:
    report = matrix_of(
        [run("vol", O1, "notes", "select"), run("vol", O2, "notes", "select")],
        [
            seen("vol", O1, "notes", "select", "n1"),
            seen("vol", O1, "notes", "select", "n2"),
            seen("vol", O2, "notes", "select", "n9"),
        ],
    )
    assert not report.passed
    assert report.leaked_cells() == {("vol", O1, "notes", "select"), ("vol", O2, "notes", "select")}
    row = cell(report, "vol", O1, "notes", "select")
    assert (row["visible"], row["expected"], row["leaked"], row["missing"], row["verdict"]) == (
        2,
        1,
        1,
        0,
        "fail",
    )
    assert report.discrepancies.select("organisation_id", "id", "kind").rows() == [
        (O1, "n2", "leaked"),
        (O2, "n9", "leaked"),
    ]


def test_missing_rows_fail_too() -> None:
    report = matrix_of(
        [run("admin", O1, "contacts", "select")], [seen("admin", O1, "contacts", "select", "c1")]
    )
    row = cell(report, "admin", O1, "contacts", "select")
    assert (row["visible"], row["expected"], row["missing"], row["verdict"]) == (1, 3, 2, "fail")
    assert sorted(report.discrepancies["id"]) == ["c2", "c3"]


def test_count_probes_compare_numbers() -> None:
    report = matrix_of(
        [
            run("vol", O1, "notes", "count", 3),
            run("admin", O1, "notes", "count", 1),
            run("admin", O2, "notes", "count", 0),
        ],
        [],
    )
    assert (
        cell(report, "vol", O1, "notes", "count")["leaked"],
        cell(report, "admin", O1, "notes", "count")["missing"],
        cell(report, "admin", O2, "notes", "count")["verdict"],
    ) == (2, 2, "pass")


def test_search_expects_only_matching_names_and_foreign_ids_only_what_was_asked() -> None:
    report = matrix_of(
        [
            run("admin", O1, "contacts", "search"),
            run("vol", O1, "contacts", "foreign_ids"),
            run("admin", O2, "contacts", "foreign_ids"),
        ],
        [
            seen("admin", O1, "contacts", "search", "c1"),
            seen("admin", O1, "contacts", "search", "c3"),
        ],
        [
            ("vol", O1, "contacts", "foreign_ids", "c2"),
            ("vol", O1, "contacts", "foreign_ids", "c3"),
            ("admin", O2, "contacts", "foreign_ids", "c9"),
        ],
    )
    assert cell(report, "admin", O1, "contacts", "search")["expected"] == 2  # c2 does not match
    assert report.passed
    assert cell(report, "vol", O1, "contacts", "foreign_ids")["expected"] == 0


def test_denied_requests_see_nothing_errors_are_errors() -> None:
    denied = ("auth", "42501", True)
    report = matrix_of(
        [
            run(ANON_USER, O1, "contacts", "select", error=denied),
            run("vol", O1, "contacts", "select", error=denied),
            run("admin", O1, "notes", "select", error=("network", None, False)),
        ],
        [],
    )
    anon = cell(report, ANON_USER, O1, "contacts", "select")
    assert (anon["visible"], anon["verdict"], anon["error"]) == (0, "pass", "denied [42501]")
    vol = cell(report, "vol", O1, "contacts", "select")
    assert (vol["visible"], vol["missing"], vol["verdict"]) == (0, 1, "fail")
    broken = cell(report, "admin", O1, "notes", "select")
    assert (broken["visible"], broken["verdict"], broken["error"]) == (None, "error", "network")


def test_matrix_from_frames_directly() -> None:
    runs = pl.DataFrame(
        [run("vol", O1, "contacts", "select")],
        orient="row",
        schema=[
            "user",
            "organisation_id",
            "table",
            "probe",
            "count",
            "error_kind",
            "error_code",
            "denied",
        ],
    )
    observed = pl.DataFrame(
        {
            "user": ["vol"],
            "organisation_id": [O1],
            "table": ["contacts"],
            "probe": ["select"],
            "id": ["c1"],
        }
    )
    matrix, discrepancies = audit_matrix(
        runs, observed, expected_visibility(UNIVERSE, MEMBERS), UNIVERSE
    )
    assert matrix["verdict"].to_list() == ["pass"] and discrepancies.is_empty()


# -- checks beyond counts -----------------------------------------------------------------


def test_checks_pass_on_clean_observations() -> None:
    observed = [seen("admin", O1, "notes", "embedded", "n1", O1, "c1", "c1", O1)]
    report = matrix_of(
        [
            run("admin", O1, "notes", "embedded"),
            run(ANON_USER, O1, "notes", "select", error=("auth", "42501", True)),
        ],
        observed,
    )
    assert report.checks.schema == CHECKS_SCHEMA
    assert set(report.checks["check"]) == {
        "org_filter_respected",
        "disjoint_across_organisations",
        "embedded_match_parent",
        "anon_sees_nothing",
    }
    assert report.checks["passed"].all()


def test_checks_catch_foreign_rows_overlaps_bad_embeds_and_anon_rows() -> None:
    observed = pl.DataFrame(
        [
            seen("admin", O1, "contacts", "select", "c9", O2),  # answered for O1, belongs to O2
            seen("admin", O2, "contacts", "select", "c9", O2),  # ... and under O2 as well
            seen("admin", O1, "notes", "embedded", "n9", O2, "c9", "c1", O1),  # wrong parent
            seen(ANON_USER, O1, "contacts", "select", "c1"),
        ],
        schema=OBSERVED_SCHEMA,
        orient="row",
    )
    matrix, _ = audit_matrix(
        pl.DataFrame(
            [run(ANON_USER, O1, "contacts", "select")],
            orient="row",
            schema=[
                "user",
                "organisation_id",
                "table",
                "probe",
                "count",
                "error_kind",
                "error_code",
                "denied",
            ],
        ),
        observed,
        expected_visibility(UNIVERSE, MEMBERS),
        UNIVERSE,
    )
    checks = audit_checks(observed, matrix).filter(~pl.col("passed"))
    found = {(r["check"], r["user"], r["table"]) for r in checks.iter_rows(named=True)}
    assert found == {
        ("org_filter_respected", "admin", "contacts"),
        ("org_filter_respected", "admin", "notes"),
        ("disjoint_across_organisations", "admin", "contacts"),
        ("embedded_match_parent", "admin", "notes"),
        ("anon_sees_nothing", ANON_USER, "contacts"),
    }


# -- policy lint --------------------------------------------------------------------------


def catalog(
    tables: list[tuple[str, bool, list[str]]],
    policies: list[tuple[str, str, str, list[str], str | None, str | None]],
    indexes: list[tuple[str, str, list[str]]],
) -> PolicyCatalog:
    strings = pl.List(pl.String)
    return PolicyCatalog(
        tables=pl.DataFrame(
            [("public", t, rls, cols) for t, rls, cols in tables],
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
                ("public", t, name, kind, roles, "SELECT", using, check)
                for t, name, kind, roles, using, check in policies
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
            [("public", t, name, cols) for t, name, cols in indexes],
            orient="row",
            schema={
                "schema": pl.String,
                "table": pl.String,
                "index": pl.String,
                "columns": strings,
            },
        ),
    )


CLEAN = catalog(
    [
        ("contacts", True, ["id", "organisation_id", "chapter_id", "full_name"]),
        ("organisation_members", True, ["user_id", "organisation_id"]),
    ],
    [
        (
            "contacts",
            "contacts_select",
            "PERMISSIVE",
            ["authenticated"],
            "((organisation_id IN ( SELECT private.org_wide_organisation_ids() AS x)) OR "
            "(chapter_id IN ( SELECT private.bound_chapter_ids() AS y)))",
            None,
        ),
        (
            "organisation_members",
            "own",
            "PERMISSIVE",
            ["authenticated"],
            "(user_id = ( SELECT auth.uid() AS uid))",
            None,
        ),
    ],
    [
        ("contacts", "contacts_pkey", ["id"]),
        ("contacts", "by_org", ["organisation_id", "id"]),
        ("contacts", "by_chapter", ["chapter_id"]),
        ("organisation_members", "by_user", ["user_id"]),
    ],
)


def test_a_clean_catalog_has_no_findings() -> None:
    findings = lint_policies(CLEAN)
    assert findings.schema == LINT_SCHEMA
    assert findings.is_empty(), findings


def test_each_lint_rule() -> None:
    findings = lint_policies(
        catalog(
            [
                ("open", False, ["id"]),
                ("locked", True, ["id"]),
                ("notes", True, ["id", "organisation_id", "contact_id", "author_id"]),
            ],
            [
                ("notes", "leak", "PERMISSIVE", ["authenticated"], "true", None),
                ("notes", "everyone", "PERMISSIVE", ["public"], "(author_id = auth.uid())", None),
                ("notes", "narrowing", "RESTRICTIVE", ["authenticated"], "true", None),
                ("notes", "writes", "PERMISSIVE", ["authenticated"], None, "(true)"),
            ],
            [("notes", "notes_pkey", ["id"]), ("notes", "composite", ["organisation_id", "id"])],
        )
    )
    found = {
        (r["table"], r["policy"], r["rule"], r["severity"]) for r in findings.iter_rows(named=True)
    }
    assert found == {
        ("open", None, "rls_disabled", "error"),
        ("locked", None, "rls_without_policies", "info"),
        ("notes", "leak", "using_true", "error"),
        ("notes", "writes", "using_true", "error"),
        ("notes", "everyone", "no_role", "warning"),
        ("notes", "everyone", "bare_auth_call", "warning"),
        ("notes", "everyone", "missing_index", "warning"),  # author_id leads no index
    }


def test_qualified_and_quoted_references() -> None:
    findings = lint_policies(
        catalog(
            [("t", True, ["id", "owner"])],
            [
                (
                    "t",
                    "p",
                    "PERMISSIVE",
                    ["authenticated"],
                    "(EXISTS ( SELECT 1 FROM other o WHERE o.owner = ( SELECT auth.uid() AS uid)))",
                    None,
                ),
                (
                    "t",
                    "q",
                    "PERMISSIVE",
                    ["authenticated"],
                    '("owner" = ( SELECT auth.uid() AS uid))',
                    None,
                ),
            ],
            [("t", "t_pkey", ["id"])],
        )
    )
    # p's owner is another table's: not an index miss, but nothing ties the row to the caller.
    assert findings.select("policy", "rule").rows() == [
        ("p", "policy_not_scoped"),
        ("q", "missing_index"),
    ]


# -- rendering and export -----------------------------------------------------------------


def leaky_report() -> AuditReport:
    report = matrix_of(
        [
            run("vol", O1, "notes", "select"),
            run("vol", O1, "contacts", "select"),
            run("admin", O1, "notes", "count", 3),
        ],
        [
            seen("vol", O1, "notes", "select", "n1"),
            seen("vol", O1, "notes", "select", "n2"),
            seen("vol", O1, "contacts", "select", "c1"),
        ],
    )
    lint = lint_policies(
        catalog(
            [("notes", True, ["id"])],
            [("notes", "leak", "PERMISSIVE", ["authenticated"], "true", None)],
            [("notes", "pk", ["id"])],
        )
    )
    return AuditReport(
        report.generated_at,
        report.matrix,
        report.discrepancies,
        report.checks,
        lint,
        {O1: "Elvebredd Outreach"},
    )


def test_heatmap_frame_codes_each_cell() -> None:
    wide = heatmap_frame(leaky_report().matrix, {O1: "Elvebredd"})
    assert wide.columns == ["row", "contacts/select", "notes/select", "notes/count"]
    assert wide.rows() == [("admin · Elvebredd", None, None, 0), ("vol · Elvebredd", 0, 2, None)]


def test_heatmap_renders() -> None:
    report = leaky_report()
    fig = plot_heatmap(report.matrix, report.organisation_names)
    assert "1 failing" in fig.axes[0].get_title()
    assert heatmap_png(report.matrix).startswith(b"\x89PNG")
    assert plot_heatmap(report.matrix.head(0)).axes


def test_summary_and_export(tmp_path: Path) -> None:
    report = leaky_report()
    text = summary_markdown(report)
    assert text.startswith("# RLS scoping audit — FAIL")
    assert "| vol | Elvebredd Outreach | notes | select | 2 | 1 | 1 | 0 |  |" in text
    assert "error: using_true on public.notes (leak)" in text
    assert "FAIL" in report.summary() and "notes" in report.summary()
    paths = export_report(report, tmp_path / "out")
    assert set(paths) == {
        "matrix_csv",
        "matrix_parquet",
        "discrepancies_csv",
        "checks_csv",
        "lint_csv",
        "summary_md",
    }
    assert pl.read_parquet(paths["matrix_parquet"]).equals(report.matrix)
    assert pl.read_csv(paths["discrepancies_csv"])["id"].to_list() == ["n2"]
    assert paths["summary_md"].read_text() == text


def test_a_lint_error_alone_fails_the_audit() -> None:
    clean = matrix_of(
        [run("vol", O1, "contacts", "select")], [seen("vol", O1, "contacts", "select", "c1")]
    )
    assert clean.passed
    with_lint = AuditReport(
        NOW, clean.matrix, clean.discrepancies, clean.checks, leaky_report().lint
    )
    assert not with_lint.passed


async def test_the_anon_reader_refuses_a_service_role_key() -> None:
    from contactsync_kit.testing import FakeSupabase

    fake = FakeSupabase()
    with pytest.raises(PrivilegedKeyError):
        await anon_reader(fake.url, fake.service_role_key)


def test_ground_truth_takes_an_expected_frame_or_other_rules() -> None:
    frame = pl.DataFrame(
        {"user": ["vol"], "table": ["contacts"], "organisation_id": [O1], "id": ["c3"]}
    )
    assert GroundTruth(UNIVERSE, MEMBERS, expected=frame).expected_rows().rows() == [
        ("vol", "contacts", O1, "c3")
    ]

    def nobody_sees_anything(universe: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
        return expected_visibility(universe, members).head(0)

    assert GroundTruth(UNIVERSE, MEMBERS, rules=nobody_sees_anything).expected_rows().is_empty()


# -- the probes, against a fake server ----------------------------------------------------

# UNIVERSE plus a member of O2 nobody audited shares an organisation with.
SERVED = pl.concat(
    [
        UNIVERSE,
        pl.DataFrame(
            [("organisation_members", O2, "u-other:org-2", None, None, "u-other", None)],
            schema=UNIVERSE_SCHEMA,
            orient="row",
        ),
    ]
)
SERVED_TRUTH = GroundTruth(universe=SERVED, members=MEMBERS, search_pattern="*a*")


def served_tables() -> dict[str, list[dict[str, Any]]]:
    """SERVED as the rows PostgREST would hold (organisation_members has no id column)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    contact_org = {r["id"]: r["organisation_id"] for r in SERVED.iter_rows(named=True)}
    for r in SERVED.iter_rows(named=True):
        table, org = r["table"], r["organisation_id"]
        if table == "organisations":
            row: dict[str, Any] = {"id": org}
        elif table == "organisation_members":
            row = {"user_id": r["user_id"], "organisation_id": org, "chapter_id": r["chapter_id"]}
        elif table == "contacts":
            row = {
                "id": r["id"],
                "organisation_id": org,
                "chapter_id": r["chapter_id"],
                "full_name": "Ada" if r["name_match"] else "Bob",
            }
        elif table == "chapters":
            row = {"id": r["id"], "organisation_id": org}
        else:
            row = {
                "id": r["id"],
                "organisation_id": contact_org[r["root_id"]],
                "contact_id": r["root_id"],
            }
        tables.setdefault(table, []).append(row)
    tables.setdefault("contact_assignments", [])
    return tables


class FakeServer:
    """Answers `RemoteReader.rows` / `.count` as one user under RLS, like PostgREST would.

    Visible rows are the intended ones (`expected_visibility`), except that tables in `open`
    are readable in full by any signed-in user (a ``USING (true)`` policy). The anon key is
    denied. `rows` pages one row at a time on `key`, so a key missing from the table fails
    like PostgREST (42703) and a key not unique under the filter loses rows.
    """

    def __init__(self, user: str | None, open_tables: frozenset[str] = frozenset()) -> None:
        # `user` is the matrix label (None: the anon key).
        self.user, self.open = user, open_tables
        self.tables = served_tables()
        seen = expected_visibility(SERVED, MEMBERS).filter(pl.col("user") == (user or ""))
        self.visible_ids = set(seen.select("table", "id").rows())
        self.calls: list[tuple[str, str, str]] = []  # (method, table, key)

    def _universe_id(self, table: str, row: dict[str, Any]) -> str:
        if table == "organisation_members":
            return f"{row['user_id']}:{row['organisation_id']}"
        return str(row["id"])

    def _visible(
        self,
        table: str,
        filters: list[Filter] | tuple[Filter, ...],
    ) -> list[dict[str, Any]]:
        if self.user is None:
            raise RemoteFailure(
                SyncError(SyncErrorKind.AUTH, "permission denied", code="42501", status=401)
            )
        rows = [
            r
            for r in self.tables[table]
            if table in self.open or (table, self._universe_id(table, r)) in self.visible_ids
        ]
        for column, operator, value in filters:
            if operator == "eq":
                rows = [r for r in rows if r.get(column) == value]
            elif operator == "in":
                rows = [r for r in rows if r.get(column) in value.strip("()").split(",")]
            elif operator == "ilike":
                rows = [r for r in rows if value.strip("*").lower() in r[column].lower()]
            else:
                raise AssertionError(f"unexpected filter {operator}")
        return rows

    async def count(self, table: str, filters: list[Filter] | tuple[Filter, ...] = ()) -> int:
        self.calls.append(("count", table, ""))
        return len(self._visible(table, filters))

    async def rows(
        self,
        table: str,
        columns: str = "id",
        filters: list[Filter] | tuple[Filter, ...] = (),
        *,
        key: str = "id",
    ) -> list[dict[str, Any]]:
        self.calls.append(("rows", table, key))
        rows = self._visible(table, filters)
        if any(key not in r for r in self.tables[table]):
            raise RemoteFailure(
                SyncError(
                    SyncErrorKind.REMOTE,
                    f"column {table}.{key} does not exist",
                    code="42703",
                    status=400,
                )
            )
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while page := sorted(
            (r for r in rows if cursor is None or r[key] > cursor), key=lambda r: r[key]
        )[:1]:
            out += page
            cursor = page[-1][key]
        if "(" in columns:  # the sync's embedded select: children through RLS too
            out = [
                {
                    **r,
                    **{
                        child: [c for c in self._visible(child, []) if c["contact_id"] == r["id"]]
                        for child in ("notes", "contact_assignments")
                    },
                }
                for r in out
            ]
        return out


async def probed(
    open_tables: frozenset[str] = frozenset(),
) -> tuple[AuditReport, dict[str, FakeServer]]:
    """Run every real probe for admin, vol and the anon key against `FakeServer`s."""
    out, limit = Collected(), asyncio.Semaphore(4)
    expected = SERVED_TRUTH.expected_rows()
    servers = {
        name: FakeServer(None if name == ANON_USER else name, open_tables)
        for name in ("admin", "vol", ANON_USER)
    }
    for name, server in servers.items():
        plan = caller_plan(
            name, [O1, O2], SERVED, expected, SERVED_TRUTH.members, search_pattern="*a*", sample=25
        )
        await probe_caller(plan, server, limit=limit, out=out)  # type: ignore[arg-type]
    return evaluate(out.runs, out.observed, out.requested, SERVED_TRUTH, generated_at=NOW), servers


async def test_members_are_probed_by_select_and_count_keyed_on_user_id() -> None:
    report, servers = await probed()
    assert report.passed, report.markdown()
    members = report.matrix.filter(
        pl.col("table") == "organisation_members", pl.col("probe").is_in(["select", "count"])
    )
    assert set(members.select("user", "organisation_id", "probe").rows()) == {
        (user, org, probe)
        for user in ("admin", "vol", ANON_USER)
        for org in (O1, O2)
        for probe in ("select", "count")
    }
    assert sorted(
        members.filter(pl.col("user") != ANON_USER)
        .select("user", "organisation_id", "probe", "visible", "expected")
        .rows()
    ) == [
        ("admin", O1, "count", 1, 1),
        ("admin", O1, "select", 1, 1),
        ("admin", O2, "count", 0, 0),
        ("admin", O2, "select", 0, 0),
        ("vol", O1, "count", 1, 1),
        ("vol", O1, "select", 1, 1),
        ("vol", O2, "count", 0, 0),
        ("vol", O2, "select", 0, 0),
    ]
    assert ("rows", "organisation_members", "user_id") in servers["admin"].calls
    assert ("count", "organisation_members", "") in servers["admin"].calls


async def test_a_using_true_policy_on_members_is_caught_on_select_and_count() -> None:
    report, _ = await probed(frozenset({"organisation_members"}))
    assert not report.passed
    # Each sees the other's membership in O1 and u-other's in O2; anon stays denied. The
    # probes across all organisations name the same organisations; their count stays at *.
    assert report.leaked_cells() == {
        (user, org, "organisation_members", probe)
        for user in ("admin", "vol")
        for org in (O1, O2)
        for probe in ("select", "count", "all_rows")
    } | {(user, "*", "organisation_members", "all_count") for user in ("admin", "vol")}
    leaked = (
        report.discrepancies.filter(pl.col("probe") == "select")
        .select("user", "organisation_id", "id", "kind")
        .rows()
    )
    assert sorted(leaked) == [
        ("admin", O1, "u-vol:org-1", "leaked"),
        ("admin", O2, "u-other:org-2", "leaked"),
        ("vol", O1, "u-admin:org-1", "leaked"),
        ("vol", O2, "u-other:org-2", "leaked"),
    ]
    assert report.checks["passed"].all()  # ids stay unique per organisation: no false overlap
