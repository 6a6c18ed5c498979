"""Stale-cache diagnostics against the real local stack.

A cache drifted by server edits, access revoked, an expired token, and a support bundle free
of every seeded personal value.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contactsync_kit import (
    ManualClock,
    SyncFailure,
    SyncLogEntry,
    SyncSuccess,
    UserSession,
    start_session,
)
from contactsync_kit.devstack import DevStack, SeededUser, SeedResult
from contactsync_kit.diagnostics import Verdict, diagnose, fold, write_support_bundle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(stack: DevStack) -> SeedResult:
    """This module's own organisations (seed 5101), so edits here touch no other test's data."""
    return stack.seed(
        organisations=3,
        chapters_per_org=2,
        users_per_org=3,
        contacts_per_org=[24, 16, 8],
        notes_per_contact=3,
        assignments_per_contact=1,
        seed=5101,
    )


async def session_for(
    stack: DevStack, user: SeededUser, tmp_path: Path, clock: ManualClock | None = None
) -> UserSession:
    return await start_session(
        stack.url,
        stack.anon_key,
        email=user.email,
        password=user.password,
        cache_path=tmp_path / "cache.sqlite3",
        clock=clock,
    )


@pytest.fixture
async def admin(
    stack: DevStack,
    world: SeedResult,
    tmp_path: Path,
) -> AsyncIterator[UserSession]:
    session = await session_for(stack, world.user("org1-admin"), tmp_path)
    yield session
    session.close()


async def test_server_edits_and_a_deletion_show_as_drift_and_a_sync_fixes_them(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    assert isinstance(await admin.repository.sync_contacts_for_organisation(org), SyncSuccess)
    before = await diagnose(admin, org)
    assert before.verdict_for(org).verdict is Verdict.FRESH, before.summary()

    edited, deleted = (
        row[0]
        for row in stack.sql(
            "SELECT id::text FROM public.contacts WHERE organisation_id = %s ORDER BY id LIMIT 2",
            org,
        )
    )
    deleted_notes = {
        row[0]
        for row in stack.sql("SELECT id::text FROM public.notes WHERE contact_id = %s", deleted)
    }
    stack.sql("UPDATE public.contacts SET status = 'inactive' WHERE id = %s", edited)
    stack.sql("DELETE FROM public.contacts WHERE id = %s", deleted)

    drifted = await diagnose(admin, org)
    finding = drifted.verdict_for(org)
    assert (finding.verdict, finding.cause, finding.action) == (
        Verdict.DRIFTED,
        "server_changed",
        "sync now",
    ), drifted.summary()
    statuses = {
        (r["table"], r["id"]): r["status"] for r in drifted.differences.iter_rows(named=True)
    }
    assert statuses.pop(("contacts", edited)) == "newer_on_server"
    assert statuses.pop(("contacts", deleted)) == "gone_from_server"
    assert {key for key, status in statuses.items() if key[0] == "notes"} == {
        ("notes", n) for n in deleted_notes
    }
    assert set(statuses.values()) == {"gone_from_server"}  # the rest: the deleted children
    row = drifted.organisations.row(0, named=True)
    assert (row["local_contacts"], row["server_contacts"]) == (24, 23)
    assert row["server_newest_updated_at"] > row["local_newest_updated_at"]

    assert isinstance(await admin.repository.sync_contacts_for_organisation(org), SyncSuccess)
    after = await diagnose(admin, org)
    assert after.verdict_for(org).verdict is Verdict.FRESH, after.summary()
    assert after.differences.is_empty()


async def test_a_removed_membership_reads_access_revoked(
    stack: DevStack, world: SeedResult, tmp_path: Path
) -> None:
    org = world.organisation_ids[1]
    user_id = stack.create_user(
        "revoked.support@example.org", "pw-revoked", [(org, None, "volunteer")]
    )
    user = SeededUser("revoked.support@example.org", "pw-revoked", user_id, [])
    session = await session_for(stack, user, tmp_path)
    try:
        assert isinstance(await session.repository.sync_contacts_for_organisation(org), SyncSuccess)
        stack.remove_membership(user_id, org)
        diagnosis = await diagnose(session, org)
        finding = diagnosis.verdict_for(org)
        assert (finding.verdict, finding.cause) == (Verdict.DRIFTED, "access_revoked")
        assert finding.action.startswith("access revoked")
        row = diagnosis.organisations.row(0, named=True)
        assert (row["member"], row["server_contacts"], row["local_contacts"]) == (False, 0, 16)
    finally:
        session.close()
        stack.delete_user(user_id)


async def test_an_expired_token_reads_sign_in_again(
    stack: DevStack, world: SeedResult, tmp_path: Path
) -> None:
    user = world.user("org3-admin")
    org = world.organisation_ids[2]
    good = await session_for(stack, user, tmp_path)
    assert isinstance(await good.repository.sync_contacts_for_organisation(org), SyncSuccess)
    good.close()
    # The server vouches for the token at sign-in (an expired one opens nothing), so this
    # session's token runs out while it is open.
    expired = await start_session(
        stack.url,
        stack.anon_key,
        access_token=stack.access_token_for(user.user_id, lifetime_s=2),
        cache_path=tmp_path / "cache.sqlite3",
    )
    await asyncio.sleep(2.5)
    try:
        failed = await expired.repository.sync_contacts_for_organisation(org)
        assert isinstance(failed, SyncFailure)
        diagnosis = await diagnose(expired, org)
        finding = diagnosis.verdict_for(org)
        assert (finding.verdict, finding.action) == (
            Verdict.FAILING,
            "sign in again: token expired",
        )
        assert diagnosis.session.problem_code == "token_expired"
        assert diagnosis.organisations.row(0, named=True)["local_contacts"] == 8
    finally:
        expired.close()


async def test_staleness_by_a_manual_clock_on_the_real_stack(
    stack: DevStack, world: SeedResult, tmp_path: Path
) -> None:
    # The sync is stamped 30 hours back; the diagnosis runs at the real now, so the freshly
    # issued token is still valid by the same clock.
    clock = ManualClock(datetime.now(UTC) - timedelta(hours=30))
    session = await session_for(stack, world.user("org2-admin"), tmp_path, clock)
    try:
        org = world.organisation_ids[1]
        await session.repository.sync_contacts_for_organisation(org)
        clock.set(datetime.now(UTC))
        finding = (await diagnose(session, org)).verdict_for(org)
        assert (finding.verdict, finding.action) == (Verdict.STALE, "sync now")
    finally:
        session.close()


def seeded_personal_values(stack: DevStack, organisation_ids: list[str]) -> list[str]:
    values = stack.sql(
        "SELECT v FROM (SELECT unnest(ARRAY[full_name, phone, email, address]) AS v "
        "FROM public.contacts WHERE organisation_id = ANY(%s::uuid[]) "
        "UNION SELECT body FROM public.notes WHERE organisation_id = ANY(%s::uuid[])) s "
        "WHERE v IS NOT NULL",
        organisation_ids,
        organisation_ids,
    )
    return sorted({row[0] for row in values})


async def test_the_support_bundle_contains_no_seeded_personal_value(
    stack: DevStack, world: SeedResult, tmp_path: Path
) -> None:
    multi = world.user("multi-org")
    session = await session_for(stack, multi, tmp_path)
    try:
        for org in multi.organisation_ids:
            assert isinstance(
                await session.repository.sync_contacts_for_organisation(org), SyncSuccess
            )
        # A failure in the log, and personal values planted where a sloppy message could
        # carry them: the sync log's message column. Upper case, accents dropped or kept,
        # and a surname alone inside a sentence.
        await session.repository.sync_contacts_for_organisation("not-a-uuid")
        name = stack.sql(
            "SELECT full_name FROM public.contacts WHERE organisation_id = %s LIMIT 1",
            multi.organisation_ids[0],
        )[0][0]
        accented = stack.sql(
            "SELECT full_name FROM public.contacts WHERE organisation_id = "
            "ANY(%s::uuid[]) AND full_name ~ '[ÅÖåö]' LIMIT 1",
            multi.organisation_ids,
        )[0][0]
        surname = accented.split()[-1]
        planted = [
            f"row of {name} refused",
            f"row of {accented.upper()} refused",
            f"the contact {surname} could not be mapped",
            f"refused: {fold(accented)}",
            f"no access for {multi.user_id}",
        ]
        for message in planted:
            session.cache.record_attempt(
                SyncLogEntry(
                    multi.organisation_ids[0],
                    datetime.now(UTC),
                    1,
                    "failure",
                    error_kind="invalid_data",
                    message=message,
                )
            )
        stack.sql(
            "UPDATE public.contacts SET phone = '+47 400 00 001' WHERE id = "
            "(SELECT id FROM public.contacts WHERE organisation_id = %s LIMIT 1)",
            multi.organisation_ids[0],
        )
        diagnosis = await diagnose(session)
        assert diagnosis.differences.height >= 1

        bundle = write_support_bundle(diagnosis, session.cache, tmp_path / "bundles")
        text = bundle.read_text()
        personal = seeded_personal_values(stack, world.organisation_ids)
        assert len(personal) > 100
        found = [value for value in personal if fold(value) in fold(text)]
        assert found == [], f"personal data in the bundle: {found[:5]}"
        assert fold(surname) not in fold(text)
        assert multi.user_id not in text
        assert "+47 400 00 001" not in text
        assert multi.email not in text and multi.password not in text
        for org in multi.organisation_ids:
            assert org in text
    finally:
        session.close()


async def test_the_panel_on_the_stack(
    stack: DevStack, world: SeedResult, admin: UserSession, tmp_path: Path
) -> None:
    from contactsync_kit.widgets.diagnostics_panel import DiagnosticsModel, DiagnosticsPanel

    org = world.organisation_ids[0]
    await admin.repository.sync_contacts_for_organisation(org)
    model = DiagnosticsModel(bundle_dir=tmp_path)
    panel = DiagnosticsPanel(model)
    model.session = admin
    await model.wait()
    assert model.organisations == [(world.organisation_names[org], org)]
    panel.picker.value = org
    panel.diagnose_button.click()
    await model.wait()
    assert [(r["label"], r["verdict"]) for r in model.rows] == [
        (world.organisation_names[org], "fresh")
    ]
    panel.export_button.click()
    await model.wait()
    assert await asyncio.to_thread(Path(model.bundle_path).exists)
