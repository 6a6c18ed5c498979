"""Issue 18: the console works from the cache when the server does not answer, names the
rows that differ, shows long work with elapsed time and Cancel, and keeps one honest state
(empty organisation, double clicks, reload, live freshness, a session ended elsewhere).

Against the embedded local stack (real PostgREST, real RLS); the gateway's faults play the
outage (a 502 from the gateway is what a stopped PostgREST gives) and the hang.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from contactsync_kit import ManualClock, SyncErrorKind, SyncFailure, SyncSuccess
from contactsync_kit.devstack import DevStack, SeededUser, SeedResult
from contactsync_kit.diagnostics import OrgFacts, name_differences, verdict
from contactsync_kit.errors import SessionEndedError, SessionEndReason
from contactsync_kit.results import SyncError
from contactsync_kit.staleness import format_age
from contactsync_kit.widgets import ContactSyncApp, LoginModel, LoginPanel, table
from contactsync_kit.widgets.static import static_html

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UNEXPECTED = "for a reason the console did not expect"


@pytest.fixture(scope="session")
def world(stack: DevStack) -> SeedResult:
    return stack.seed(organisations=3, chapters_per_org=2, contacts_per_org=[30, 20, 10], seed=1818)


@pytest.fixture
def user(world: SeedResult) -> SeededUser:
    return world.user("multi-org")


@pytest.fixture
async def app(stack: DevStack, user: SeededUser, tmp_path: Path) -> AsyncIterator[ContactSyncApp]:
    app = ContactSyncApp.for_stack(
        stack,
        email=user.email,
        password=user.password,
        clock=ManualClock(datetime.now(UTC)),
        cache_path=tmp_path / "cache.sqlite3",
        auto_refresh=False,
        probe_interval_s=0.05,
    )
    app.widget  # noqa: B018 -- build the views, as displaying the app does
    yield app
    stack.faults.reset()
    await app.wait()
    if app.login.session is not None:
        await app.login.sign_out()
    app.close()


def org_wide(world: SeedResult, user: SeededUser) -> tuple[str, str]:
    org = next(m.organisation_id for m in user.memberships if m.chapter_id is None)
    return org, world.organisation_names[org]


async def synced(app: ContactSyncApp, org: str) -> SyncSuccess:
    assert await app.sign_in()
    app.organisation.select(org)
    result = await app.run_sync()
    assert isinstance(result, SyncSuccess), result
    return result


async def until(app: ContactSyncApp, condition: object, limit_s: float = 20.0) -> None:
    """Wait (a limit for hangs, not a speed target) until `condition()` holds."""
    for _ in range(int(limit_s / 0.05)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


def everything(app: ContactSyncApp) -> str:
    return static_html(app.widget)


# -- the verdict: an outage is not a failing sync ------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code"), [("network", None), ("timeout", "timeout"), ("remote", "502")]
)
def test_a_silent_server_is_its_own_verdict_never_blamed_on_the_sync(
    kind: str, code: str | None
) -> None:
    facts = OrgFacts(
        organisation_id="o",
        last_synced_at=NOW - timedelta(hours=2),
        last_attempt_outcome="success",
        server_error_kind=kind,
        server_error_code=code,
        local_counts={"contacts": 24},
    )
    found = verdict(facts, now=NOW)
    assert found.verdict == "unreachable"
    assert "the server does not answer" in found.summary
    assert "copy from 2 h 0 min ago" in found.summary
    assert "did not work" not in found.summary and "last sync" not in found.summary
    for advice in ("delete", "clear", "sign out"):
        assert advice not in found.action.replace("nothing needs deleting", "")


def test_a_gateway_answering_503_is_an_answer_not_an_outage() -> None:
    facts = OrgFacts(
        organisation_id="o",
        last_synced_at=NOW,
        server_error_kind="remote",
        server_error_code="503",
    )
    assert verdict(facts, now=NOW).verdict == "failing"


def test_differing_rows_are_named_from_the_cache_and_the_server() -> None:
    differences = pl.DataFrame(
        {
            "organisation_id": ["o", "o", "o"],
            "table": ["contacts", "contacts", "notes"],
            "id": ["c1", "c2", "n1"],
            "status": ["gone_from_server", "newer_on_server", "gone_from_server"],
        }
    )
    contacts = pl.DataFrame({"id": ["c1", "c2"], "full_name": ["Ada", "Bo"]})
    children = pl.DataFrame({"id": ["n1"], "contact_id": ["c1"]})
    named = name_differences(differences, contacts, children, {"c2": "Bo Renamed"})
    rows = {r["id"]: r for r in named.iter_rows(named=True)}
    assert rows["c1"]["contact"] == "Ada" and rows["c1"]["row"] == "contact"
    assert rows["c1"]["difference"].startswith("extra here")
    assert rows["c2"]["name_on_server"] == "Bo Renamed"
    assert rows["n1"]["contact"] == "Ada" and rows["n1"]["row"] == "note"


def test_ages_past_two_weeks_read_in_weeks_and_years() -> None:
    assert format_age(20 * 86400) == "2 weeks"
    assert format_age(701 * 86400 + 8 * 3600) == "1 year 48 weeks"


def test_notebook_tables_are_plain_html_with_every_value() -> None:
    html = table(pl.DataFrame({"full_name": ["Ada"], "n": [3]}))._repr_html_()
    assert "<td" in html and "Ada" in html and "widget" not in html


def test_the_demo_login_is_shown_in_demo_mode_only() -> None:
    plain = LoginPanel(LoginModel(url="http://x", key="sb_publishable_x"))
    assert plain.demo.value == ""
    model = LoginModel(url="http://x", key="sb_publishable_x")
    model.demo_login = "sign in as demo@example.org with the password pw"
    panel = LoginPanel(model)
    assert "demo@example.org" in panel.demo.value and "pw" in panel.demo.value


# -- offline first -----------------------------------------------------------------------------


async def test_with_the_server_silent_the_console_works_from_the_cache_and_refreshes_when_back(
    app: ContactSyncApp, stack: DevStack, world: SeedResult, user: SeededUser
) -> None:
    org, name = org_wide(world, user)
    await synced(app, org)
    other = next(oid for _, oid in app.organisation.organisations if oid != org)
    app.auto_refresh.enabled = True
    await app.wait()
    before = len(stack.request_log.rest())
    stack.faults.respond(502, {"message": "An invalid response was received from the upstream"})

    await app.organisation.refresh()
    assert app.organisation.from_cache and app.organisation.organisation_id == org
    assert app.organisation.names[org] == name, "named as the server last named it"
    assert other not in app.organisation.names, "only what this computer holds"
    assert "sign out" not in app.organisation.status
    diagnosis = await app.diagnostics.diagnose()
    assert diagnosis is not None
    assert app.diagnostics.rows[0]["verdict"] == "unreachable"
    assert app.diagnostics.rows[0]["differences"] is None, "unknown, not 0"
    assert "not syncing" not in app.diagnostics.status
    assert app.server.offline and "The server does not answer" in app.outage_sentence()
    # The reload and the probes (the gateway's 502), no diagnosis requests behind them.
    assert {r.path for r in stack.request_log.rest()[before:]} == {"/organisations"}
    await app.data.refresh()
    app.data.search = name.split()[0][:2]
    assert app.data.counts["contacts"] >= 0 and "cached contacts" in app.data.status
    assert "Freshness · offline" in app.tabs.titles[3] or "offline" in app.tabs.titles[3]

    stack.faults.reset()
    await until(app, lambda: "because the server answers again" in app.auto_refresh.status)
    await app.wait()
    assert not app.server.offline and not app.organisation.from_cache
    assert app.outage_sentence() == ""
    assert UNEXPECTED not in everything(app)


async def test_a_failed_sync_during_an_outage_keeps_the_cache_and_says_so(
    app: ContactSyncApp, stack: DevStack, world: SeedResult, user: SeededUser
) -> None:
    org, _ = org_wide(world, user)
    await synced(app, org)
    stack.faults.respond(502, {"message": "upstream down"})
    result = await app.run_sync()
    assert isinstance(result, SyncFailure)
    assert "The server does not answer" in app.sync.readout
    assert app.sync.tone == "warn" and "copy is kept" in app.sync.status
    assert app.server.offline
    assert app.clearing.counts["contacts"] == 30


# -- long work -------------------------------------------------------------------------------


async def test_a_hung_sync_shows_elapsed_time_and_cancel_leaves_the_cache(
    app: ContactSyncApp, stack: DevStack, world: SeedResult, user: SeededUser
) -> None:
    org, _ = org_wide(world, user)
    await synced(app, org)
    synced_at = app.session.cache.last_synced_at(org) if app.session else None
    stack.faults.latency_s = 8.0
    app.sync.request()
    await until(app, lambda: app.sync.working and app.sync.elapsed not in ("", "0 s"), 30)
    assert not app.panels.sync.cancel_button.layout.display
    assert app.sync.cancel()
    await app.wait()
    stack.faults.latency_s = 0.0
    assert "cancelled; the cache is as it was" in app.sync.status
    assert app.panels.sync.cancel_button.layout.display == "none"
    assert app.session is not None and app.session.cache.last_synced_at(org) == synced_at
    assert "Sync · cancelled" in app.tabs.titles


async def test_a_slow_diagnosis_can_be_cancelled(
    app: ContactSyncApp, stack: DevStack, world: SeedResult, user: SeededUser
) -> None:
    org, _ = org_wide(world, user)
    await synced(app, org)
    stack.faults.latency_s = 1.0  # the probe answers in time; the comparison is slow
    app.diagnostics.request()
    await until(app, lambda: "Comparing" in app.diagnostics.status, 30)
    assert app.diagnostics.working and app.diagnostics.cancel()
    await app.wait()
    stack.faults.latency_s = 0.0
    assert app.diagnostics.status == "Diagnosis cancelled; the cache is as it was."
    assert not app.diagnostics.busy and app.diagnostics.rows == []


# -- diagnosis that names rows ------------------------------------------------------------------


async def test_diagnose_names_a_deleted_and_a_renamed_contact_and_links_to_them(
    app: ContactSyncApp, stack: DevStack, world: SeedResult, user: SeededUser
) -> None:
    org, _ = org_wide(world, user)
    await synced(app, org)
    [(gone, gone_name)] = stack.sql(
        "DELETE FROM contacts WHERE id = (SELECT id FROM contacts WHERE organisation_id = %s "
        "ORDER BY id LIMIT 1) RETURNING id::text, full_name",
        org,
    )
    [(renamed, old)] = stack.sql(
        "UPDATE contacts SET full_name = full_name || ' II' WHERE id = (SELECT id FROM contacts "
        "WHERE organisation_id = %s ORDER BY id DESC LIMIT 1) RETURNING id::text, "
        "left(full_name, -3)",
        org,
    )
    try:
        await app.diagnostics.diagnose()
        rows = {(r["table"], r["id"]): r for r in app.diagnostics.differing}
        assert rows["contacts", gone]["contact"] == gone_name
        assert rows["contacts", gone]["status"] == "gone_from_server"
        assert rows["contacts", renamed]["contact"] == old
        assert rows["contacts", renamed]["name_on_server"] == f"{old} II"
        assert {r["row"] for r in app.diagnostics.differing} >= {"contact", "note"}
        verdicts = app.panels.diagnostics.table.value
        assert "contacts 30 / 29 <span" in verdicts and "(1 extra, 1 newer)" in verdicts
        assert "the server changed since the last sync (server_changed)" in verdicts
        app.diagnostics.show_rows([renamed], old)
        await app.wait()
        assert app.tabs.selected_index == 5 and app.data.counts["contacts"] == 1
        assert "newer on the server" in app.panels.data.grids.value
    finally:
        stack.sql("UPDATE contacts SET full_name = %s WHERE id = %s", old, renamed)


# -- one honest state ------------------------------------------------------------------------


async def test_an_empty_organisation_reads_synced_0_contacts_everywhere(
    app: ContactSyncApp, stack: DevStack, user: SeededUser
) -> None:
    [(empty,)] = stack.sql(
        "INSERT INTO organisations (name) VALUES (%s) RETURNING id::text",
        f"Empty {uuid.uuid4().hex[:6]}",
    )
    stack.add_membership(user.user_id, empty)
    try:
        result = await synced(app, empty)
        assert result.items_synced == 0
        assert "0 contacts" in app.sync.status and "synced" in app.data.status
        assert "Nothing of" not in app.data.status
        assert any(r["organisation_id"] == empty for r in app.freshness.rows)
    finally:
        stack.remove_membership(user.user_id, empty)


async def test_yes_delete_twice_deletes_once_and_reports_the_real_count(
    app: ContactSyncApp, world: SeedResult, user: SeededUser
) -> None:
    org, _ = org_wide(world, user)
    result = await synced(app, org)
    panel = app.panels.clearing
    panel.clear_button.click()
    panel.confirm_button.click()
    panel.confirm_button.click()
    await app.wait()
    n = result.items_synced
    assert app.clearing.removed["contacts"] == n > 0
    assert f"removed {n} contacts" in app.clearing.status


async def test_reload_keeps_the_chosen_organisation(
    app: ContactSyncApp, world: SeedResult, user: SeededUser
) -> None:
    assert await app.sign_in()
    second = app.organisation.organisations[-1][1]
    app.panels.organisation.dropdown.value = second
    app.panels.organisation.reload_button.click()
    await app.wait()
    assert app.organisation.organisation_id == second
    assert app.panels.organisation.dropdown.value == second


async def test_freshness_is_live_and_a_lowered_threshold_refreshes(
    app: ContactSyncApp, world: SeedResult, user: SeededUser
) -> None:
    org, name = org_wide(world, user)
    await synced(app, org)
    clock = app.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(minutes=3))
    app.freshness.tick()
    assert app.freshness.rows[0]["age"] == "3 min"
    app.auto_refresh.enabled = True
    app.freshness.threshold_hours = 0.01
    await app.wait()
    assert f"Refreshed {name} automatically" in app.auto_refresh.status
    assert "old" in app.auto_refresh.status


async def test_a_session_ended_elsewhere_signs_the_console_out_from_any_step(
    app: ContactSyncApp, world: SeedResult, user: SeededUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _ = org_wide(world, user)
    await synced(app, org)
    session = app.session
    assert session is not None

    def ended(*_args: object, **_kwargs: object) -> object:
        raise SessionEndedError(SessionEndReason.SIGNED_OUT_ELSEWHERE)

    monkeypatch.setattr(session.cache, "overview", ended)
    app.panels.freshness.refresh_button.click()
    await app.wait()
    assert app.login.session is None
    assert app.signed_out_reason == SessionEndReason.SIGNED_OUT_ELSEWHERE.message.rstrip(".")
    assert "signed out in another window" in app.banner.value
    assert UNEXPECTED not in everything(app)


async def test_a_signed_out_sync_turns_into_the_signed_out_state(
    app: ContactSyncApp, world: SeedResult, user: SeededUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _ = org_wide(world, user)
    await synced(app, org)
    session = app.session
    assert session is not None

    async def signed_out(org_id: str, **_kwargs: object) -> SyncFailure:
        return SyncFailure(
            organisation_id=org_id,
            error=SyncError(SyncErrorKind.SIGNED_OUT, "another person signed in on this computer"),
        )

    monkeypatch.setattr(session.repository, "sync_contacts_for_organisation", signed_out)
    await app.run_sync()
    assert app.login.session is None and "another person signed in" in app.login.status
    assert UNEXPECTED not in everything(app)
