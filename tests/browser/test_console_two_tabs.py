"""Two tabs of the console as the same person: signing out in one is said, in words, in the other.

Each tab of the Voilà page is its own kernel, so this is two sessions on one cache file in
two processes. Screenshots: ``artifacts/browser/two-tabs-*.png``.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from .conftest import VoilaApp
from .test_console_browser import STEP_TIMEOUT_MS, open_console, sign_in, snap, tab

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SIGNED_OUT_ELSEWHERE = "signed out in another window; sign in again"


async def signed_in(browser: Browser, app: VoilaApp, email: str, password: str) -> Page:
    page = await open_console(browser, app.url)
    await sign_in(page, email, password)
    await expect(page.locator(".csk-login-status")).to_contain_text(
        f"Signed in as {email}", timeout=STEP_TIMEOUT_MS
    )
    return page


async def test_signing_out_in_one_tab_is_said_in_the_other(
    voila_app: VoilaApp, browser: Browser, artifacts: Path
) -> None:
    stack, world = voila_app.stack, voila_app.world
    org_id = world.organisation_ids[0]
    email, password = f"two-tabs-{uuid.uuid4().hex[:8]}@example.org", "two-tabs-password"
    stack.create_user(email, password, [(org_id, None, "admin")])
    tab_a = await signed_in(browser, voila_app, email, password)
    tab_b = await signed_in(browser, voila_app, email, password)
    try:
        await tab(tab_a, "Sync")
        await tab_a.locator(".csk-sync").click()
        await expect(tab_a.locator(".csk-readout")).to_contain_text(
            "Synced", timeout=STEP_TIMEOUT_MS
        )

        await tab(tab_b, "Sign in")
        await tab_b.locator(".csk-sign-out").click()
        await expect(tab_b.locator(".csk-login-status")).to_contain_text(
            f"Signed out {email}", timeout=STEP_TIMEOUT_MS
        )

        # Tab A finds out by its next action (or by itself first, when its freshness or
        # server check runs in between) and says so in words.
        await tab(tab_a, "Sync")
        sync = tab_a.locator(".csk-sync")
        if await sync.is_enabled():
            with contextlib.suppress(PlaywrightTimeoutError):  # it found out meanwhile
                await sync.click(timeout=5_000)
        await expect(tab_a.locator(".csk-login-status")).to_contain_text(
            SIGNED_OUT_ELSEWHERE, timeout=STEP_TIMEOUT_MS
        )
        await expect(tab_a.locator(".csk-banner")).to_contain_text(SIGNED_OUT_ELSEWHERE)
        # The step that found out is back at rest: no sync left "running".
        await expect(tab_a.locator(".csk-sync")).not_to_contain_text("Syncing")
        await expect(tab_a.locator(".csk-sync")).to_be_disabled()
        await snap(tab_a, artifacts, "two-tabs-1-told")
        for page in (tab_a, tab_b):
            await expect(page.locator(".csk-app")).not_to_contain_text("did not expect")

        # Every other step of tab A is in the signed-out state too, with no raw error.
        for step in ("Diagnose", "Cached data", "Export"):
            await tab(tab_a, step)
            await expect(tab_a.locator(".csk-app")).not_to_contain_text("did not expect")
            await expect(tab_a.locator(".csk-app")).not_to_contain_text("DatabaseError")
        await tab(tab_a, "Sign in")
        await expect(tab_a.locator(".csk-sign-in")).to_be_visible()
        await snap(tab_a, artifacts, "two-tabs-2-sign-in-again")
    finally:
        await tab_a.close()
        await tab_b.close()
