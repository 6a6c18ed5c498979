"""The RLS audit against the real local stack: the seeded policies pass; a deliberately
loosened policy is caught down to the exact leaked cells; restoring it passes again.

Every policy change is undone in ``finally`` so tests sharing the stack are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest

from contactsync_kit.devstack import DevStack, SeedResult
from contactsync_kit.rls_audit import (
    ANON_USER,
    AuditReport,
    GroundTruth,
    audit_rls,
    expected_visibility,
    ground_truth_from_database,
    lint_database,
)

pytestmark = pytest.mark.integration

Cell = tuple[str, str, str, str]


@pytest.fixture(scope="module")
def world(stack: DevStack) -> SeedResult:
    """This module's own organisations (seed 5201); the audit probes only these."""
    return stack.seed(organisations=3, chapters_per_org=2, users_per_org=3,
                      contacts_per_org=[14, 10, 6], notes_per_contact=2,
                      assignments_per_contact=1, seed=5201)


@pytest.fixture(scope="module")
def truth(stack: DevStack, world: SeedResult) -> GroundTruth:
    return ground_truth_from_database(stack.database_url, world.users, world.organisation_ids)


async def audit(stack: DevStack, world: SeedResult, truth: GroundTruth) -> AuditReport:
    return await audit_rls(stack.url, stack.anon_key, world.users, world.organisation_ids,
                           truth, database_url=stack.database_url,
                           organisation_names=world.organisation_names)


@contextmanager
def loosened(stack: DevStack, apply_sql: str, undo_sql: str) -> Iterator[None]:
    stack.sql(apply_sql)
    try:
        yield
    finally:
        stack.sql(undo_sql)


@contextmanager
def policy_replaced(stack: DevStack, table: str, policy: str, using: str) -> Iterator[None]:
    [(original,)] = stack.sql("SELECT qual FROM pg_policies WHERE schemaname = 'public' "
                              "AND tablename = %s AND policyname = %s", table, policy)
    with loosened(stack, f"ALTER POLICY {policy} ON public.{table} USING ({using})",
                  f"ALTER POLICY {policy} ON public.{table} USING ({original})"):
        yield


def hidden(truth: GroundTruth, user: str, org: str, table: str,
           name_match: bool = False) -> bool:
    """Whether `org` has rows of `table` the user must not see (matching the search)."""
    rows = truth.universe.filter((pl.col("organisation_id") == org) & (pl.col("table") == table))
    if name_match:
        rows = rows.filter(pl.col("name_match"))
    seen = expected_visibility(truth.universe, truth.members).filter(pl.col("user") == user)
    return not rows.join(seen, on=["table", "organisation_id", "id"], how="anti").is_empty()


def cells_hiding(truth: GroundTruth, world: SeedResult, table: str,
                 probes: tuple[str, ...]) -> set[Cell]:
    """The cells a `USING (true)` policy on `table` must show as leaked."""
    return {(user.label, org, table, probe)
            for user in world.users for org in world.organisation_ids
            if hidden(truth, user.label, org, table) for probe in probes}


async def test_the_seeded_policies_pass(stack: DevStack, world: SeedResult,
                                        truth: GroundTruth, tmp_path: Path) -> None:
    report = await audit(stack, world, truth)
    print(report.summary())  # shown with -s; the closing note quotes it
    assert report.passed, report.markdown()
    users = {u.label for u in world.users} | {ANON_USER}
    assert set(report.matrix["user"]) == users
    assert set(report.matrix["organisation_id"]) == set(world.organisation_ids)
    assert report.lint is not None and report.lint.is_empty()
    assert report.checks["passed"].all()
    anon = report.matrix.filter(pl.col("user") == ANON_USER)
    assert anon["visible"].sum() == 0 and anon.height > 0
    # Not vacuous: users really saw rows, and exactly the expected number.
    contacts = report.matrix.filter((pl.col("table") == "contacts")
                                    & (pl.col("probe") == "select"))
    assert contacts["visible"].sum() == contacts["expected"].sum() > 0
    multi = report.matrix.filter((pl.col("user") == "multi-org") & (pl.col("probe") == "select")
                                 & (pl.col("table") == "organisations"))
    assert sorted(multi["visible"].to_list()) == [0, 1, 1]
    # organisation_members is probed directly like every table: each user sees their own
    # membership row, by select and by count, in each organisation they belong to.
    members = report.matrix.filter((pl.col("table") == "organisation_members")
                                   & (pl.col("user") != ANON_USER))
    assert set(members["probe"]) == {"select", "count"}
    belongs = {(u.label, m[0]) for u in world.users for m in u.memberships}
    assert {(r["user"], r["organisation_id"], r["probe"]) for r in members.iter_rows(named=True)
            if r["visible"] == 1} == {(u, o, p) for u, o in belongs for p in ("select", "count")}
    assert members.filter(pl.col("visible") > 1).is_empty()


async def test_a_using_true_policy_on_notes_is_caught_cell_by_cell(
        stack: DevStack, world: SeedResult, truth: GroundTruth) -> None:
    with loosened(stack,
                  "CREATE POLICY audit_leak ON public.notes FOR SELECT TO authenticated "
                  "USING (true)",
                  "DROP POLICY IF EXISTS audit_leak ON public.notes"):
        report = await audit(stack, world, truth)
    assert not report.passed
    expected = cells_hiding(truth, world, "notes", ("select", "count", "foreign_ids"))
    assert expected, "the seed must give every user notes they may not see"
    assert report.leaked_cells() == expected
    # The embedded select only reaches notes through visible contacts: not leaked.
    assert not any(cell[3] == "embedded" for cell in report.leaked_cells())
    assert report.failing_cells().filter(pl.col("missing") > 0).is_empty()
    assert report.lint is not None
    assert report.lint.filter(pl.col("rule") == "using_true").select(
        "table", "policy", "severity").rows() == [("notes", "audit_leak", "error")]
    leaked_ids = set(report.discrepancies.filter(pl.col("kind") == "leaked")["id"])
    notes = set(truth.universe.filter(pl.col("table") == "notes")["id"])
    assert leaked_ids <= notes

    restored = await audit(stack, world, truth)
    assert restored.passed, restored.markdown()


async def test_a_using_true_policy_on_members_is_caught_on_select_and_count(
        stack: DevStack, world: SeedResult, truth: GroundTruth) -> None:
    with loosened(stack,
                  "CREATE POLICY leak_members ON public.organisation_members FOR SELECT "
                  "TO authenticated USING (true)",
                  "DROP POLICY IF EXISTS leak_members ON public.organisation_members"):
        report = await audit(stack, world, truth)
    assert not report.passed
    expected = cells_hiding(truth, world, "organisation_members", ("select", "count"))
    # Every organisation has members besides any one user: every user x organisation leaks.
    assert len(expected) == 2 * len(world.users) * len(world.organisation_ids)
    assert report.leaked_cells() == expected
    assert report.failing_cells().filter(pl.col("missing") > 0).is_empty()
    # A membership is its user within its organisation: leaked ids are other users' rows of
    # exactly the probed organisation, never the user's own, and no false overlap across orgs.
    leaked = report.discrepancies.filter(pl.col("kind") == "leaked")
    members = set(truth.universe.filter(pl.col("table") == "organisation_members")["id"])
    assert set(leaked["id"]) <= members
    own = {(u.label, f"{u.user_id}:{m[0]}") for u in world.users for m in u.memberships}
    assert not own & set(leaked.select("user", "id").rows())
    assert (leaked["id"].str.split(":").list.get(1) == leaked["organisation_id"]).all()
    assert report.checks["passed"].all()
    assert report.lint is not None
    assert report.lint.filter(pl.col("rule") == "using_true").select(
        "table", "policy", "severity").rows() == [
        ("organisation_members", "leak_members", "error")]

    restored = await audit(stack, world, truth)
    assert restored.passed, restored.markdown()


async def test_a_dropped_chapter_rule_is_caught_for_chapter_bound_users(
        stack: DevStack, world: SeedResult, truth: GroundTruth) -> None:
    with policy_replaced(stack, "contacts", "contacts_select_scope",
                         "organisation_id IN (SELECT private.member_organisation_ids())"):
        report = await audit(stack, world, truth)
    expected: set[Cell] = set()
    for user in world.users:
        for org, chapter, _role in user.memberships:
            if chapter is None:
                continue
            expected |= {(user.label, org, "contacts", probe)
                         for probe in ("select", "count", "embedded", "foreign_ids")}
            if hidden(truth, user.label, org, "contacts", name_match=True):
                expected.add((user.label, org, "contacts", "search"))
    assert expected
    assert report.leaked_cells() == expected
    assert {cell[0] for cell in expected} == {u.label for u in world.users
                                              if any(m[1] for m in u.memberships)}
    assert not report.passed
    assert report.lint is not None and report.lint.is_empty()  # a logic leak lint cannot see

    restored = await audit(stack, world, truth)
    assert restored.passed, restored.markdown()


async def test_the_lint_reads_the_live_catalog(stack: DevStack) -> None:
    assert lint_database(stack.database_url).is_empty()
    with loosened(stack,
                  "CREATE TABLE public.audit_lint_probe (id int PRIMARY KEY, owner uuid); "
                  "CREATE POLICY audit_lint_bare ON public.notes FOR SELECT "
                  "USING (author_id = auth.uid())",
                  "DROP POLICY IF EXISTS audit_lint_bare ON public.notes; "
                  "DROP TABLE IF EXISTS public.audit_lint_probe"):
        findings = lint_database(stack.database_url)
    found = {(r["table"], r["policy"], r["rule"]) for r in findings.iter_rows(named=True)}
    assert found == {
        ("audit_lint_probe", None, "rls_disabled"),
        ("notes", "audit_lint_bare", "no_role"),
        ("notes", "audit_lint_bare", "bare_auth_call"),
        ("notes", "audit_lint_bare", "missing_index"),
    }
    assert lint_database(stack.database_url).is_empty()


async def test_the_audit_panel_on_the_stack(stack: DevStack, world: SeedResult,
                                            truth: GroundTruth, tmp_path: Path) -> None:
    from contactsync_kit.widgets.audit_panel import AuditModel, AuditPanel

    model = AuditModel.for_stack(stack, world)
    panel = AuditPanel(model)
    assert panel.export_button.disabled
    panel.run_button.click()
    await model.wait()
    assert model.passed is True, model.status
    assert model.headline.startswith("PASS")
    assert model.chart.startswith(b"\x89PNG")
    assert not panel.export_button.disabled
    paths = await model.export(tmp_path)
    assert paths["summary_md"].read_text().startswith("# RLS scoping audit — PASS")
    assert pl.read_parquet(paths["matrix_parquet"]).height == model.report.matrix.height  # type: ignore[union-attr]
