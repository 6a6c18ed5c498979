"""The support console in a real browser: Voilà serves `notebooks/app.ipynb`, headless
Chromium (Debian's) signs in, picks an organisation, syncs, and reads the readout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from .conftest import VoilaApp

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# Voilà starts a kernel and runs the notebook before the panels appear.
# Limits for a hang, not for speed: a loaded CI core starts kernels and stacks slowly.
APP_TIMEOUT_MS = 180_000
STEP_TIMEOUT_MS = 60_000


async def test_sign_in_pick_an_organisation_and_sync(
    voila_app: VoilaApp, browser: Browser, artifacts: Path,
) -> None:
    world = voila_app.world
    user = world.user("multi-org")
    # The organisation the demo user sees whole, so the server's count is the org's count.
    org_id = next(m.organisation_id for m in user.memberships if m.chapter_id is None)
    org_name = world.organisation_names[org_id]
    [(visible,)] = voila_app.stack.sql(
        "SELECT count(*) FROM public.contacts WHERE organisation_id = %s", org_id)

    # Tall enough for the whole console: Voilà scrolls inside its own container, so a
    # screenshot would otherwise stop at the first screen.
    page = await browser.new_page(viewport={"width": 1000, "height": 2300})
    try:
        await page.goto(voila_app.url, timeout=APP_TIMEOUT_MS)
        sign_in = page.locator(".csk-sign-in")
        await expect(sign_in).to_be_visible(timeout=APP_TIMEOUT_MS)
        await expect(page.locator(".csk-url input")).to_have_value(voila_app.stack.url)

        await page.locator(".csk-email input").fill(user.email)
        await page.locator(".csk-password input").fill(user.password)
        await sign_in.click()
        await expect(page.locator(".csk-login-status")).to_contain_text(
            f"Signed in as {user.email}", timeout=STEP_TIMEOUT_MS)

        await expect(page.locator(".csk-organisation-status")).to_contain_text(
            "You belong to 2 organisations", timeout=STEP_TIMEOUT_MS)
        await page.locator(".csk-organisation select").select_option(label=org_name)

        await page.locator(".csk-sync").click()
        readout = page.locator(".csk-readout")
        await expect(readout).to_contain_text(f"{visible} contacts", timeout=STEP_TIMEOUT_MS)
        await expect(readout).to_contain_text("success")
        await expect(readout).to_contain_text("fetch")
        # The freshness and cache panels refresh themselves after the sync.
        await expect(page.locator(".csk-freshness-banner")).to_contain_text(
            "synced within 24 h", timeout=STEP_TIMEOUT_MS)
        await expect(page.locator(".csk-chart")).to_be_visible(timeout=STEP_TIMEOUT_MS)
        await expect(page.locator(".csk-chart-caption")).to_contain_text(
            "of 1 cached organisation;", timeout=STEP_TIMEOUT_MS)
        await expect(page.locator(".csk-cached")).to_contain_text(
            f"{visible} contacts", timeout=STEP_TIMEOUT_MS)
        await expect(page.locator(".csk-cached")).to_contain_text(re.compile(r"Organisations\s*1"))
        await page.locator(".csk-app").screenshot(path=str(artifacts / "quickstart.png"))
    finally:
        await page.close()
