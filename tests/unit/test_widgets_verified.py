"""Verified incremental sync in the panels, without a server: the sync readout's wording in
each mode, and the freshness panel's "Check against the server" driven by clicks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from contactsync_kit import (
    ManualClock,
    SyncError,
    SyncErrorKind,
    SyncFailure,
    SyncSuccess,
    UserSession,
    start_session,
)
from contactsync_kit.diagnostics import Verdict
from contactsync_kit.testing import FakeSupabase
from contactsync_kit.verify import CacheVerification, TableVerification
from contactsync_kit.widgets import SyncModel, SyncPanel, describe_result
from contactsync_kit.widgets.freshness import FreshnessModel, FreshnessPanel
from contactsync_kit.widgets.sync import result_details

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ORG = "2b563c23-1921-4b20-962d-7f04058b12e4"
OTHER = "cfee49cc-0d45-408b-b378-507eb9ba13f4"
EMAIL, PASSWORD = "support@example.org", "pw"
NAMES = {ORG: "Fjordlys Outreach", OTHER: "Elvebredd Helpers"}


def success(**fields: object) -> SyncSuccess:
    base: dict[str, object] = dict(
        organisation_id=ORG,
        rows_synced={"contacts": 60, "notes": 180, "contact_assignments": 60},
        duration_ms=300,
    )
    base.update(fields)
    return SyncSuccess(**base)  # type: ignore[arg-type]


# -- the sync readout ----------------------------------------------------------------------


def test_a_verified_delta_says_only_changes_were_fetched_and_verified() -> None:
    result = success(mode="delta", verified=True, rows_changed=3, rows_deleted=1)
    assert describe_result(result, "Fjordlys Outreach") == (
        "Synced Fjordlys Outreach: 60 contacts, 180 notes and 60 assignments, in under a "
        "second. Only changes were fetched: 3 rows updated, 1 removed. Verified ✓ — the "
        "cache equals what the server shows you."
    )
    details = dict(result_details(result))
    assert details["Mode"] == "delta: only changes"
    assert details["Verified"].startswith("yes ✓")
    assert (details["Rows changed"], details["Rows deleted"]) == ("3", "1")
    assert "Reconciled" not in details and "Why a full sync ran" not in details


def test_a_reconciled_delta_says_the_digest_found_what_did_not_arrive_as_changes() -> None:
    result = success(mode="delta", verified=True, rows_changed=1, rows_deleted=5, reconciled=True)
    text = describe_result(result)
    assert "1 row updated, 5 removed" in text
    assert "the digest found them" in text and text.endswith("what the server shows you.")
    assert dict(result_details(result))["Reconciled"].startswith("yes")


def test_a_verified_full_sync_says_it_fetched_everything_and_why() -> None:
    reason = "no verified earlier sync of this organisation by this user"
    result = success(mode="full", verified=True, fallback_reason=reason, rows_changed=300)
    assert describe_result(result, "Fjordlys Outreach").endswith(
        "in under a second. Fetched everything (no verified earlier sync of this organisation "
        "by this user). Verified ✓ — the cache equals what the server shows you."
    )
    details = dict(result_details(result))
    assert details["Mode"] == "full: everything"
    assert details["Why a full sync ran"] == reason


def test_an_unverified_full_sync_says_so_with_the_reason() -> None:
    reason = (
        "the server offers no digest function (Could not find the function "
        "public.contactsync_digest(p_organisation_id, p_prefix_length) in the schema cache): "
        "the sync is not verified"
    )
    result = success(mode="full", verified=False, fallback_reason=reason)
    text = describe_result(result, "Fjordlys Outreach")
    assert "Fetched everything. Not verified: the server offers no digest function; " in text
    assert "Verified ✓" not in text and "schema cache" not in text, "details hold the raw reason"
    details = dict(result_details(result))
    assert details["Verified"] == "no"
    assert details["Why not verified"] == reason


def test_a_failure_names_its_mode_in_the_details_only() -> None:
    failed = SyncFailure(
        organisation_id=ORG,
        mode="delta",
        error=SyncError(SyncErrorKind.NETWORK, "the server could not be reached"),
    )
    # A network failure is the server not answering, never blamed on the sync.
    assert describe_result(failed).startswith("The server does not answer")
    details = dict(result_details(failed))
    assert details["Mode"] == "delta: only changes"
    assert "Verified" not in details and "Rows changed" not in details


# -- panels over a real supabase-py client on FakeSupabase (which has no digest function) --


@pytest.fixture
async def fake_session() -> AsyncIterator[tuple[FakeSupabase, UserSession]]:
    fake = FakeSupabase(users={EMAIL: PASSWORD})
    fake.add_contacts(ORG, 4)
    http = fake.http_client()
    session = await start_session(
        fake.url,
        fake.anon_key,
        email=EMAIL,
        password=PASSWORD,
        cache_path=":memory:",
        http_client=http,
        clock=ManualClock(NOW),
    )
    yield fake, session
    session.close()
    await http.aclose()


async def test_the_sync_panel_says_ready_for_either_mode_and_why_not_verified(
    fake_session: tuple[FakeSupabase, UserSession],
) -> None:
    _, session = fake_session
    model = SyncModel()
    panel = SyncPanel(model)
    model.session, model.organisation_id, model.organisation_name = session, ORG, "Fjordlys"
    assert "replaces" not in model.status and "only what changed" in model.status

    panel.sync_button.click()
    await model.wait()

    assert model.result is not None and model.result.mode == "full"
    assert "Fetched everything. Not verified: the server offers no digest function" in (
        model.readout
    )
    assert model.status.endswith("not verified.")
    assert "Why not verified" in panel.readout.value


def verification(org: str, verdict: str, cached: int = 4, server: int = 4) -> CacheVerification:
    if verdict == "unavailable":
        return CacheVerification(org, Verdict.UNAVAILABLE, reason="the server could not be reached")
    tables = {
        "contacts": TableVerification("contacts", cached, server, cached == server),
        "notes": TableVerification("notes", 12, 12, True),
        "contact_assignments": TableVerification("contact_assignments", 4, 4, True),
    }
    return CacheVerification(org, Verdict(verdict), tables)


class FakeVerifier:
    """Answers per organisation from `answers`; records each request (one per organisation)."""

    def __init__(self, answers: dict[str, CacheVerification]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, session: UserSession, organisation_id: str) -> CacheVerification:
        self.asked.append(organisation_id)
        if self.gate is not None:
            await self.gate.wait()
        return self.answers[organisation_id]


async def cached_two(session: UserSession, fake: FakeSupabase) -> None:
    fake.add_contacts(OTHER, 2)
    for org in (ORG, OTHER):
        result = await session.repository.sync_contacts_for_organisation(org)
        assert result.ok, result


async def freshness(
    session: UserSession, verifier: FakeVerifier | None
) -> tuple[FreshnessModel, FreshnessPanel]:
    model = FreshnessModel(
        clock=ManualClock(NOW), draw_chart=False, verifier=verifier, organisation_names=NAMES
    )
    panel = FreshnessPanel(model)
    assert panel.check_button.disabled, "nothing to check before signing in"
    model.session = session
    await model.wait()
    return model, panel


async def test_the_check_button_asks_once_per_cached_organisation_and_shows_each_verdict(
    fake_session: tuple[FakeSupabase, UserSession],
) -> None:
    fake, session = fake_session
    await cached_two(session, fake)
    verifier = FakeVerifier(
        {ORG: verification(ORG, "equal"), OTHER: verification(OTHER, "drifted", 1, 2)}
    )
    model, panel = await freshness(session, verifier)
    assert not panel.check_button.disabled

    verifier.gate = asyncio.Event()
    panel.check_button.click()
    panel.check_button.click()  # a second click while the first runs starts nothing
    await asyncio.sleep(0)
    assert model.checking and panel.check_button.disabled
    assert panel.check_button.description == "Checking…"
    assert model.check_text.startswith("Asking the server about")
    verifier.gate.set()
    await model.wait()

    assert sorted(verifier.asked) == sorted([ORG, OTHER]), "one request per organisation"
    by_org = {row["organisation_id"]: row for row in model.verification}
    assert by_org[ORG]["text"] == "equal to the server ✓"
    assert by_org[OTHER]["text"] == ("drifted: contacts 1 cached / 2 on the server — sync now")
    assert by_org[OTHER]["label"] == "Elvebredd Helpers"
    assert model.check_text == (
        "1 of 2 cached organisations drifted from the server (Elvebredd Helpers): sync now."
    )
    assert "equal ✓" in panel.verification.value and "sync now" in panel.verification.value
    assert not panel.check_button.disabled

    await model.refresh()  # the cache read again (after a sync, say): the check is dropped
    assert model.verification == [] and panel.verification.value == ""


async def test_all_equal_reads_as_one_line(
    fake_session: tuple[FakeSupabase, UserSession],
) -> None:
    fake, session = fake_session
    await cached_two(session, fake)
    verifier = FakeVerifier({o: verification(o, "equal") for o in (ORG, OTHER)})
    model, _ = await freshness(session, verifier)
    rows = await model.check()
    assert [r["verdict"] for r in rows] == ["equal", "equal"]
    assert model.check_text.startswith("All 2 cached organisations equal the server ✓")


async def test_the_real_check_on_a_server_without_a_digest_says_it_cannot_verify(
    fake_session: tuple[FakeSupabase, UserSession],
) -> None:
    fake, session = fake_session
    result = await session.repository.sync_contacts_for_organisation(ORG)
    assert result.ok
    model, panel = await freshness(session, None)
    before = len(fake.rpc_requests)
    panel.check_button.click()
    await model.wait()
    assert len(fake.rpc_requests) == before + 1, "one digest request for the one organisation"
    [row] = model.verification
    assert row["verdict"] == "unavailable"
    assert row["text"].startswith("cannot verify: the server offers no digest function")
    assert model.check_text == "Could not verify 1 of 1: see the reason per organisation."
    assert "cannot verify" in panel.verification.value


async def test_signing_out_during_a_check_drops_it(
    fake_session: tuple[FakeSupabase, UserSession],
) -> None:
    fake, session = fake_session
    await cached_two(session, fake)
    verifier = FakeVerifier({o: verification(o, "equal") for o in (ORG, OTHER)})
    verifier.gate = asyncio.Event()
    model, _ = await freshness(session, verifier)
    model.request_check()
    await asyncio.sleep(0)
    model.session = None
    verifier.gate.set()
    await model.wait()
    assert model.verification == [] and not model.checking
