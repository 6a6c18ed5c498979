"""The audit's blind spots closed, on the real local stack: claims a user can edit
(user_metadata) in a policy, a view and a function, the digest function switched to SECURITY
DEFINER, and a definer function returning another organisation's rows by id. Each planted
exposure fails the audit with a named lint finding, its fix, and leaked cells from the
probes; each is undone inside its test, and the audit passes again.
"""

from __future__ import annotations

import time
import uuid

import httpx
import polars as pl
import pytest

from contactsync_kit.devstack import DevStack, SeedResult
from contactsync_kit.rls_audit import (
    AuditReport,
    GroundTruth,
    audit_rls,
    ground_truth_from_database,
)
from tests.integration.test_rls_audit_stack import SURFACE_FILE, digest_function, planted

pytestmark = pytest.mark.integration

CLAIM = "((select auth.jwt()) -> 'user_metadata' ->> 'organisation_id')::uuid"


@pytest.fixture(scope="module")
def world(stack: DevStack) -> SeedResult:
    """This module's own organisations (seed 5202): the audited set."""
    return stack.seed(
        organisations=3,
        chapters_per_org=2,
        users_per_org=3,
        contacts_per_org=[8, 6, 4],
        notes_per_contact=1,
        assignments_per_contact=1,
        seed=5202,
    )


@pytest.fixture(scope="module")
def digest(stack: DevStack) -> tuple[str, str]:
    """(the digest's surface label, its signature), read from the catalog."""
    return digest_function(stack)


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
        claims_tokens=stack.user_metadata_tokens,
        claims="all",
    )


def findings(report: AuditReport, rule: str) -> pl.DataFrame:
    found = report.errors().filter(pl.col("rule") == rule)
    assert found["fix"].str.len_chars().min() or 0 > 0  # every finding carries its fix
    return found


def leaks(report: AuditReport, probe: str) -> pl.DataFrame:
    return report.leaks().filter(pl.col("probe") == probe)


def labels(world: SeedResult) -> set[str]:
    return {u.label for u in world.users}


async def test_the_seeded_policies_pass_the_claims_and_function_probes(
    stack: DevStack, world: SeedResult, truth: GroundTruth, digest: tuple[str, str]
) -> None:
    report = await audit(stack, world, truth)
    assert report.passed, report.markdown()
    assert report.claims_probed == len(world.users)
    claims = report.matrix.filter(pl.col("probe") == "claims")
    # Not vacuous: with the claims token each user still sees exactly their own rows.
    assert claims["visible"].sum() == claims["expected"].sum() > 0
    calls = report.matrix.filter(pl.col("probe") == "foreign_args")
    assert set(calls["table"]) == {digest[0]} and set(calls["user"]) >= labels(world)
    # The metadata was put back.
    assert stack.sql("SELECT count(*) FROM auth.users WHERE raw_user_meta_data <> '{}'") == [(0,)]


async def test_a_user_metadata_scoped_select_policy(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    with planted(
        stack,
        "CREATE POLICY audit_claims ON public.contacts FOR SELECT TO authenticated "
        f"USING (organisation_id = {CLAIM})",
        "DROP POLICY IF EXISTS audit_claims ON public.contacts",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    found = findings(report, "user_metadata_scoping")
    assert found.select("table", "policy").rows() == [("contacts", "audit_claims")]
    assert "app_metadata" in found["fix"][0]
    leaked = leaks(report, "claims")
    assert set(leaked["user"]) == labels(world)  # every user, through the claim alone
    assert set(leaked["table"]) == {"contacts"}
    assert leaks(report, "all_rows").is_empty()  # the plain token sees nothing more
    await restored(stack, world, truth)


async def test_a_user_metadata_scoped_policy_through_auth_users(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    with planted(
        stack,
        "CREATE FUNCTION private.audit_claimed_org() RETURNS uuid LANGUAGE sql STABLE "
        "SECURITY DEFINER SET search_path = '' AS $$ SELECT (u.raw_user_meta_data ->> "
        "'org')::uuid FROM auth.users u WHERE u.id = (SELECT auth.uid()) $$; "
        "GRANT EXECUTE ON FUNCTION private.audit_claimed_org() TO authenticated; "
        "CREATE POLICY audit_claims_db ON public.notes FOR SELECT TO authenticated "
        "USING (organisation_id = (SELECT private.audit_claimed_org()))",
        "DROP POLICY IF EXISTS audit_claims_db ON public.notes; "
        "DROP FUNCTION IF EXISTS private.audit_claimed_org()",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    found = findings(report, "user_metadata_scoping")
    assert found.select("table", "policy").rows() == [("notes", "audit_claims_db")]
    assert "private.audit_claimed_org" in found["detail"][0]
    assert set(leaks(report, "claims")["user"]) == labels(world)
    await restored(stack, world, truth)


async def test_a_user_metadata_scoped_view(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    with planted(
        stack,
        "CREATE VIEW public.audit_my_contacts AS SELECT id, organisation_id FROM "
        f"public.contacts WHERE organisation_id = {CLAIM}; "
        "GRANT SELECT ON public.audit_my_contacts TO authenticated",
        "DROP VIEW IF EXISTS public.audit_my_contacts",
        api_path="audit_my_contacts",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    found = findings(report, "user_metadata_scoping")
    assert found.select("table").rows() == [("audit_my_contacts",)]
    assert {"security_definer_view"} <= set(report.errors()["rule"])
    leaked = leaks(report, "claims_surface")
    assert set(leaked["user"]) == labels(world)
    assert set(leaked["table"]) == {"public.audit_my_contacts"}
    await restored(stack, world, truth)


async def test_a_user_metadata_scoped_function(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    with planted(
        stack,
        "CREATE FUNCTION public.audit_my_contacts_fn() RETURNS SETOF public.contacts "
        "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$ SELECT * FROM "
        f"public.contacts WHERE organisation_id = {CLAIM} $$; "
        "REVOKE ALL ON FUNCTION public.audit_my_contacts_fn() FROM PUBLIC, anon; "
        "GRANT EXECUTE ON FUNCTION public.audit_my_contacts_fn() TO authenticated",
        "DROP FUNCTION IF EXISTS public.audit_my_contacts_fn()",
        api_path="rpc/audit_my_contacts_fn",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    assert set(findings(report, "user_metadata_scoping")["table"]) == {"audit_my_contacts_fn()"}
    assert set(findings(report, "definer_function_exposed")["table"]) == {"audit_my_contacts_fn()"}
    assert set(leaks(report, "claims_surface")["user"]) == labels(world)
    await restored(stack, world, truth)


async def test_the_digest_switched_to_security_definer(
    stack: DevStack, world: SeedResult, truth: GroundTruth, digest: tuple[str, str]
) -> None:
    label, signature = digest
    with planted(
        stack,
        f"ALTER FUNCTION public.{signature} SECURITY DEFINER",
        f"ALTER FUNCTION public.{signature} SECURITY INVOKER",
    ):
        report = await audit(stack, world, truth)
    assert not report.passed
    found = findings(report, "definer_function_exposed")
    assert found["table"].to_list() == [label.removeprefix("public.")]
    assert "REVOKE EXECUTE" in found["fix"][0]
    # The surface diff names the changed attribute.
    assert [e for e in report.unaccepted_surface()["entry"] if "contactsync_digest" in e] == [
        f'function {label} authenticated definer owner=postgres search_path=""'
    ]
    leaked = leaks(report, "foreign_args")
    assert set(leaked["user"]) == labels(world) and set(leaked["table"]) == {label}
    for row in leaked.iter_rows(named=True):  # the organisation passed is one it must not see
        member = {m[0] for u in world.users if u.label == row["user"] for m in u.memberships}
        assert row["organisation_id"] not in member
    await restored(stack, world, truth)


async def test_a_definer_function_returning_another_organisations_rows_by_id(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    with planted(
        stack,
        "CREATE FUNCTION public.audit_contacts_of(p_organisation_id uuid) "
        "RETURNS SETOF public.contacts LANGUAGE sql STABLE SECURITY DEFINER "
        "SET search_path = '' AS $$ SELECT * FROM public.contacts "
        "WHERE organisation_id = p_organisation_id $$; "
        "REVOKE ALL ON FUNCTION public.audit_contacts_of(uuid) FROM PUBLIC, anon; "
        "GRANT EXECUTE ON FUNCTION public.audit_contacts_of(uuid) TO authenticated",
        "DROP FUNCTION IF EXISTS public.audit_contacts_of(uuid)",
    ):
        served_rpc(stack, "audit_contacts_of", {"p_organisation_id": str(uuid.UUID(int=0))})
        report = await audit(stack, world, truth)
    assert not report.passed
    label = "public.audit_contacts_of(p_organisation_id uuid)"
    assert set(findings(report, "definer_function_exposed")["table"]) == {
        label.removeprefix("public.")
    }
    leaked = leaks(report, "foreign_args").filter(pl.col("table") == label)
    assert set(leaked["user"]) == labels(world)
    assert (leaked["leaked"] > 0).all()
    await restored(stack, world, truth)


def served_rpc(stack: DevStack, name: str, args: dict[str, str], timeout_s: float = 30) -> None:
    """Reload PostgREST's schema cache and wait until it can call `name` with `args`."""
    stack.reload_schema()
    key = stack.service_role_key
    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.post(
            f"{stack.url}/rest/v1/rpc/{name}",
            json=args,
            headers={"apikey": key, "Authorization": f"Bearer {key}"},
        ).status_code
        if status != 404:
            return
        assert time.monotonic() < deadline, f"PostgREST does not serve rpc/{name}: {status}"
        time.sleep(0.05)


async def restored(stack: DevStack, world: SeedResult, truth: GroundTruth) -> None:
    report = await audit(stack, world, truth)
    assert report.passed, report.markdown()


async def test_the_audit_panel_probes_the_claims_on_a_stack(
    stack: DevStack, world: SeedResult, truth: GroundTruth
) -> None:
    from contactsync_kit.widgets.audit_panel import AuditModel

    model = AuditModel.for_stack(stack, world, ground_truth=truth, draw_chart=False)
    with planted(
        stack,
        "CREATE POLICY audit_claims ON public.contacts FOR SELECT TO authenticated "
        f"USING (organisation_id = {CLAIM})",
        "DROP POLICY IF EXISTS audit_claims ON public.contacts",
    ):
        report = await model.run()
    assert report is not None and model.passed is False
    assert set(leaks(report, "claims")["user"]) == labels(world)  # found by the probe itself
    [source] = report.leak_sources.filter(pl.col("policy") == "audit_claims").rows(named=True)
    assert "user_metadata_scoping" in (source["lint"] or "")
    await restored(stack, world, truth)
