"""A whole support case in a real browser: Voilà serves `notebooks/app.ipynb`, Debian's
headless Chromium drives it, and every assertion reads what the page shows.

Screenshots of each step go to ``artifacts/browser/`` (01-… to 10-…, plus wrong-password,
double-click and bad-url); ``console.png`` is the one the README shows (a copy is in
``docs/``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from .conftest import VoilaApp

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# Voilà starts a kernel and runs the notebook before the panels appear.
APP_TIMEOUT_MS = 180_000  # limits for hangs on a loaded machine, not speed
STEP_TIMEOUT_MS = 60_000
VIEWPORT: ViewportSize = {"width": 1200, "height": 1400}


async def open_console(browser: Browser, url: str) -> Page:
    page = await browser.new_page(viewport=VIEWPORT, accept_downloads=True)
    await page.goto(url, timeout=APP_TIMEOUT_MS)
    await expect(page.locator(".csk-sign-in")).to_be_visible(timeout=APP_TIMEOUT_MS)
    return page


async def tab(page: Page, title: str) -> None:
    await page.locator(".lm-TabBar-tab", has_text=title).first.click()


async def sign_in(page: Page, email: str, password: str) -> None:
    await page.locator(".csk-email input").fill(email)
    await page.locator(".csk-password input").fill(password)
    await page.locator(".csk-password input").press("Enter")


async def snap(page: Page, artifacts: Path, name: str) -> None:
    await page.locator(".csk-app").screenshot(path=str(artifacts / f"{name}.png"))


async def test_a_whole_support_case(voila_app: VoilaApp, browser: Browser, artifacts: Path) -> None:
    stack, world = voila_app.stack, voila_app.world
    user = world.user("multi-org")
    org_id = next(m.organisation_id for m in user.memberships if m.chapter_id is None)
    org_name = world.organisation_names[org_id]
    [(visible,)] = stack.sql(
        "SELECT count(*) FROM public.contacts WHERE organisation_id = %s", org_id
    )
    page = await open_console(browser, voila_app.url)
    try:
        # Configured from the environment: no project fields for support staff.
        await expect(page.locator(".csk-url")).to_be_hidden()
        await expect(page.locator(".csk-key")).to_be_hidden()

        # 1. Sign in with the Enter key.
        await sign_in(page, user.email, user.password)
        await expect(page.locator(".csk-login-status")).to_contain_text(
            f"Signed in as {user.email}", timeout=STEP_TIMEOUT_MS
        )
        await expect(page.locator(".csk-banner")).to_contain_text(f"Signed in as {user.email}")
        await snap(page, artifacts, "01-signed-in")

        await tab(page, "Organisation")
        await expect(page.locator(".csk-organisation-status")).to_contain_text(
            "You belong to 2 organisations", timeout=STEP_TIMEOUT_MS
        )
        await page.locator(".csk-organisation select").select_option(label=org_name)
        await expect(page.locator(".csk-banner")).to_contain_text(org_name)
        await snap(page, artifacts, "02-organisation")

        # 2. Sync.
        await tab(page, "Sync")
        await page.locator(".csk-sync").click()
        readout = page.locator(".csk-readout")
        await expect(readout).to_contain_text(
            f"Synced {org_name}: {visible} contacts", timeout=STEP_TIMEOUT_MS
        )
        await expect(readout.locator("details")).not_to_have_attribute("open", "")
        await snap(page, artifacts, "03-synced")

        await tab(page, "Freshness")
        await expect(page.locator(".csk-freshness-banner")).to_contain_text(
            "synced within 24 h", timeout=STEP_TIMEOUT_MS
        )
        await expect(page.locator(".csk-auto-refresh input")).to_be_checked()
        await expect(page.locator(".csk-chart")).to_be_visible(timeout=STEP_TIMEOUT_MS)
        # The chart is drawn off the event loop: the one of the synced cache lands last.
        await expect(page.locator(".csk-chart-caption")).to_contain_text(
            "of 1 cached organisation;", timeout=STEP_TIMEOUT_MS
        )
        await snap(page, artifacts, "04-freshness")
        await snap(page, artifacts, "console")  # the README's picture (a copy is in docs/)
        await page.locator(".csk-verify").click()  # one digest request per organisation
        await expect(page.locator(".csk-verification")).to_contain_text(
            "equal to the server ✓", timeout=STEP_TIMEOUT_MS
        )
        await snap(page, artifacts, "04-verified")

        await tab(page, "Cached data")
        await expect(page.locator(".csk-data-status")).to_contain_text(
            f"{visible} cached contacts", timeout=STEP_TIMEOUT_MS
        )
        [(name,)] = stack.sql(
            "SELECT full_name FROM public.contacts WHERE organisation_id = %s ORDER BY id LIMIT 1",
            org_id,
        )
        await page.locator(".csk-search input").fill(name)
        await page.locator(".csk-search input").press("Enter")
        await expect(page.locator(".csk-data-status")).to_contain_text(
            f"of {visible} cached contacts match", timeout=STEP_TIMEOUT_MS
        )
        await expect(page.locator(".csk-contacts")).to_contain_text(name)
        await snap(page, artifacts, "05-cached-data")

        # 3. A colleague deletes a contact on the server: the cache drifts.
        [(gone,)] = stack.sql(
            "DELETE FROM public.contacts WHERE id = (SELECT id FROM "
            "public.contacts WHERE organisation_id = %s ORDER BY id "
            "DESC LIMIT 1) RETURNING id::text",
            org_id,
        )
        assert gone

        # 4. Diagnose says "drifted", in plain words, with the action and the history.
        await tab(page, "Diagnose")
        await page.locator(".csk-diagnose").click()
        diagnosis = page.locator(".csk-diagnosis")
        await expect(diagnosis).to_contain_text(f"{org_name}: drifted", timeout=STEP_TIMEOUT_MS)
        await expect(diagnosis).to_contain_text("the server changed since the last sync")
        await expect(diagnosis).to_contain_text("What to do: sync now")
        await expect(page.locator(".csk-history")).to_contain_text("synced")
        await snap(page, artifacts, "06-diagnosed-drifted")

        # 5. The bundle downloads, and holds no personal data.
        await tab(page, "Export")
        await page.locator(".csk-prepare").click()
        link = page.locator(".csk-bundle-link a")
        await expect(link).to_be_visible(timeout=STEP_TIMEOUT_MS)
        async with page.expect_download() as download_info:
            await link.click()
        download = await download_info.value
        assert re.fullmatch(r"contactsync-support-\d{8}T\d{6}Z\.json", download.suggested_filename)
        saved = artifacts / download.suggested_filename
        await download.save_as(saved)
        text = saved.read_text(encoding="utf-8")
        assert org_id in text and '"verdict": "drifted"' in text
        personal = [
            v
            for row in stack.sql(
                "SELECT full_name, phone, email, address FROM public.contacts "
                "WHERE organisation_id = %s",
                org_id,
            )
            for v in row
            if v and len(v) >= 4
        ]
        personal += [
            b
            for (b,) in stack.sql(
                "SELECT body FROM public.notes WHERE organisation_id = %s", org_id
            )
        ]
        assert personal and not [v for v in personal if v in text]
        assert user.email not in text and user.password not in text
        saved.unlink()
        await snap(page, artifacts, "07-bundle-downloaded")

        # 6. Clear: it names the sync log and offers the export first; then all is empty.
        await tab(page, "Clear")
        await page.locator(".csk-clear").click()
        await expect(page.locator(".csk-app")).to_contain_text("and the sync log")
        await expect(page.locator(".csk-export-first")).to_be_visible()
        await snap(page, artifacts, "08-clear-asks")
        await page.locator(".csk-confirm").click()
        await expect(page.locator(".csk-cached")).to_contain_text(
            re.compile(r"Cached now\s*0 contacts, 0 notes, 0 assignments"), timeout=STEP_TIMEOUT_MS
        )
        await expect(page.locator(".csk-cached")).to_contain_text(
            re.compile(r"Sync log\s*0 entries")
        )
        await snap(page, artifacts, "09-cleared")
        await tab(page, "Sync")
        await expect(page.locator(".csk-readout")).to_have_text("")
        await tab(page, "Freshness")
        await expect(page.locator(".csk-freshness-banner")).to_contain_text(
            "The cache is empty", timeout=STEP_TIMEOUT_MS
        )
        await tab(page, "Diagnose")
        await expect(page.locator(".csk-diagnosis")).not_to_contain_text("drifted")
        await expect(page.locator(".csk-history")).to_have_count(0)
        await tab(page, "Cached data")
        await expect(page.locator(".csk-data-status")).to_contain_text(
            "Nothing of", timeout=STEP_TIMEOUT_MS
        )
        await expect(page.locator(".csk-contacts")).to_have_count(0)
        await tab(page, "Export")
        await expect(page.locator(".csk-bundle-link a")).to_have_count(0)

        # 7. Sign out.
        await tab(page, "Sign in")
        await page.locator(".csk-sign-out").click()
        await expect(page.locator(".csk-login-status")).to_contain_text(
            f"Signed out {user.email}", timeout=STEP_TIMEOUT_MS
        )
        await expect(page.locator(".csk-banner")).to_contain_text("Not signed in")
        await snap(page, artifacts, "10-signed-out")
    finally:
        await page.close()


async def test_wrong_password_and_double_click(
    voila_app: VoilaApp, browser: Browser, artifacts: Path
) -> None:
    stack, world = voila_app.stack, voila_app.world
    user = world.user("multi-org")
    org_id = next(m.organisation_id for m in user.memberships if m.chapter_id is None)
    page = await open_console(browser, voila_app.url)
    try:
        await sign_in(page, user.email, "not-the-password")
        status = page.locator(".csk-login-status")
        await expect(status).to_contain_text(
            "The email or password is not right", timeout=STEP_TIMEOUT_MS
        )
        await snap(page, artifacts, "wrong-password")

        await sign_in(page, user.email, user.password)
        await expect(status).to_contain_text(f"Signed in as {user.email}", timeout=STEP_TIMEOUT_MS)
        await expect(status).not_to_contain_text("not right")
        await tab(page, "Organisation")
        await page.locator(".csk-organisation select").select_option(
            label=world.organisation_names[org_id]
        )
        await tab(page, "Sync")
        before = len(stack.request_log.rest())
        await page.locator(".csk-sync").dblclick()
        await expect(page.locator(".csk-readout")).to_contain_text(
            "Synced", timeout=STEP_TIMEOUT_MS
        )
        sync_card = page.locator(".csk-app")
        await expect(sync_card).not_to_contain_text("already in progress")
        contacts_requests = [r for r in stack.request_log.rest()[before:] if r.path == "/contacts"]
        assert len(contacts_requests) == 1, "one sync of one page, not two"
        await snap(page, artifacts, "double-click")
        await tab(page, "Sign in")
        await page.locator(".csk-sign-out").click()
        await expect(status).to_contain_text("Signed out", timeout=STEP_TIMEOUT_MS)
    finally:
        await page.close()


async def test_project_address_is_checked_before_any_request(
    unconfigured_console: str,
    browser: Browser,
    artifacts: Path,
) -> None:
    page = await open_console(browser, unconfigured_console)
    try:
        status = page.locator(".csk-login-status")
        await expect(page.locator(".csk-url input")).to_be_visible()
        await page.locator(".csk-url input").fill("my project")
        await page.locator(".csk-key input").fill("sb_publishable_demo")
        await sign_in(page, "someone@example.org", "secret-password")
        await expect(status).to_contain_text("cannot contain spaces", timeout=STEP_TIMEOUT_MS)
        await expect(status).to_contain_text("https://your-project.supabase.co")

        # No scheme: completed (http:// for this machine), then tried; nothing listens on 9.
        await page.locator(".csk-url input").fill("127.0.0.1:9")
        await page.locator(".csk-password input").press("Enter")
        await expect(status).to_contain_text(
            "Cannot reach the server at http://127.0.0.1:9", timeout=STEP_TIMEOUT_MS
        )
        await expect(page.locator(".csk-url input")).to_have_value("http://127.0.0.1:9")
        await expect(status).not_to_contain_text("kernel log")
        await snap(page, artifacts, "bad-url")
    finally:
        await page.close()
