"""The demo console: every page load starts a kernel, but all of them share one stack, which
stops (leaving no folder behind) when the console server stops."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest
from playwright.async_api import Browser, expect

from contactsync_kit.devstack import watchdog

from .conftest import Console

pytestmark = [pytest.mark.browser, pytest.mark.integration]

LOADS = 5


def demo_servers(owner: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "contactsync_kit.demo" in cmdline and "serve" in cmdline and str(owner) in cmdline:
            found.append(process)
    return found


def wait_gone(folder: Path, owner: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (folder.exists() or demo_servers(owner)) and time.monotonic() < deadline:
        time.sleep(0.2)


def postmasters_of(server: psutil.Process) -> dict[int, str]:
    """Live postmasters started by `server`: the daemonised postmaster is not its child, but
    the stack's watchdog (``python -I watchdog.py OWNER POSTMASTER DIR``) names both. Returns
    each postmaster's pid and its stack's temporary folder."""
    script = Path(watchdog.__file__).resolve()
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if (
            len(cmdline) == 6
            and cmdline[1] == "-I"
            and Path(cmdline[2]).resolve() == script
            and cmdline[3] == str(server.pid)
        ):
            postmaster = int(cmdline[4])
            if psutil.pid_exists(postmaster):
                found[postmaster] = cmdline[5]
    return found


def running(pid: int) -> bool:
    """True while ``pid`` runs. A zombie has exited: the daemonised postmaster's parent is
    init, which reaps it whenever it gets to it, so ``psutil.pid_exists`` alone can still see
    a postmaster that stopped."""
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return status != psutil.STATUS_ZOMBIE


def postgrests_of(server: psutil.Process) -> list[psutil.Process]:
    return [p for p in server.children(recursive=True) if "postgrest" in p.name()]


async def test_five_page_loads_share_one_demo_stack(
    tmp_path: Path,
    browser: Browser,
) -> None:
    console = Console(
        tmp_path,
        {"CONTACTSYNC_DEMO": "1", "CONTACTSYNC_CACHE": str(tmp_path / "cache" / "c.sqlite3")},
    )
    folder = tmp_path / "cache" / "console-demo" / f"server-{console.process.pid}"
    try:
        urls = set()
        for _ in range(LOADS):
            page = await browser.new_page()
            try:
                await page.goto(console.url, timeout=180_000)
                details = page.locator(".csk-app details").first
                await expect(details).to_be_attached(timeout=180_000)
                urls.add(await details.inner_text())
            finally:
                await page.close()
        [server] = demo_servers(console.process.pid)
        postmasters = postmasters_of(server)
        assert len(postmasters) == 1, "one PostgreSQL for five page loads"
        assert len(postgrests_of(server)) == 1, "one PostgREST for five page loads"
        assert len(urls) == 1, "every kernel shows the same project"
        assert (folder / "state.json").exists()
    finally:
        console.stop()
    await asyncio.to_thread(wait_gone, folder, console.process.pid, 60.0)
    assert not folder.exists(), "the demo stack removed its folder when the console stopped"
    assert demo_servers(console.process.pid) == []
    [work_dir] = postmasters.values()
    assert not await asyncio.to_thread(os.path.exists, work_dir), "no temp folder left behind"
    assert not [pid for pid in postmasters if running(pid)], "no PostgreSQL left running"
