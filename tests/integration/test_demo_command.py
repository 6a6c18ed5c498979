"""`make demo` is `contactsync demo`: run it as a person would, and check what it prints.

The command starts its own local stack (real PostgreSQL + PostgREST), seeds three
organisations of 200 contacts, signs in as a member of two of them, syncs both, prints the
cache's row counts and signs out, which wipes the cache. Issue 22: it crashed (exit 2) after
the sign-out, reading the erased cache, and no test ran it.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

CONTACTS_PER_ORG = 200  # the command's default
ORGANISATIONS = 3
NOTES_PER_CONTACT = 3
DEMO_TIMEOUT_S = 150

SEEDED = re.compile(r"seeded (\d+) contacts, (\d+) notes, (\d+) assignments in [\d.]+ s$")
SYNCED = re.compile(
    r"^  (?P<name>.+): (?P<contacts>[\d,]+) contacts, (?P<notes>[\d,]+) notes and "
    r"(?P<assignments>[\d,]+) assignments in \d+ ms \(fetch \d+ / map \d+ / write \d+ ms, "
    r"\d+ page\(s\)\)$"
)
COUNTED = re.compile(
    r"^  (?P<name>.+): (?P<contacts>[\d,]+) contacts, (?P<notes>[\d,]+) notes and "
    r"(?P<assignments>[\d,]+) assignments, last synced \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"
)
WIPED = "Signed out; the cache was wiped: "


def num(text: str) -> int:
    """A count as `describe_rows` prints it (thousands separated by commas)."""
    return int(text.replace(",", ""))


def contactsync_command() -> list[str]:
    """The venv's ``contactsync`` console script (what ``make demo`` runs)."""
    script = Path(sys.executable).with_name("contactsync")
    assert script.is_file(), f"the contactsync entry point is not installed beside {sys.executable}"
    return [str(script)]


def _section(lines: list[str], title: str) -> list[str]:
    """The indented lines under the line `title`, up to the next unindented one."""
    start = lines.index(title) + 1
    section: list[str] = []
    for line in lines[start:]:
        if not line.startswith(" "):
            break
        section.append(line)
    return section


def test_contactsync_demo_syncs_two_organisations_and_wipes_the_cache(tmp_path: Path) -> None:
    env = {**os.environ, "CONTACTSYNC_CACHE": str(tmp_path / "default-cache")}
    done = subprocess.run(
        [*contactsync_command(), "demo"],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output and "FAILED" not in output, output
    lines = done.stdout.splitlines()

    seeded = [m for line in lines if (m := SEEDED.search(line))]
    assert len(seeded) == 1, output
    contacts, notes, assignments = map(int, seeded[0].groups())
    assert contacts == ORGANISATIONS * CONTACTS_PER_ORG, output  # three organisations seeded
    assert (notes, assignments) == (NOTES_PER_CONTACT * contacts, contacts), output
    assert re.search(
        r"^Signing in as \S+@\S+ \(member of 2 organisations\)\.\.\.$", done.stdout, re.M
    )

    # One line per organisation synced: N contacts, 3N notes, N assignments.
    synced_lines = _section(
        lines, "Syncing each organisation with one embedded-join query per page:"
    )
    synced = {
        m["name"]: (num(m["contacts"]), num(m["notes"]), num(m["assignments"]))
        for line in synced_lines
        if (m := SYNCED.match(line))
    }
    assert len(synced) == 2, output
    for name, (n, n_notes, n_assignments) in synced.items():
        assert 0 < n <= CONTACTS_PER_ORG, (name, n)
        assert (n_notes, n_assignments) == (NOTES_PER_CONTACT * n, n), name
    results = [line.strip() for line in synced_lines if line.strip().startswith("Sync")]
    assert len(results) == 2 and all(r.startswith("SyncSuccess(") for r in results), output
    assert all("verified=True" in r and "error=None" in r for r in results), output

    # The cache holds exactly what was synced, per organisation.
    counted = {
        m["name"]: (num(m["contacts"]), num(m["notes"]), num(m["assignments"]))
        for line in _section(lines, "Cache row counts per organisation:")
        if (m := COUNTED.match(line))
    }
    assert counted == synced, output

    # Signing out wiped all of it: the rows removed per table, two sync states and log rows.
    wiped = [line.removeprefix(WIPED) for line in lines if line.startswith(WIPED)]
    assert len(wiped) == 1, output
    total = sum(n for n, _, _ in synced.values())
    assert ast.literal_eval(wiped[0]) == {
        "contacts": total,
        "notes": NOTES_PER_CONTACT * total,
        "contact_assignments": total,
        "sync_state": 2,
        "sync_log": 2,
    }
    assert lines[-1].startswith(WIPED), "nothing may run (or fail) after the sign-out"
    # The demo's own cache lives in a temporary folder, not in the default one.
    assert not (tmp_path / "default-cache").exists()
