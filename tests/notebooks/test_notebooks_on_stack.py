"""Notebooks 02 and 03 run unchanged against `make stack`'s printed environment.

`contactsync devstack up` (what `make stack` runs) prints an ``export …`` block; this test
parses it from the command's own output, sets exactly those variables, and executes the
notebooks with nbclient (nbval's stored outputs are for the notebooks' own seeded stack, so
here the check is that every cell runs and names come through RLS, not bare ids).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def parse_exports(text: str) -> dict[str, str]:
    """The variables of the first ``export A=… \\`` block in `text`."""
    joined = re.sub(r"\\\n\s*", " ", text)
    line = next(row for row in joined.splitlines() if row.strip().startswith("export "))
    return dict(word.split("=", 1) for word in shlex.split(line.strip())[1:])


@pytest.fixture(scope="module")
def printed_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("make-stack")
    out = work / "stack.out"
    contactsync = Path(sys.executable).with_name("contactsync")
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [str(contactsync), "devstack", "up", "--users-file", str(work / "users.json")],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C" not in out.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, out.read_text()
            time.sleep(0.2)
        yield parse_exports(out.read_text())
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def run(notebook: str, env: dict[str, str], tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    saved = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def printed(nb: nbformat.NotebookNode) -> str:
    texts: list[str] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data: dict[str, Any] = output.get("data", {})
            texts.append(output.get("text", "") or data.get("text/plain", ""))
    return "\n".join(texts)


def test_the_export_block_names_everything_the_notebooks_read(
    printed_environment: dict[str, str],
) -> None:
    assert set(printed_environment) == {
        "SUPABASE_URL",
        "SUPABASE_ANON_KEY",
        "SUPABASE_DB_URL",
        "SUPABASE_EMAIL",
        "SUPABASE_PASSWORD",
        "SUPABASE_ORGANISATION_ID",
        "RLS_AUDIT_USERS",
    }
    assert UUID.fullmatch(printed_environment["SUPABASE_ORGANISATION_ID"])
    users = Path(printed_environment["RLS_AUDIT_USERS"])
    assert users.stat().st_mode & 0o077 == 0, "the users file holds passwords: private"


def test_notebook_02_runs_on_the_printed_environment(
    printed_environment: dict[str, str],
    tmp_path: Path,
) -> None:
    nb = run("02_stale_cache_diagnostics.ipynb", printed_environment, tmp_path)
    text = printed(nb)
    assert "ok=True" in text
    verdicts = [line for line in text.splitlines() if "→" in line]
    assert verdicts, text
    # Names through RLS: no verdict line starts with a bare organisation id.
    assert not [line for line in verdicts if UUID.match(line)], verdicts


def test_notebook_03_runs_on_the_printed_environment(
    printed_environment: dict[str, str],
    tmp_path: Path,
) -> None:
    nb = run("03_rls_scoping_audit.ipynb", printed_environment, tmp_path)
    text = printed(nb)
    assert "PASS" in text or "passed: True" in text, text[:2000]
