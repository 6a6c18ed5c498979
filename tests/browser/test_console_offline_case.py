"""A support case with the server misbehaving, in a real browser (issue 18).

Voilà serves `notebooks/app.ipynb`, Debian's headless Chromium drives it, and the test plays
the colleagues and the outages on the local stack: an empty organisation, a contact deleted
and one renamed on the server (Diagnose names both, and links to Cached data), a hung sync
(elapsed time, then Cancel: "cancelled; the cache is as it was"), PostgREST stopped mid-case
(Cached data still works by name, Diagnose says the server does not answer), and PostgREST
back (the auto-refresh runs and says so). A screenshot of each step goes to
``artifacts/browser/offline-*.png``.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from .conftest import VoilaApp
from .test_console_browser import STEP_TIMEOUT_MS, open_console, sign_in, snap, tab

pytestmark = [pytest.mark.browser, pytest.mark.integration]

#: The issue's promise: an outage is stated within 5 s of asking (the gateway answers 502 at
#: once; the probe's own limit is 3 s). A limit on a hang, generous for a loaded machine.
OUTAGE_STATED_MS = 5_000


def _case_user(app: VoilaApp) -> tuple[str, str, str, str, str]:
    """A user of their own: org-wide in the organisation no other browser test touches, and
    a member of a new, empty organisation. (email, password, org id, org name, empty id)."""
    stack, world = app.stack, app.world
    taken = {m.organisation_id for m in world.user("multi-org").memberships}
    org_id = next(o.id for o in world.organisations if o.id not in taken)
    [(empty_id,)] = stack.sql(
        "INSERT INTO public.organisations (name) VALUES ('Tom Forening (empty)') RETURNING id::text"
    )
    email = f"support-case-{uuid.uuid4().hex[:8]}@example.org"
    password = "offline-case-password"
    stack.create_user(email, password, [(org_id, None, "admin"), (empty_id, None, "volunteer")])
    return email, password, org_id, world.organisation_names[org_id], empty_id


async def pick(page: Page, name: str) -> None:
    await tab(page, "Organisation")
    await page.locator(".csk-organisation select").select_option(label=name)
    await expect(page.locator(".csk-banner")).to_contain_text(name)


async def test_a_support_case_through_an_outage(
    voila_app: VoilaApp, browser: Browser, artifacts: Path
) -> None:
    stack = voila_app.stack
    email, password, org_id, org_name, _ = _case_user(voila_app)
    [(visible,)] = stack.sql(
        "SELECT count(*) FROM public.contacts WHERE organisation_id = %s", org_id
    )
    page = await open_console(browser, voila_app.url)
    try:
        await sign_in(page, email, password)
        await expect(page.locator(".csk-login-status")).to_contain_text(
            f"Signed in as {email}", timeout=STEP_TIMEOUT_MS
        )
        await tab(page, "Organisation")
        await expect(page.locator(".csk-organisation-status")).to_contain_text(
            "You belong to 2 organisations", timeout=STEP_TIMEOUT_MS
        )

        # 1. The empty organisation: synced, 0 contacts — and every step says the same.
        await pick(page, "Tom Forening (empty)")
        await tab(page, "Sync")
        await page.locator(".csk-sync").click()
        await expect(page.locator(".csk-readout")).to_contain_text(
            "Synced Tom Forening (empty): 0 contacts", timeout=STEP_TIMEOUT_MS
        )
        await tab(page, "Cached data")
        data_status = page.locator(".csk-data-status")
        await expect(data_status).to_contain_text("0 contacts", timeout=STEP_TIMEOUT_MS)
        await expect(data_status).to_contain_text("synced")
        await expect(data_status).not_to_contain_text("Nothing of")
        await snap(page, artifacts, "offline-01-empty-organisation")

        # 2. The real organisation, synced; the reload keeps the pick.
        await pick(page, org_name)
        await tab(page, "Sync")
        await page.locator(".csk-sync").click()
        await expect(page.locator(".csk-readout")).to_contain_text(
            f"Synced {org_name}: {visible} contacts", timeout=STEP_TIMEOUT_MS
        )
        await tab(page, "Organisation")
        await page.locator(".csk-reload").click()
        await expect(page.locator(".csk-organisation-status")).to_contain_text(
            "You belong to 2 organisations", timeout=STEP_TIMEOUT_MS
        )
        await expect(page.locator(".csk-banner")).to_contain_text(org_name)

        # 3. Colleagues delete one contact and rename another: Diagnose names both.
        [(gone_id, gone_name)] = stack.sql(
            "DELETE FROM public.contacts WHERE id = (SELECT id FROM public.contacts WHERE "
            "organisation_id = %s ORDER BY id LIMIT 1) RETURNING id::text, full_name",
            org_id,
        )
        [(renamed_id, old_name)] = stack.sql(
            "SELECT id::text, full_name FROM public.contacts WHERE organisation_id = %s "
            "ORDER BY id DESC LIMIT 1",
            org_id,
        )
        new_name = f"{old_name} Renamed"
        stack.sql("UPDATE public.contacts SET full_name = %s WHERE id = %s", new_name, renamed_id)
        await tab(page, "Diagnose")
        await page.locator(".csk-diagnose").click()
        await expect(page.locator(".csk-diagnosis")).to_contain_text(
            f"{org_name}: drifted", timeout=STEP_TIMEOUT_MS
        )
        rows = page.locator(".csk-differing")
        await expect(rows).to_contain_text(gone_name)
        await expect(rows).to_contain_text("extra here: cached, gone from the server")
        await expect(rows).to_contain_text(old_name)
        await expect(rows).to_contain_text(f"on the server: {new_name}")
        await expect(rows).to_contain_text("newer on the server")
        verdicts = page.locator(".csk-verdicts")
        await expect(verdicts).to_contain_text(
            re.compile(r"contacts \d+ / \d+ \(1 extra, 1 newer\)")
        )
        await expect(verdicts).not_to_contain_text("server_changed (")  # codes only with words
        await snap(page, artifacts, "offline-02-diagnose-names-rows")

        # From the finding to its row: Cached data opens on the renamed contact, marked.
        await page.locator(f".csk-show-{renamed_id}").click()
        await expect(data_status).to_contain_text(f"showing 1 of {visible} cached contacts")
        contacts = page.locator(".csk-contacts")
        await expect(contacts).to_contain_text(old_name)
        await expect(contacts).to_contain_text("newer on the server")
        await snap(page, artifacts, "offline-03-cached-data-from-diagnosis")
        await page.locator(".csk-show-all").click()
        await expect(data_status).to_contain_text(f"{visible} cached contacts")

        # 4. A hung sync: elapsed time and Cancel; the cache is as it was.
        stack.faults.latency_s = 12.0
        try:
            await tab(page, "Sync")
            await page.locator(".csk-sync").click()
            await expect(page.locator(".csk-sync-elapsed")).to_contain_text(
                re.compile(r"\b[2-9] s"), timeout=STEP_TIMEOUT_MS
            )
            await expect(page.locator(".csk-sync-cancel")).to_be_visible()
            await snap(page, artifacts, "offline-04-hung-sync")
            await page.locator(".csk-sync-cancel").click()
            await expect(page.locator(".csk-app")).to_contain_text(
                "cancelled; the cache is as it was", timeout=STEP_TIMEOUT_MS
            )
            await expect(page.locator(".csk-sync-cancel")).to_be_hidden()
            await snap(page, artifacts, "offline-05-sync-cancelled")
        finally:
            stack.faults.latency_s = 0.0
        await tab(page, "Cached data")
        await expect(data_status).to_contain_text(f"{visible} cached contacts")

        # 5. The server stops mid-case: the copy stays usable, the outage is said in words.
        stack.stop_postgrest()
        try:
            await tab(page, "Diagnose")
            await page.locator(".csk-diagnose").click()
            diagnosis = page.locator(".csk-diagnosis")
            await expect(diagnosis).to_contain_text(
                "the server does not answer", timeout=OUTAGE_STATED_MS
            )
            await expect(diagnosis).not_to_contain_text("not syncing")
            await expect(diagnosis).not_to_contain_text("last attempt did not work")
            await expect(page.locator(".csk-outage")).to_contain_text(
                "The server does not answer; you are looking at this computer's copy from"
            )
            await snap(page, artifacts, "offline-06-diagnose-server-silent")

            await tab(page, "Cached data")
            await page.locator(".csk-search input").fill(gone_name)
            await page.locator(".csk-search input").press("Enter")
            await expect(data_status).to_contain_text(
                f"of {visible} cached contacts match", timeout=STEP_TIMEOUT_MS
            )
            await expect(page.locator(".csk-contacts")).to_contain_text(gone_name)
            await snap(page, artifacts, "offline-07-cached-data-offline")

            await tab(page, "Organisation")
            await page.locator(".csk-reload").click()
            await expect(page.locator(".csk-organisation-status")).to_contain_text(
                "organisations cached on this computer", timeout=STEP_TIMEOUT_MS
            )
            await expect(page.locator(".csk-banner")).to_contain_text(org_name)
            await expect(page.locator(".csk-organisation-status")).not_to_contain_text("sign out")
            await tab(page, "Freshness")
            await expect(page.locator(".csk-freshness")).to_contain_text(org_name)
            await expect(page.locator(".csk-freshness")).to_contain_text("Tom Forening (empty)")
            await snap(page, artifacts, "offline-08-freshness-offline")
        finally:
            stack.start_postgrest()

        # 6. The server answers again: the auto-refresh runs and says what it did.
        await expect(page.locator(".csk-auto-status")).to_contain_text(
            "because the server answers again", timeout=STEP_TIMEOUT_MS
        )
        await expect(page.locator(".csk-outage")).to_have_text("")
        await tab(page, "Cached data")
        await page.locator(".csk-search input").fill("")
        await page.locator(".csk-search input").press("Enter")
        await expect(data_status).to_contain_text(
            f"{visible - 1} cached contacts", timeout=STEP_TIMEOUT_MS
        )
        await tab(page, "Freshness")
        await snap(page, artifacts, "offline-09-back-online-refreshed")

        await tab(page, "Sign in")
        await page.locator(".csk-sign-out").click()
        await expect(page.locator(".csk-login-status")).to_contain_text(
            f"Signed out {email}", timeout=STEP_TIMEOUT_MS
        )
        assert gone_id
    finally:
        await page.close()
