"""The widget panels driven like a support person would (clicks) and like a notebook would
(awaiting the models), against the embedded local stack: real PostgREST, real RLS."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import contactsync_kit.widgets.freshness as freshness_panel
from contactsync_kit import ContactCache, ManualClock, SyncErrorKind, SyncSuccess
from contactsync_kit.advice import advise
from contactsync_kit.devstack import DevStack, SeededUser, SeedResult
from contactsync_kit.widgets import ContactSyncApp, LoginModel, LoginPanel

pytestmark = pytest.mark.integration

ERROR_RED = "#b42318"


@pytest.fixture(scope="session")
def widget_stack(stack: DevStack) -> DevStack:
    """The session's shared local stack (tests/conftest.py), under the panels' own seed."""
    return stack


@pytest.fixture(scope="session")
def world(widget_stack: DevStack) -> SeedResult:
    """Three organisations x two chapters; the "multi-org" user belongs to the first two."""
    return widget_stack.seed(
        organisations=3,
        chapters_per_org=2,
        users_per_org=3,
        contacts_per_org=[60, 40, 20],
        seed=404,
    )


@pytest.fixture
def now_clock() -> ManualClock:
    # Starts at the real time: the stack's tokens expire an hour after the real now.
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def multi_org(world: SeedResult) -> SeededUser:
    return world.user("multi-org")


@pytest.fixture
async def app(
    widget_stack: DevStack, multi_org: SeededUser, now_clock: ManualClock, tmp_path: Path
) -> AsyncIterator[ContactSyncApp]:
    app = ContactSyncApp.for_stack(
        widget_stack,
        email=multi_org.email,
        password=multi_org.password,
        clock=now_clock,
        cache_path=tmp_path / "cache.sqlite3",
        page_size=25,
        auto_refresh=False,
    )
    app.widget  # noqa: B018 -- build the views, as displaying the app does
    yield app
    await app.wait()
    if app.login.session is not None:
        await app.login.sign_out()
    app.close()


async def click(app: ContactSyncApp, button: Any) -> None:
    button.click()
    await app.wait()


def org_wide_org(world: SeedResult, user: SeededUser) -> tuple[str, str]:
    """(id, name) of an organisation `user` sees whole (not bound to a chapter)."""
    org_id = next(m.organisation_id for m in user.memberships if m.chapter_id is None)
    return org_id, world.organisation_names[org_id]


def server_count(stack: DevStack, table: str, org_id: str) -> int:
    return int(
        stack.sql(f"SELECT count(*) FROM public.{table} WHERE organisation_id = %s", org_id)[0][0]
    )


async def signed_in_and_synced(app: ContactSyncApp, org_id: str) -> SyncSuccess:
    assert await app.sign_in()
    app.organisation.select(org_id)
    result = await app.run_sync()
    assert isinstance(result, SyncSuccess), result
    return result


# -- login ----------------------------------------------------------------------------------


async def test_sign_in_click_shows_who_and_how_long_the_token_lasts(
    app: ContactSyncApp,
    multi_org: SeededUser,
) -> None:
    panel = app.panels.login
    assert panel.sign_out_button.disabled  # nobody signed in yet
    await click(app, panel.sign_in_button)

    assert app.login.session is not None
    assert app.login.user == multi_org.email
    assert app.login.tone == "ok"
    assert "valid for" in app.login.token_text and "UTC" in app.login.token_text
    assert multi_org.email in panel.who.value and "valid for" in panel.who.value
    assert panel.sign_in_button.disabled and not panel.sign_out_button.disabled
    assert panel.email.disabled and panel.password.disabled
    assert app.login.password == "", "the password is not kept after use"


async def test_wrong_password_shows_the_reason_in_red_and_stays_signed_out(
    app: ContactSyncApp,
) -> None:
    app.login.password = "not the password"
    await click(app, app.panels.login.sign_in_button)

    assert app.login.session is None
    assert app.login.tone == "error"
    assert "The email or password is not right" in app.login.status
    assert ERROR_RED in app.panels.login.status.value
    assert "Traceback" not in app.panels.login.status.value
    assert not app.panels.login.sign_in_button.disabled, "the user can try again"


async def test_service_role_key_is_refused_visibly_before_any_request(
    app: ContactSyncApp,
    widget_stack: DevStack,
) -> None:
    app.login.key = widget_stack.service_role_key
    panel = app.panels.login
    assert "service-role" in app.login.key_problem
    assert "service-role" in panel.key_warning.value and ERROR_RED in panel.key_warning.value
    assert panel.sign_in_button.disabled

    assert await app.login.sign_in() is False  # the awaitable path refuses it too
    assert app.login.session is None
    assert "service-role" in app.login.status and app.login.tone == "error"

    app.login.key = widget_stack.anon_key
    assert app.login.key_problem == "" and not panel.sign_in_button.disabled


async def test_unreachable_server_is_a_message_not_a_traceback(app: ContactSyncApp) -> None:
    app.login.url = "http://127.0.0.1:9"  # discard port: nothing listens
    assert await app.login.sign_in() is False
    assert app.login.tone == "error"
    assert app.login.status.startswith("Cannot reach the server at http://127.0.0.1:9")
    assert "network" in app.login.status and "kernel log" not in app.login.status


async def test_a_key_the_server_does_not_know_reads_as_a_project_key_problem(
    app: ContactSyncApp,
) -> None:
    import jwt

    # An anon key in the right shape, signed by another project: the gateway answers 401
    # "Invalid API key", which `session.sign_in` translates to `ProjectRefusedError`.
    app.login.key = jwt.encode(
        {"role": "anon", "exp": int(time.time()) + 3600},
        "a-secret-that-is-not-this-stacks-0123456789",
        algorithm="HS256",
    )
    assert app.login.key_problem == ""
    assert await app.login.sign_in() is False
    assert app.login.tone == "error" and app.login.session is None
    assert app.login.status.startswith("The server did not accept the project key")


async def test_missing_fields_are_named(app: ContactSyncApp) -> None:
    app.login.email = ""
    assert await app.login.sign_in() is False
    assert "email" in app.login.status


# -- a cache file that stops sign-in ------------------------------------------------------------


def _newer_cache(path: Path) -> None:
    ContactCache.open(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 99")
    raw.close()


def _garbled_cache(path: Path) -> None:
    ContactCache.open(path).close()
    data = bytearray(path.read_bytes())
    data[100:] = bytes(i % 251 for i in range(len(data) - 100))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("make", "says"), [(_newer_cache, "newer"), (_garbled_cache, "damaged")])
async def test_a_bad_cache_is_explained_and_the_reset_button_clears_the_way(
    app: ContactSyncApp,
    tmp_path: Path,
    make: Any,
    says: str,
) -> None:
    path = tmp_path / "cache.sqlite3"
    make(path)
    panel = app.panels.login
    assert panel.reset_box.layout.display == "none"
    await click(app, panel.sign_in_button)

    assert app.login.session is None and app.login.tone == "error"
    assert app.login.status.startswith("This computer's cache file cannot be used")
    assert says in app.login.status and "Technical" not in app.login.status
    assert "Reset the cache file" in app.login.status
    assert app.login.cache_problem == str(path)
    assert panel.reset_box.layout.display == ""
    assert "erases the copy of the contacts" in panel.reset_box.children[0].value

    await click(app, panel.reset_button)
    assert not path.exists()
    assert app.login.tone == "ok" and "erased" in app.login.status
    assert app.login.cache_problem == "" and panel.reset_box.layout.display == "none"
    assert app.login.session is None, "signing in again is the person's step"

    await click(app, panel.sign_in_button)
    assert app.login.session is not None and app.login.tone == "ok"


async def test_a_file_that_is_not_the_kits_is_explained_and_never_offered_for_reset(
    app: ContactSyncApp,
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache.sqlite3"
    path.write_text("name,phone\nsomeone's own notes, not a cache\n")
    before = path.read_bytes()
    await click(app, app.panels.login.sign_in_button)

    assert app.login.session is None and app.login.tone == "error"
    assert "not a contactsync cache" in app.login.status
    assert app.login.cache_problem == ""
    assert app.panels.login.reset_box.layout.display == "none"
    assert await app.login.reset_cache() is None
    assert path.read_bytes() == before


async def test_a_reset_refused_for_a_file_swapped_in_meanwhile_says_so(
    app: ContactSyncApp,
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache.sqlite3"
    _newer_cache(path)
    await click(app, app.panels.login.sign_in_button)
    assert app.login.cache_problem == str(path)
    path.write_text("someone put their own file here in the meantime\n")

    await click(app, app.panels.login.reset_button)
    assert app.login.tone == "error" and "left untouched" in app.login.status
    assert path.read_text() == "someone put their own file here in the meantime\n"
    assert app.panels.login.reset_box.layout.display == "none"


# -- organisation -----------------------------------------------------------------------------


async def test_dropdown_lists_exactly_the_users_organisations_by_name(
    app: ContactSyncApp,
    widget_stack: DevStack,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    await click(app, app.panels.login.sign_in_button)

    truth = {
        row[0]: row[1]
        for row in widget_stack.sql(
            "SELECT o.id::text, o.name FROM public.organisations o "
            "JOIN public.organisation_members m ON m.organisation_id = o.id "
            "WHERE m.user_id = %s",
            multi_org.user_id,
        )
    }
    assert len(truth) == 2 < len(world.organisations), "a user in some organisations, not all"
    dropdown = app.panels.organisation.dropdown
    assert dict((value, label) for label, value in dropdown.options) == truth
    assert [label for label, _ in dropdown.options] == sorted(truth.values(), key=str.casefold)
    assert dropdown.value == app.organisation.organisation_id == dropdown.options[0][1]
    assert not dropdown.disabled
    assert app.organisation.organisation_id in app.panels.organisation.id_line.value

    other = dropdown.options[1][1]
    dropdown.value = other  # the user picks the other one
    assert app.organisation.organisation_id == app.sync.organisation_id == other
    assert app.sync.organisation_name == truth[other]


async def test_a_user_of_one_organisation_sees_only_it(
    app: ContactSyncApp,
    world: SeedResult,
) -> None:
    volunteer = world.user("org3-volunteer")
    assert await app.sign_in(volunteer.email, volunteer.password)
    assert [oid for _, oid in app.organisation.organisations] == volunteer.organisation_ids


async def test_listing_failure_shows_in_the_panel(
    widget_stack: DevStack,
    multi_org: SeededUser,
    tmp_path: Path,
) -> None:
    async def broken(_session: object) -> list[dict[str, Any]]:
        raise RuntimeError("boom")

    app = ContactSyncApp.for_stack(
        widget_stack,
        email=multi_org.email,
        password=multi_org.password,
        cache_path=tmp_path / "c.sqlite3",
        organisation_lister=broken,
    )
    app.widget  # noqa: B018
    assert await app.sign_in()
    assert app.organisation.tone == "error"
    assert "did not work" in app.organisation.status
    assert "export the support bundle" in app.organisation.status
    assert "(Technical: RuntimeError: boom)" in app.organisation.status
    assert "kernel log" not in app.organisation.status
    assert ERROR_RED in app.panels.organisation.status.value
    await app.sign_out()


# -- sync ---------------------------------------------------------------------------------------


async def test_sync_click_fills_the_readout_with_counts_and_split_timings(
    app: ContactSyncApp,
    widget_stack: DevStack,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, name = org_wide_org(world, multi_org)
    await click(app, app.panels.login.sign_in_button)
    app.organisation.select(name)
    seen: list[float] = []
    texts: list[str] = []
    app.sync.observe(lambda c: seen.append(c["new"]), names="progress")
    app.sync.observe(lambda c: texts.append(c["new"]), names="progress_text")

    await click(app, app.panels.sync.sync_button)

    result = app.sync.result
    contacts = server_count(widget_stack, "contacts", org_id)
    assert isinstance(result, SyncSuccess)
    assert result.items_synced == contacts == 60
    readout = app.sync.readout
    assert f"{contacts} contacts" in readout
    assert f"{server_count(widget_stack, 'notes', org_id)} notes" in readout
    assert f"{server_count(widget_stack, 'contact_assignments', org_id)} assignments" in readout
    t = result.timings
    assert "fetch" not in readout, "the split is technical detail"
    html = app.panels.sync.readout.value
    main, details = html.split("<details", 1)
    assert f"{contacts} contacts" in main and "synced" in main and "fetch" not in main
    assert f"{result.duration_ms:,} ms" in details
    assert f"fetch {t.fetch_ms:,} ms · map {t.map_ms:,} ms · write {t.write_ms:,} ms" in details
    # The bar moved per page (25 a page: 3 pages) and per table, and ended full.
    assert [s for s in texts if s.startswith("Fetching")] == [
        "Fetching: page 1, 25 of 60 contacts",
        "Fetching: page 2, 50 of 60 contacts",
        "Fetching: page 3, 60 of 60 contacts",
    ]
    assert sum(1 for s in texts if s.startswith("Writing the cache")) == 3
    assert seen == sorted(seen) and 0 < seen[0] < 0.8 and seen[-1] == 1.0
    assert app.panels.sync.bar.bar_style == "success"
    assert app.clearing.counts["contacts"] == contacts, "the cache panel refreshed itself"


async def test_button_is_disabled_while_syncing_and_a_second_click_starts_nothing(
    app: ContactSyncApp,
    widget_stack: DevStack,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    await click(app, app.panels.login.sign_in_button)
    app.organisation.select(org_id)
    button = app.panels.sync.sync_button
    widget_stack.faults.latency_s = 0.2  # each page takes a while
    before = len(widget_stack.request_log.rest())

    button.click()
    assert app.sync.running and button.disabled and button.description == "Syncing…"
    button.click()  # a disabled button in a browser cannot fire; a programmatic click can
    assert "already in progress" in app.sync.notice
    assert "already in progress" in app.panels.sync.notice.value
    second = await app.sync.run()  # the awaitable path says the same, at once
    assert second is not None and second.error is not None
    assert second.error.kind is SyncErrorKind.IN_PROGRESS
    assert app.sync.running

    await app.wait()
    assert not app.sync.running and not button.disabled
    assert isinstance(app.sync.result, SyncSuccess)
    assert app.sync.notice == ""
    rest = widget_stack.request_log.rest()[before:]
    assert len([r for r in rest if r.path == "/contacts"]) == 3, "one sync of three pages"


async def test_a_failed_sync_explains_itself_and_keeps_the_cache(
    app: ContactSyncApp,
    widget_stack: DevStack,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    widget_stack.faults.respond(503, {"message": "maintenance"})

    result = await app.run_sync()

    assert result is not None and result.error is not None
    assert result.error.kind is SyncErrorKind.REMOTE
    assert app.sync.tone == "error"
    assert "did not work" in app.sync.readout and "Nothing was changed" in app.sync.readout
    assert advise(SyncErrorKind.REMOTE).sentence in app.sync.readout
    html = app.panels.sync.readout.value
    assert "did not work" in html and "remote" in html.split("<details", 1)[1]
    assert app.panels.sync.bar.bar_style == "danger"
    assert app.clearing.counts["contacts"] == 60, "the cache kept its previous content"


# -- staleness --------------------------------------------------------------------------------


async def test_staleness_banner_appears_once_the_clock_passes_24_hours(
    app: ContactSyncApp,
    now_clock: ManualClock,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, name = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    panel = app.panels.freshness
    assert app.freshness.banner == "" and app.freshness.stale_count == 0
    assert "synced within 24 h" in app.freshness.summary
    [row] = app.freshness.rows
    assert (row["label"], row["contacts"], row["stale"]) == (name, 60, False)
    assert app.freshness.chart.startswith(b"\x89PNG")

    now_clock.advance(timedelta(hours=25))
    await click(app, panel.refresh_button)

    assert app.freshness.stale_count == 1
    assert f"older than 24 h: {name} (1 d 1 h)" in app.freshness.banner
    assert "fa-exclamation-triangle" in panel.banner.value and "stale" in panel.table.value
    assert panel.image.layout.display != "none"
    assert bytes(panel.image.value).startswith(b"\x89PNG")

    panel.threshold.value = 48  # a support person relaxes the rule
    await app.wait()
    assert app.freshness.banner == "" and app.freshness.stale_count == 0


async def test_a_slow_early_chart_never_replaces_a_newer_one(
    app: ContactSyncApp,
    world: SeedResult,
    multi_org: SeededUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = freshness_panel.age_chart_png  # type: ignore[attr-defined]  # patched where used
    drawing_empty = threading.Event()

    def slow_when_empty(report: pl.DataFrame, hours: float) -> bytes:
        if report.height == 0:
            drawing_empty.set()
            time.sleep(0.5)  # the first drawing in a kernel also imports matplotlib
        return real(report, hours)

    monkeypatch.setattr(freshness_panel, "age_chart_png", slow_when_empty)
    org_id, _ = org_wide_org(world, multi_org)
    assert await app.login.sign_in()  # schedules reading and drawing the (empty) cache
    assert await asyncio.to_thread(drawing_empty.wait, 10)
    await app.organisation.wait()
    app.organisation.select(org_id)
    assert (await app.sync.run()) is not None  # the synced cache is drawn while that one runs

    await app.wait()
    assert "of 1 cached organisation;" in app.freshness.chart_caption
    assert "1 cached organisation" in app.panels.freshness.caption.value


async def test_a_non_positive_threshold_is_refused_in_words(app: ContactSyncApp) -> None:
    app.panels.freshness.threshold.value = 0
    assert app.freshness.threshold_hours == 24 == app.panels.freshness.threshold.value
    assert app.freshness.tone == "error" and "more than 0 hours" in app.freshness.status


# -- clearing ---------------------------------------------------------------------------------


async def test_clear_asks_for_confirmation_then_the_counts_are_zero(
    app: ContactSyncApp,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    result = await signed_in_and_synced(app, org_id)
    panel = app.panels.clearing
    assert app.clearing.counts == {
        "contacts": 60,
        "notes": result.notes_synced,
        "contact_assignments": result.assignments_synced,
    }
    assert "60 contacts" in panel.summary.value
    assert panel.confirm_box.layout.display == "none"

    await click(app, panel.clear_button)
    assert app.clearing.confirming and panel.confirm_box.layout.display == ""
    assert "Delete 60 contacts" in app.clearing.status
    assert "the sync log (1 sync log entry)" in app.clearing.status
    assert "export the support bundle first" in app.clearing.status
    assert app.clearing.counts["contacts"] == 60, "asking deletes nothing"
    await click(app, panel.cancel_button)
    assert not app.clearing.confirming and app.clearing.counts["contacts"] == 60

    await click(app, panel.clear_button)
    await click(app, panel.confirm_button)

    assert app.clearing.counts == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    assert app.clearing.removed["contacts"] == 60
    assert "Cleared: removed 60 contacts" in app.clearing.status
    assert app.freshness.rows == [], "the freshness panel saw the wipe"
    assert (
        app.login.session is not None
        and app.login.session.repository.last_synced_at(org_id) is None
    )


async def test_clear_without_confirm_only_asks(app: ContactSyncApp) -> None:
    assert await app.sign_in()
    assert await app.clearing.clear() is None
    assert app.clearing.confirming


# -- sign out ---------------------------------------------------------------------------------


async def test_sign_out_wipes_the_cache_and_resets_the_panels(
    app: ContactSyncApp,
    world: SeedResult,
    multi_org: SeededUser,
    tmp_path: Path,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)

    await click(app, app.panels.login.sign_out_button)

    assert app.login.session is None
    assert "This computer's copy of the contacts was deleted: 60 contacts" in app.login.status
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    try:
        assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
        assert cache.overview().height == 0
    finally:
        cache.close()
    assert app.organisation.organisations == [] and app.sync.result is None
    assert app.panels.sync.sync_button.disabled
    assert app.freshness.rows == [] and app.clearing.counts == {}
    assert not app.panels.login.sign_in_button.disabled


async def test_signing_out_during_a_sync_cancels_it_and_leaves_nothing_behind(
    app: ContactSyncApp,
    widget_stack: DevStack,
    world: SeedResult,
    multi_org: SeededUser,
    tmp_path: Path,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    assert await app.sign_in()
    app.organisation.select(org_id)
    widget_stack.faults.latency_s = 0.3
    app.panels.sync.sync_button.click()
    await asyncio.sleep(0.1)  # the first page is on its way

    await app.sign_out()

    assert not app.sync.running and app.sync.result is None and app.sync.readout == ""
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    try:
        assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    finally:
        cache.close()


# -- on their own -------------------------------------------------------------------------------


async def test_a_panel_works_on_its_own(
    widget_stack: DevStack, multi_org: SeededUser, tmp_path: Path
) -> None:
    model = LoginModel(
        url=widget_stack.url,
        key=widget_stack.anon_key,
        email=multi_org.email,
        password=multi_org.password,
        cache_path=tmp_path / "c.sqlite3",
    )
    panel = LoginPanel(model)
    panel.sign_in_button.click()
    await model.wait()
    assert model.user == multi_org.email
    assert await model.sign_out() is not None
    model.close()


def test_importing_the_widgets_builds_nothing() -> None:
    code = (
        "import sys, contactsync_kit.widgets\n"
        "from ipywidgets.widgets.widget import _instances\n"
        "print(len(_instances), 'matplotlib' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["0", "False"]


def test_the_console_app_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_URL", "https://example.supabase.co")
    monkeypatch.setenv("SUPABASE_ANON_KEY", "sb_publishable_abc")
    monkeypatch.setenv("CONTACTSYNC_DEMO", "1")  # ignored: a real project is named
    app = ContactSyncApp.for_console()
    assert (app.login.url, app.login.key) == ("https://example.supabase.co", "sb_publishable_abc")


async def test_the_console_demo_runs_on_its_own_seeded_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.setenv("CONTACTSYNC_DEMO", "1")
    app = ContactSyncApp.for_console()
    assert app.login.url.startswith("http://127.0.0.1:") and app.login.email
    assert await app.sign_in()
    result = await app.run_sync()
    assert result is not None and result.ok and result.items_synced > 0
    await app.sign_out()
    app.close()  # stops the demo stack too


# -- the console: one truth across the steps --------------------------------------------------


async def test_every_step_shows_every_synced_table_of_the_spec(
    app: ContactSyncApp, world: SeedResult, multi_org: SeededUser, widget_stack: DevStack
) -> None:
    from contactsync_kit.schemas import DATA_TABLES, SYNCED_TABLES
    from contactsync_kit.widgets.table_words import css_class

    org_id, _ = org_wide_org(world, multi_org)
    result = await signed_in_and_synced(app, org_id)
    panels = app.panels
    await click(app, panels.diagnostics.diagnose_button)
    on_server = {t: server_count(widget_stack, t, org_id) for t in DATA_TABLES}
    assert dict(result.rows_synced) == on_server
    # One count, one grid, one heading per synced table, in the spec's order and words.
    assert app.data.counts == on_server and app.clearing.counts == on_server
    grids = panels.data.grids.value
    titles = [grids.index(f"<b>{spec.title}</b>") for spec in SYNCED_TABLES]
    assert titles == sorted(titles) and all(css_class(s) in grids for s in SYNCED_TABLES)
    [fresh] = [r for r in app.freshness.rows if r["organisation_id"] == org_id]
    assert {t: fresh[t] for t in DATA_TABLES} == on_server
    assert all(f"<th>{spec.title}</th>" in panels.freshness.table.value for spec in SYNCED_TABLES)
    verdicts = panels.diagnostics.table.value
    for spec in SYNCED_TABLES:
        n = on_server[spec.name]
        assert f"{spec.plural} {n:,} / {n:,}" in verdicts
        assert f"{n:,} {spec.noun if n == 1 else spec.plural}" in panels.clearing.summary.value
    assert all(spec.plural in app.sync.readout for spec in SYNCED_TABLES)


async def test_after_a_clear_every_step_shows_the_empty_cache(
    app: ContactSyncApp,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, name = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    panels = app.panels
    await click(app, panels.diagnostics.diagnose_button)
    await click(app, panels.export.prepare_button)
    panels.data.search.value = "a"  # a search left in the box must not keep a grid alive
    await app.wait()
    assert "csk-contacts" in panels.data.grids.value
    assert app.diagnostics.rows and app.export.href and app.data.counts["contacts"] == 60

    await click(app, panels.clearing.clear_button)
    await click(app, panels.clearing.confirm_button)

    assert app.sync.result is None and panels.sync.readout.value == ""
    assert "success" not in panels.sync.status.value
    assert app.freshness.rows == [] and "empty" in app.freshness.summary
    assert app.diagnostics.rows == [] and panels.diagnostics.table.value == ""
    assert panels.diagnostics.history.children == ()
    assert app.export.href == "" and panels.export.link.value == ""
    assert app.data.counts["contacts"] == 0 and f"Nothing of {name}" in app.data.status
    assert panels.data.grids.value == ""
    assert app.clearing.log_entries == 0


async def test_another_organisation_drops_what_was_found_about_the_last(
    app: ContactSyncApp,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    await app.diagnostics.diagnose()
    other = next(oid for oid in multi_org.organisation_ids if oid != org_id)

    app.organisation.select(other)
    await app.wait()

    assert app.sync.result is None and app.sync.readout == ""
    assert app.diagnostics.diagnosis is None and app.export.href == ""
    assert app.data.organisation_id == other and app.data.counts["contacts"] == 0


async def test_a_newer_success_replaces_an_older_failure(
    app: ContactSyncApp,
    widget_stack: DevStack,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    widget_stack.faults.respond(401, {"code": "PGRST301", "message": "JWT expired"}, times=1)
    failed = await app.run_sync()
    assert failed is not None and failed.error is not None
    assert "did not work" in app.panels.sync.readout.value

    assert isinstance(await app.run_sync(), SyncSuccess)

    for html in (
        app.panels.sync.readout.value,
        app.panels.sync.status.value,
        app.panels.sync.notice.value,
    ):
        assert "did not work" not in html and "401" not in html


async def test_enter_in_the_password_field_signs_in(app: ContactSyncApp) -> None:
    app.panels.login.password._handle_custom_msg({"event": "submit"}, [])
    await app.wait()
    assert app.login.session is not None and "Signed in as" in app.login.status


async def test_a_configured_project_hides_its_fields_and_a_bad_address_asks_nothing(
    widget_stack: DevStack,
    multi_org: SeededUser,
    tmp_path: Path,
) -> None:
    configured = ContactSyncApp.for_stack(widget_stack, cache_path=tmp_path / "c.sqlite3")
    assert configured.panels.login.url.layout.display == "none"
    assert configured.panels.login.email.layout.display != "none"
    calls: list[str] = []

    async def factory(url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(url)
        raise AssertionError("no request for a bad address")

    bare = ContactSyncApp(
        email=multi_org.email,
        password=multi_org.password,
        session_factory=factory,
        cache_path=tmp_path / "d.sqlite3",
    )
    assert bare.panels.login.url.layout.display != "none"
    bare.login.url, bare.login.key = "my project", widget_stack.anon_key
    assert await bare.sign_in() is False
    assert "cannot contain spaces" in bare.login.status and calls == []
    bare.login.email = ""
    bare.login.password = ""
    assert await bare.sign_in() is False
    assert bare.login.status == "Type your email address and your password, then press Sign in."
    configured.close()
    bare.close()


async def test_the_bundle_is_offered_as_a_download_without_personal_data(
    app: ContactSyncApp,
    widget_stack: DevStack,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    await click(app, app.panels.export.prepare_button)
    prefix = "data:application/json;base64,"
    assert app.export.href.startswith(prefix)
    text = base64.b64decode(app.export.href[len(prefix) :]).decode("utf-8")
    assert json.loads(text)["kind"] == "contactsync_kit support bundle"
    names = [
        n
        for (n,) in widget_stack.sql(
            "SELECT full_name FROM public.contacts WHERE organisation_id = %s", org_id
        )
    ]
    assert names and not [n for n in names if n in text]
    assert f'download="{app.export.file_name}"' in app.panels.export.link.value


async def test_clearing_can_export_first(
    app: ContactSyncApp,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    await click(app, app.panels.clearing.clear_button)
    await click(app, app.panels.clearing.export_first_button)
    assert not app.clearing.confirming and app.clearing.counts["contacts"] == 60
    assert app.export.href and app.tabs.selected_index == 6


async def test_a_stale_copy_is_refreshed_when_the_console_opens(
    app: ContactSyncApp,
    now_clock: ManualClock,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, name = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    first = app.session.repository.last_synced_at(org_id) if app.session else None
    # Old by a tiny threshold, not by a jump of the clock past the token's hour.
    app.freshness.threshold_hours = 0.0001
    now_clock.advance(timedelta(seconds=2))

    app.auto_refresh.enabled = True  # the switch, as a person flips it
    await app.wait()

    assert app.auto_refresh.tone == "ok", app.auto_refresh.status
    assert f"Refreshed {name} automatically" in app.auto_refresh.status
    assert "because it was 2 s old" in app.auto_refresh.status
    assert app.session is not None
    assert app.session.repository.last_synced_at(org_id) != first
    assert app.freshness.stale_count == 0


async def test_a_failed_refresh_says_why_keeps_the_cache_and_retries_when_back(
    widget_stack: DevStack,
    now_clock: ManualClock,
    world: SeedResult,
    multi_org: SeededUser,
    tmp_path: Path,
) -> None:
    probes: list[bool] = []

    async def probe(_session: object) -> str | None:
        probes.append(True)
        widget_stack.faults.reset()  # the network is back by the time it is probed
        return None

    app = ContactSyncApp.for_stack(
        widget_stack,
        email=multi_org.email,
        password=multi_org.password,
        clock=now_clock,
        cache_path=tmp_path / "cache.sqlite3",
        auto_refresh=False,
        prober=probe,
        probe_interval_s=0.01,
    )
    org_id, _ = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    app.freshness.threshold_hours = 0.0001
    now_clock.advance(timedelta(seconds=2))
    widget_stack.faults.cut_after_bytes = 0  # the connection drops: offline
    statuses: list[str] = []
    app.auto_refresh.observe(lambda c: statuses.append(c["new"]), names="status")

    app.auto_refresh.enabled = True
    await app.wait()
    for _ in range(500):  # the probe runs in the background, every 0.01 s
        if "Refreshed" in app.auto_refresh.status:
            break
        await asyncio.sleep(0.01)
        await app.wait()

    failed = next(s for s in statuses if "did not work" in s)
    assert "left as it was" in failed and "try again when the server answers" in failed
    assert probes, "the server was probed"
    assert "because the server answers again" in app.auto_refresh.status
    assert not app.auto_refresh.offline and app.server.state == "online"
    assert app.clearing.counts["contacts"] == 60
    await app.sign_out()
    app.close()


async def test_the_switch_turns_refreshing_off(
    app: ContactSyncApp,
    now_clock: ManualClock,
    world: SeedResult,
    multi_org: SeededUser,
) -> None:
    org_id, _ = org_wide_org(world, multi_org)
    await signed_in_and_synced(app, org_id)
    assert app.panels.auto_refresh.value is False
    app.freshness.threshold_hours = 0.0001
    now_clock.advance(timedelta(seconds=2))
    assert await app.auto_refresh.check() is False
    assert app.auto_refresh.tone != "ok"


# -- pure pieces: the table display and the settings ----------------------------------------

ORG_ID = "0c112c48-1111-4222-8333-444455556666"


def test_tables_read_as_people_read_them() -> None:
    from contactsync_kit.widgets import present

    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "organisation_id": [ORG_ID, "ffffffff-1111-4222-8333-444455556666"],
            "last_synced_at": [now - timedelta(hours=3), None],
            "cache_age_hours": [0.000022, None],
            "started_at": ["2026-11-26T11:58:00+00:00", None],
            "stale": [True, False],
        }
    )
    shown = present(frame, names={ORG_ID: "Acme"}, now=now)
    assert shown.columns == [
        "organisation",
        "organisation id",
        "last synced at",
        "cache age",
        "started at",
        "stale",
    ]
    assert shown.row(0) == (
        "Acme",
        ORG_ID,
        "3 h 0 min ago · 2026-11-26 09:00 UTC",
        "0 s",
        "2 min ago · 2026-11-26 11:58 UTC",
        "yes",
    )
    assert shown.row(1) == (
        "unknown organisation",
        "ffffffff-1111-4222-8333-444455556666",
        None,
        None,
        None,
        "no",
    )


def test_one_table_helper_gives_plain_html_with_a_csv() -> None:
    from contactsync_kit.widgets import table

    grid = table(
        pl.DataFrame({"organisation_id": [ORG_ID]}),
        names={ORG_ID: "Acme"},
        css_class="csk-x",
        file_name="orgs",
    )
    html = grid._repr_html_()
    assert not hasattr(grid, "_repr_mimebundle_"), "plain HTML: no widget to lose offline"
    assert "<td" in html and ORG_ID in html and "Acme" in html, "ids whole, never cut"
    assert "csk-x" in html and 'download="orgs.csv"' in html
    csv = base64.b64decode(html.split("data:text/csv;base64,", 1)[1].split('"', 1)[0]).decode()
    assert ORG_ID in csv and "Acme" in csv


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("xyz.supabase.co", "https://xyz.supabase.co"),
        ("https://xyz.supabase.co/", "https://xyz.supabase.co"),
        ("127.0.0.1:54321", "http://127.0.0.1:54321"),
        ("localhost:8000", "http://localhost:8000"),
    ],
)
def test_project_addresses_are_completed(typed: str, expected: str) -> None:
    from contactsync_kit.widgets import check_url

    assert check_url(typed) == expected


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "Type the project's web address"),
        ("my project", "cannot contain spaces"),
        ("ftp://x.y", "must start with https://"),
        ("supabase", "is not a web address"),
        ("https://x.y/?key=1", "without '?'"),
    ],
)
def test_bad_project_addresses_say_what_to_type(typed: str, says: str) -> None:
    from contactsync_kit.widgets import check_url
    from contactsync_kit.widgets.settings import UrlProblem

    with pytest.raises(UrlProblem, match=re.escape(says)):
        check_url(typed)


def test_settings_come_from_the_environment_else_the_settings_file(tmp_path: Path) -> None:
    from contactsync_kit.widgets import ConsoleSettings

    file = tmp_path / "settings.json"
    file.write_text(
        json.dumps(
            {"url": "https://file.example.org", "key": "sb_publishable_f", "auto_refresh": False}
        )
    )
    from_file = ConsoleSettings.load({}, file)
    assert (from_file.url, from_file.source, from_file.auto_refresh) == (
        "https://file.example.org",
        str(file),
        False,
    )
    from_env = ConsoleSettings.load(
        {"SUPABASE_URL": "https://env.example.org", "SUPABASE_ANON_KEY": "k"}, file
    )
    assert (from_env.url, from_env.source) == ("https://env.example.org", "environment")
    assert not ConsoleSettings.load({}, tmp_path / "missing.json").configured
