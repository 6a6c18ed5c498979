"""The RLS audit against the real local stack: the seeded policies pass; each planted exposure
is caught down to the exact leaked cells or lint finding; restoring it passes again.

Every exposure is planted and undone inside its test (``try``/``finally``), so tests sharing
the session's stack are unaffected. The audited set is this module's three organisations;
the session seed's organisations (seed 42) lie outside it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import polars as pl
import pytest

from contactsync_kit.devstack import DevStack, SeedResult
from contactsync_kit.rls_audit import (
    ANON_USER,
    AUDIT_TABLES,
    AuditReport,
    GroundTruth,
    audit_rls,
    exposed_schemas,
    ground_truth_from_database,
    lint_database,
    surface_lines,
)

pytestmark = pytest.mark.integration

Cell = tuple[str, str, str, str]
SURFACE_FILE = (
    Path(__file__).resolve().parents[2]
    / "contactsync_kit"
    / "devstack"
    / "sql"
    / "exposed_surface.txt"
)
ALL = "*"
CONTACT_PROBES = ("select", "count", "search", "embedded", "foreign_ids")
CONTACT_SWEEPS = ("all_rows", "all_search", "all_embedded")


@pytest.fixture(autouse=True)
def _empty_request_log(stack: DevStack) -> Iterator[None]:
    # An audit makes hundreds of requests; the shared stack's request log keeps only the last
    # 10,000, so tests that slice it by position after ours need it emptied.
    yield
    stack.request_log.clear()


@pytest.fixture(scope="module")
def world(stack: DevStack) -> SeedResult:
    """This module's own organisations (seed 5201): the audited set."""
    return stack.seed(
        organisations=3,
        chapters_per_org=2,
        users_per_org=3,
        contacts_per_org=[14, 10, 6],
        notes_per_contact=2,
        assignments_per_contact=1,
        seed=5201,
    )


@pytest.fixture(scope="module")
def outside(stack: DevStack) -> str:
    """An organisation outside the audited set: the session seed's first."""
    return stack.seeds[0].organisation_ids[0]


@pytest.fixture(scope="module")
def truth(stack: DevStack, world: SeedResult) -> GroundTruth:
    return ground_truth_from_database(stack.database_url, world.users, world.organisation_ids)


async def audit(stack: DevStack, world: SeedResult, truth: GroundTruth) -> AuditReport:
    return await audit_rls(
        stack.url,
        stack.anon_key,
        world.users,
        world.organisation_ids,
        truth,
        database_url=stack.database_url,
        expected_surface=SURFACE_FILE,
        organisation_names=world.organisation_names,
    )


@contextmanager
def planted(
    stack: DevStack, apply_sql: str, undo_sql: str, api_path: str | None = None
) -> Iterator[None]:
    """Plant an exposure; undo it on exit. `api_path`: wait until PostgREST serves it."""
    stack.sql(apply_sql)
    try:
        if api_path is not None:
            served(stack, api_path)
        yield
    finally:
        stack.sql(undo_sql)
        stack.reload_schema()


def served(stack: DevStack, api_path: str, timeout_s: float = 30) -> None:
    """Reload PostgREST's schema cache and wait until it knows `api_path`."""
    stack.reload_schema()
    key = stack.service_role_key
    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(
            f"{stack.url}/rest/v1/{api_path}",
            params={"limit": "0"},
            headers={"apikey": key, "Authorization": f"Bearer {key}"},
        ).status_code
        if status != 404:  # known to PostgREST (served, or refused to this key)
            return
        assert time.monotonic() < deadline, f"PostgREST does not serve {api_path}: {status}"
        time.sleep(0.05)


@contextmanager
def policy_replaced(stack: DevStack, table: str, policy: str, using: str) -> Iterator[None]:
    [(original,)] = stack.sql(
        "SELECT qual FROM pg_policies WHERE schemaname = 'public' "
        "AND tablename = %s AND policyname = %s",
        table,
        policy,
    )
    with planted(
        stack,
        f"ALTER POLICY {policy} ON public.{table} USING ({using})",
        f"ALTER POLICY {policy} ON public.{table} USING ({original})",
    ):
        yield


def hidden_rows(
    truth: GroundTruth, caller: str, table: str, opened: pl.Expr | None = None
) -> pl.DataFrame:
    """Rows of `table` (all organisations) matching `opened` that `caller` must not see."""
    seen = truth.expected_rows().filter(pl.col("user") == caller)
    rows = truth.universe.filter(pl.col("table") == table)
    return rows.filter(opened if opened is not None else pl.lit(True)).join(
        seen, on=["table", "organisation_id", "id"], how="anti"
    )


def leak_cells(
    truth: GroundTruth,
    world: SeedResult,
    callers: Iterable[str],
    table: str,
    audited_probes: tuple[str, ...],
    sweeps: tuple[str, ...],
    opened: pl.Expr | None = None,
) -> set[Cell]:
    """The cells an exposure opening the `opened` rows of `table` to `callers` must leak:
    `audited_probes` in audited organisations, `sweeps` in every organisation, searches only
    where a hidden name matches, and the count across all organisations."""
    cells: set[Cell] = set()
    for caller in callers:
        rows = hidden_rows(truth, caller, table, opened)
        matching = set(rows.filter(pl.col("name_match").fill_null(False))["organisation_id"])
        for org in set(rows["organisation_id"]):
            probes = [*sweeps, *(audited_probes if org in world.organisation_ids else ())]
            cells |= {
                (caller, org, table, p) for p in probes if "search" not in p or org in matching
            }
        if rows.height:
            cells.add((caller, ALL, table, "all_count"))
    return cells


def surface_cells(truth: GroundTruth, callers: Iterable[str], label: str) -> set[Cell]:
    """The cells of an exposed object returning every contact."""
    return {
        (caller, org, label, "surface")
        for caller in callers
        for org in set(hidden_rows(truth, caller, "contacts")["organisation_id"])
    }


def digest_function(stack: DevStack) -> tuple[str, str]:
    """(the digest's label on the exposed surface, its signature for ``ALTER FUNCTION``),
    read from the catalog: the signature is the server migrations' to change.
    """
    found = stack.sql(
        "SELECT 'public.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) "
        "|| ')', p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace AND p.proname = 'contactsync_digest'"
    )
    assert len(found) == 1, f"one public.contactsync_digest expected, found {found}"
    label, signature = found[0]
    return str(label), str(signature).removeprefix("public.")


@pytest.fixture(scope="module")
def digest(stack: DevStack) -> str:
    """The digest function's label on the exposed surface (and in the matrix)."""
    return digest_function(stack)[0]


def without_digest(report: AuditReport, digest: str) -> tuple[set[Cell], set[str]]:
    """(the leaked cells but the digest's, the callers the digest leaked to).

    The digest (SECURITY INVOKER) counts what RLS lets the caller see: once a policy opens
    another organisation's contacts, notes or assignments, calling it with that
    organisation's id (`foreign_args`) reveals them too.
    """
    cells = report.leaked_cells()
    digest_cells = {c for c in cells if c[2] == digest}
    assert {c[3] for c in digest_cells} <= {"foreign_args"}
    return cells - digest_cells, {c[0] for c in digest_cells}


def users(world: SeedResult) -> list[str]:
    return [u.label for u in world.users]


def errors(report: AuditReport) -> set[tuple[str, str | None, str]]:
    return {(r["table"], r["policy"], r["rule"]) for r in report.errors().iter_rows(named=True)}


async def assert_restored(stack: DevStack, world: SeedResult, truth: GroundTruth) -> None:
    restored = await audit(stack, world, truth)
    assert restored.passed, restored.markdown()


# -- the seeded policies --------------------------------------------------------------------


async def test_the_seeded_policies_pass(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    report = await audit(stack, world, truth)
    print(report.summary())  # shown with -s; the closing note quotes it
    assert report.passed, report.markdown()
    assert set(report.matrix["user"]) == set(users(world)) | {ANON_USER}
    assert set(report.matrix["organisation_id"]) == set(world.organisation_ids) | {ALL}
    assert report.lint is not None and report.lint.is_empty()
    assert report.surface_diff is not None and report.surface_diff.is_empty()
    assert report.checks["passed"].all()
    anon = report.matrix.filter(pl.col("user") == ANON_USER)
    assert anon["visible"].sum() == 0 and anon.height > 0
    # Not vacuous: users really saw rows, and exactly the expected number.
    for probe in ("select", "all_rows"):
        contacts = report.matrix.filter(
            (pl.col("table") == "contacts") & (pl.col("probe") == probe)
        )
        assert contacts["visible"].sum() == contacts["expected"].sum() > 0
    multi = report.matrix.filter(
        (pl.col("user") == "multi-org")
        & (pl.col("probe") == "select")
        & (pl.col("table") == "organisations")
    )
    assert sorted(multi["visible"].to_list()) == [0, 1, 1]
    members = report.matrix.filter(
        (pl.col("table") == "organisation_members")
        & pl.col("probe").is_in(["select", "count"])
        & (pl.col("user") != ANON_USER)
    )
    belongs = {(u.label, m[0]) for u in world.users for m in u.memberships}
    assert {
        (r["user"], r["organisation_id"], r["probe"])
        for r in members.iter_rows(named=True)
        if r["visible"] == 1
    } == {(u, o, p) for u, o in belongs for p in ("select", "count")}
    assert members.filter(pl.col("visible") > 1).is_empty()


async def test_the_exposed_schemas_and_surface_come_from_the_database(
    stack: DevStack, world: SeedResult, truth: GroundTruth, digest: str
) -> None:
    assert exposed_schemas(stack.database_url) == ("public",)
    report = await audit(stack, world, truth)
    assert report.surface is not None
    attributes = 'invoker owner=postgres search_path=""'
    # The scoping tables and the spec's synced tables, and the sync digest.
    assert surface_lines(report.surface) == [f"function {digest} authenticated {attributes}"] + [
        f"table public.{t} authenticated" for t in sorted(AUDIT_TABLES)
    ]


# -- beyond the audited set -----------------------------------------------------------------


async def test_an_outside_organisation_opened_to_signed_in_users(
    stack: DevStack, world: SeedResult, truth: GroundTruth, outside: str
) -> None:
    with planted(
        stack,
        "CREATE POLICY audit_open_outside ON public.contacts FOR SELECT "
        f"TO authenticated USING (organisation_id = '{outside}')",
        "DROP POLICY IF EXISTS audit_open_outside ON public.contacts",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    opened = pl.col("organisation_id") == outside
    expected = leak_cells(
        truth, world, users(world), "contacts", CONTACT_PROBES, CONTACT_SWEEPS, opened
    )
    assert {c[1] for c in expected} == {outside, ALL}
    assert report.leaked_cells() == expected
    assert report.leaks()["outside_audited_set"].all()
    leaked_ids = set(report.discrepancies.filter(pl.col("kind") == "leaked")["id"])
    assert leaked_ids == set(truth.universe.filter(opened & (pl.col("table") == "contacts"))["id"])
    assert errors(report) == {("contacts", "audit_open_outside", "policy_not_scoped")}
    await assert_restored(stack, world, truth)


async def test_an_outside_organisation_opened_to_anon(
    stack: DevStack, world: SeedResult, truth: GroundTruth, outside: str
) -> None:
    with planted(
        stack,
        "GRANT SELECT ON public.contacts TO anon; "
        "CREATE POLICY audit_anon_outside ON public.contacts FOR SELECT "
        f"TO anon USING (organisation_id = '{outside}')",
        "DROP POLICY IF EXISTS audit_anon_outside ON public.contacts; "
        "REVOKE SELECT ON public.contacts FROM anon",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    # The anon key cannot embed notes it has no grant on: the embedded select is denied.
    expected = leak_cells(
        truth,
        world,
        [ANON_USER],
        "contacts",
        CONTACT_PROBES,
        ("all_rows", "all_search"),
        pl.col("organisation_id") == outside,
    )
    assert report.leaked_cells() == expected
    assert {c[1] for c in expected} == {outside, ALL}
    failed = report.checks.filter(~pl.col("passed"))
    assert failed.select("check", "table").rows() == [("anon_sees_nothing", "contacts")]
    assert errors(report) == {
        ("contacts", "audit_anon_outside", "policy_not_scoped"),
        ("contacts", "audit_anon_outside", "anon_personal_data"),
    }
    await assert_restored(stack, world, truth)


# -- the exposed surface --------------------------------------------------------------------


async def test_a_definer_view(stack: DevStack, world: SeedResult, truth: GroundTruth) -> None:
    with planted(
        stack,
        "CREATE VIEW public.audit_contacts_overview AS "
        "SELECT id, organisation_id, full_name FROM public.contacts; "
        "GRANT SELECT ON public.audit_contacts_overview TO authenticated",
        "DROP VIEW IF EXISTS public.audit_contacts_overview",
        api_path="audit_contacts_overview",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    label = "public.audit_contacts_overview"
    assert report.leaked_cells() == surface_cells(truth, users(world), label)
    assert errors(report) == {("audit_contacts_overview", None, "security_definer_view")}
    assert report.unaccepted_surface()["entry"].to_list() == [
        "view public.audit_contacts_overview authenticated"
    ]
    await assert_restored(stack, world, truth)


async def test_a_materialised_view(stack: DevStack, world: SeedResult, truth: GroundTruth) -> None:
    with planted(
        stack,
        "CREATE MATERIALIZED VIEW public.audit_contact_ids AS "
        "SELECT id, organisation_id FROM public.contacts; "
        "GRANT SELECT ON public.audit_contact_ids TO authenticated",
        "DROP MATERIALIZED VIEW IF EXISTS public.audit_contact_ids",
        api_path="audit_contact_ids",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    label = "public.audit_contact_ids"
    assert report.leaked_cells() == surface_cells(truth, users(world), label)
    assert errors(report) == {("audit_contact_ids", None, "materialized_view_exposed")}
    assert report.unaccepted_surface()["entry"].to_list() == [
        "materialized_view public.audit_contact_ids authenticated"
    ]
    await assert_restored(stack, world, truth)


async def test_a_security_definer_function_returning_contacts(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    with planted(
        stack,
        "CREATE FUNCTION public.audit_all_contacts() "
        "RETURNS SETOF public.contacts LANGUAGE sql STABLE SECURITY DEFINER "
        "AS $$ SELECT * FROM public.contacts $$",
        "DROP FUNCTION IF EXISTS public.audit_all_contacts()",
        api_path="rpc/audit_all_contacts",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    # EXECUTE goes to PUBLIC by default: the anon key calls it too.
    label = "public.audit_all_contacts()"
    assert report.leaked_cells() == surface_cells(truth, [*users(world), ANON_USER], label)
    assert errors(report) == {
        ("audit_all_contacts()", None, "definer_function_search_path"),
        ("audit_all_contacts()", None, "definer_function_exposed"),
    }
    assert report.unaccepted_surface()["entry"].to_list() == [
        "function public.audit_all_contacts() anon,authenticated definer owner=postgres "
        "search_path=unset"
    ]
    await assert_restored(stack, world, truth)


# -- policies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tautology",
    ["(select auth.uid()) is not null", "(select auth.role()) = 'authenticated'", "1 = 1"],
)
async def test_a_tautology_policy(
    stack: DevStack, world: SeedResult, truth: GroundTruth, tautology: str, digest: str
) -> None:
    with planted(
        stack,
        "CREATE POLICY audit_tautology ON public.contacts FOR SELECT "
        f"TO authenticated USING ({tautology})",
        "DROP POLICY IF EXISTS audit_tautology ON public.contacts",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    expected = leak_cells(truth, world, users(world), "contacts", CONTACT_PROBES, CONTACT_SWEEPS)
    cells, digest_leaks = without_digest(report, digest)
    assert cells == expected
    assert digest_leaks == set(users(world))
    assert {c[1] for c in expected} > set(world.organisation_ids) | {ALL}  # beyond the set
    assert report.failing_cells().filter(pl.col("missing") > 0).is_empty()
    assert errors(report) == {("contacts", "audit_tautology", "policy_not_scoped")}
    await assert_restored(stack, world, truth)


async def test_a_using_true_policy_on_notes_is_caught_cell_by_cell(
    stack: DevStack, world: SeedResult, truth: GroundTruth, digest: str
) -> None:
    with planted(
        stack,
        "CREATE POLICY audit_leak ON public.notes FOR SELECT TO authenticated USING (true)",
        "DROP POLICY IF EXISTS audit_leak ON public.notes",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    # The embedded selects only reach notes through visible contacts: not leaked.
    expected = leak_cells(
        truth, world, users(world), "notes", ("select", "count", "foreign_ids"), ("all_rows",)
    )
    cells, digest_leaks = without_digest(report, digest)
    assert cells == expected
    assert digest_leaks == set(users(world))
    assert report.failing_cells().filter(pl.col("missing") > 0).is_empty()
    assert errors(report) == {("notes", "audit_leak", "using_true")}
    await assert_restored(stack, world, truth)


async def test_a_dropped_chapter_rule_is_caught_for_chapter_bound_users(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    with policy_replaced(
        stack,
        "contacts",
        "contacts_select_scope",
        "organisation_id IN (SELECT private.member_organisation_ids())",
    ):
        report = await audit(stack, world, truth)
    # Each chapter-bound user now sees the whole of their own organisations, nothing more.
    expected: set[Cell] = set()
    for user in world.users:
        if any(m[1] for m in user.memberships):
            own = pl.col("organisation_id").is_in([m[0] for m in user.memberships])
            expected |= leak_cells(
                truth, world, [user.label], "contacts", CONTACT_PROBES, CONTACT_SWEEPS, own
            )
    assert expected
    assert report.leaked_cells() == expected
    assert not report.passed
    assert report.lint is not None and report.lint.is_empty()  # a logic leak lint cannot see
    await assert_restored(stack, world, truth)


async def test_a_membership_table_readable_by_all(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    with planted(
        stack,
        "GRANT SELECT ON public.organisation_members TO anon; "
        "CREATE POLICY audit_members_open ON public.organisation_members "
        "FOR SELECT TO anon, authenticated USING (true)",
        "DROP POLICY IF EXISTS audit_members_open ON public.organisation_members; "
        "REVOKE SELECT ON public.organisation_members FROM anon",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    expected = leak_cells(
        truth,
        world,
        [*users(world), ANON_USER],
        "organisation_members",
        ("select", "count"),
        ("all_rows",),
    )
    # Every organisation has members besides any one user: every caller x organisation.
    assert {(c[0], c[1]) for c in expected if c[3] == "select"} == {
        (u, o) for u in [*users(world), ANON_USER] for o in world.organisation_ids
    }
    assert report.leaked_cells() == expected
    assert report.failing_cells().filter(pl.col("missing") > 0).is_empty()
    # A membership is its user within its organisation: no user's own row is a leak.
    leaked = report.discrepancies.filter(pl.col("kind") == "leaked")
    own = {(u.label, f"{u.user_id}:{m[0]}") for u in world.users for m in u.memberships}
    assert not own & set(leaked.select("user", "id").rows())
    assert errors(report) == {
        ("organisation_members", "audit_members_open", "using_true"),
        ("organisation_members", "audit_members_open", "anon_personal_data"),
    }
    await assert_restored(stack, world, truth)


async def test_the_lint_reads_the_live_catalog(stack: DevStack) -> None:
    assert lint_database(stack.database_url).is_empty()
    with planted(
        stack,
        "CREATE TABLE public.audit_lint_probe (id int PRIMARY KEY, owner uuid); "
        "CREATE POLICY audit_lint_bare ON public.notes FOR SELECT "
        "USING (author_id = auth.uid())",
        "DROP POLICY IF EXISTS audit_lint_bare ON public.notes; "
        "DROP TABLE IF EXISTS public.audit_lint_probe",
    ):
        findings = lint_database(stack.database_url)
    found = {(r["table"], r["policy"], r["rule"]) for r in findings.iter_rows(named=True)}
    assert found == {
        ("audit_lint_probe", None, "rls_disabled"),
        ("notes", "audit_lint_bare", "no_role"),
        ("notes", "audit_lint_bare", "anon_personal_data"),
        ("notes", "audit_lint_bare", "bare_auth_call"),
        ("notes", "audit_lint_bare", "missing_index"),
    }
    assert findings["fix"].is_not_null().all()
    assert lint_database(stack.database_url).is_empty()


async def test_the_audit_panel_on_the_stack(
    stack: DevStack, world: SeedResult, truth: GroundTruth, tmp_path: Path
) -> None:
    from contactsync_kit.widgets.audit_panel import AuditModel, AuditPanel

    model = AuditModel.for_stack(stack, world)
    panel = AuditPanel(model)
    assert panel.export_button.disabled
    panel.run_button.click()
    await model.wait()
    assert model.passed is True, model.status
    assert model.headline.startswith("PASS")
    assert model.chart.startswith(b"\x89PNG")
    assert model.report is not None and model.report.claims_probed  # the stack mints claims
    assert not model.report.matrix.filter(pl.col("probe") == "claims").is_empty()
    assert not panel.export_button.disabled
    paths = await model.export(tmp_path)
    assert paths["summary_md"].read_text().startswith("# RLS scoping audit — PASS")
    assert pl.read_parquet(paths["matrix_parquet"]).height == model.report.matrix.height
