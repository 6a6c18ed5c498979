"""Verified incremental sync as support sees it, against the real local stack.

After a sync the diagnosis says "equal to the server" by the digest alone (no id listing),
and the freshness panel's check says the same; after a server-side delete both say drifted;
a re-sync fetches only the changes, says so, and is verified; the sync log records the mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contactsync_kit import SyncSuccess, UserSession, start_session, verify_cache
from contactsync_kit.devstack import DevStack, SeedResult
from contactsync_kit.diagnostics import Verdict, diagnose
from contactsync_kit.widgets import describe_result
from contactsync_kit.widgets.freshness import FreshnessModel, FreshnessPanel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(stack: DevStack) -> SeedResult:
    """This module's own organisations (seed 5301), so its deletes touch no other test."""
    return stack.seed(
        organisations=2,
        chapters_per_org=2,
        users_per_org=3,
        contacts_per_org=[20, 6],
        notes_per_contact=3,
        assignments_per_contact=1,
        seed=5301,
    )


@pytest.fixture
async def admin(stack: DevStack, world: SeedResult, tmp_path: Path) -> AsyncIterator[UserSession]:
    user = world.user("org1-admin")
    session = await start_session(
        stack.url,
        stack.anon_key,
        email=user.email,
        password=user.password,
        cache_path=tmp_path / "cache.sqlite3",
    )
    yield session
    session.close()


def id_listings(stack: DevStack) -> list[str]:
    """The REST requests since the last clear that listed rows of a data table."""
    return [
        f"{entry.path}?{entry.query}"
        for entry in stack.request_log.rest()
        if entry.method == "GET"
        and entry.path in ("/contacts", "/notes", "/contact_assignments")
        and "select=id" in entry.query.replace("%2C", ",")
    ]


async def test_equal_by_digest_then_drifted_after_a_delete_then_a_verified_delta(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    first = await admin.repository.sync_contacts_for_organisation(org)
    assert isinstance(first, SyncSuccess) and first.mode == "full" and first.verified, first

    stack.request_log.clear()
    equal = await diagnose(admin, org)
    row = equal.organisations.row(0, named=True)
    assert (row["verdict"], row["server_digest"]) == ("fresh", "equal"), equal.summary()
    assert "equals the server (verified by digest)" in row["summary"]
    assert row["server_contacts"] == row["local_contacts"] == 20
    assert equal.differences.is_empty()
    assert id_listings(stack) == [], "equal by digest: no ids were listed"
    digests = [e for e in stack.request_log.rest() if e.path == "/rpc/contactsync_digest"]
    assert len(digests) == 1

    model = FreshnessModel(draw_chart=False)
    panel = FreshnessPanel(model)
    model.session = admin
    await model.wait()
    panel.check_button.click()
    await model.wait()
    [checked] = model.verification
    assert (checked["organisation_id"], checked["text"]) == (org, "equal to the server ✓")
    assert "equal ✓" in panel.verification.value

    deleted = str(
        stack.sql(
            "SELECT id::text FROM public.contacts WHERE organisation_id = %s ORDER BY id LIMIT 1",
            org,
        )[0][0]
    )
    stack.sql("DELETE FROM public.contacts WHERE id = %s", deleted)

    assert (await verify_cache(admin.client, admin.cache, org)).verdict == "drifted"
    stack.request_log.clear()
    drifted = await diagnose(admin, org)
    finding = drifted.verdict_for(org)
    assert (finding.verdict, finding.cause) == (Verdict.DRIFTED, "server_changed")
    assert drifted.organisations.row(0, named=True)["server_digest"] == "drifted"
    assert id_listings(stack), "drifted: the id diff says what differs"
    gone = drifted.differences.filter(drifted.differences["table"] == "contacts")
    assert gone["id"].to_list() == [deleted] and gone["status"].to_list() == ["gone_from_server"]

    await model.check()
    [checked] = model.verification
    assert checked["verdict"] == "drifted"
    assert checked["text"].startswith("drifted: contacts 20 cached / 19 on the server")
    assert checked["text"].endswith("— sync now")

    again = await admin.repository.sync_contacts_for_organisation(org)
    assert isinstance(again, SyncSuccess) and again.mode == "delta" and again.verified, again
    assert again.rows_deleted == 5  # the contact, its three notes and its assignment
    text = describe_result(again, "Org one")
    assert "Only changes were fetched" in text and f"{again.rows_deleted} removed" in text
    assert text.endswith("Verified ✓ — the cache equals what the server shows you.")

    after = await diagnose(admin, org)
    assert after.organisations.row(0, named=True)["server_digest"] == "equal"
    log = admin.cache.read_table("sync_log", org).sort("id")
    assert log["mode"].to_list() == ["full", "delta"]
    assert log["verified"].to_list() == [1, 1]
