"""Browser-test fixtures: a seeded local stack, the support console served by Voilà, and
Debian's headless Chromium driven by Playwright.

The Voilà page is `notebooks/app.ipynb` (the app alone). Its kernel reads the stack from
``SUPABASE_URL`` / ``SUPABASE_ANON_KEY``, which this fixture sets, so the page talks to the
stack the test seeded and can check against.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from contactsync_kit.devstack import DevStack, SeedResult

ROOT = Path(__file__).resolve().parents[2]
APP_NOTEBOOK = ROOT / "notebooks" / "app.ipynb"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = os.environ.get("CONTACTSYNC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass(frozen=True)
class VoilaApp:
    """The served console: its URL and the stack behind it."""

    url: str
    stack: DevStack
    world: SeedResult


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(
    port: int, process: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    # A TCP probe, not an HTTP GET: every GET of the page starts a kernel.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"voila exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"voila did not listen on {port} within {timeout_s} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def browser_stack(stack: DevStack) -> tuple[DevStack, SeedResult]:
    """The session's shared local stack (tests/conftest.py), under the browser test's seed."""
    return stack, stack.seed(organisations=3, chapters_per_org=2, contacts_per_org=60, seed=515)


class Console:
    """A Voilà server of the console, started with `env` on top of this process's."""

    def __init__(self, work: Path, env: dict[str, str | None]) -> None:
        self.work = work
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        environ = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
            "CONTACTSYNC_SETTINGS": str(work / "no-settings.json"),
        }
        # The person types the login in the browser; nothing of it comes from the environment.
        for name in (
            "SUPABASE_EMAIL",
            "SUPABASE_PASSWORD",
            "SUPABASE_URL",
            "SUPABASE_ANON_KEY",
            "CONTACTSYNC_DEMO",
        ):
            environ.pop(name, None)
        for name, value in env.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        # voila from this venv: its kernelspec `python3` starts this venv's ipykernel. Run in
        # the repository root, so Voilà reads the shipped voila.json.
        voila = Path(sys.executable).with_name("voila")
        self.log = work / "voila.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(voila),
                    str(APP_NOTEBOOK),
                    "--no-browser",
                    f"--port={self.port}",
                    "--Voila.ip=127.0.0.1",
                    "--Voila.kernel_name=python3",
                ],
                cwd=ROOT,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # A limit for a hang: Voilà starts slowly on one busy core.
        _wait_listening(self.port, self.process, self.log, timeout_s=120)

    def stop(self) -> None:
        # Voilà shuts its kernels down on SIGTERM; the group kill below is only the backstop
        # for this process group we created (voila and the kernels it started).
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@pytest.fixture(scope="session")
def voila_app(
    browser_stack: tuple[DevStack, SeedResult], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VoilaApp]:
    """The console configured for the session's stack (its URL and key from the environment,
    so the page shows no project fields)."""
    stack, world = browser_stack
    work = tmp_path_factory.mktemp("voila")
    console = Console(
        work,
        {
            "SUPABASE_URL": stack.url,
            "SUPABASE_ANON_KEY": stack.anon_key,
            "CONTACTSYNC_CACHE": str(work / "cache.sqlite3"),
        },
    )
    try:
        yield VoilaApp(url=console.url, stack=stack, world=world)
    finally:
        console.stop()


@pytest.fixture(scope="session")
def unconfigured_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console with no project configured: it asks for the address and key."""
    work = tmp_path_factory.mktemp("voila-bare")
    console = Console(work, {"CONTACTSYNC_CACHE": str(work / "cache.sqlite3")})
    try:
        yield console.url
    finally:
        console.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
