"""A fourth synced table is one spec entry plus one server migration, and no other change.

The test does what a developer adding `contact_tags` would do, to a copy of the package: it
appends the table's `TableSpec` to `SYNCED_TABLES` in the copy's ``schemas.py``, adds the
server migration (the table, its RLS policy, its touch trigger and index) to the copy's
``devstack/sql`` and accepts the table in the copy's exposed-surface file (the audit's review
step). Nothing else in the copy changes. A worker process running that copy then starts its
own local stack, syncs, deltas, verifies, diagnoses and audits through the public API
(tests/fourth_table/worker.py), and this test checks what it saw. (The console's panels are
shown the same copy in tests/unit/test_widgets_spec.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import contactsync_kit

HERE = Path(__file__).resolve().parent.parent / "fourth_table"
ANCHOR = "SYNCED_TABLES: Final = (CONTACTS, NOTES, CONTACT_ASSIGNMENTS)"


def package_with_tags(root: Path) -> Path:
    """A copy of contactsync_kit with `contact_tags` added as a developer would add it."""
    package = root / "contactsync_kit"
    shutil.copytree(
        Path(contactsync_kit.__file__).parent,
        package,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    schemas = package / "schemas.py"
    text = schemas.read_text(encoding="utf-8")
    assert text.count(ANCHOR) == 1, "schemas.py no longer lists the synced tables as expected"
    entry = (HERE / "schemas_entry.txt").read_text(encoding="utf-8")
    schemas.write_text(
        text.replace(ANCHOR, entry + "\n" + ANCHOR.replace(")", ", CONTACT_TAGS)")),
        encoding="utf-8",
    )
    shutil.copy(HERE / "contact_tags.sql", package / "devstack" / "sql" / "0099_contact_tags.sql")
    surface = package / "devstack" / "sql" / "exposed_surface.txt"
    with surface.open("a", encoding="utf-8") as lines:
        lines.write("table public.contact_tags authenticated\n")
    return root


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = package_with_tags(tmp_path_factory.mktemp("kit"))
    folder = tmp_path_factory.mktemp("caches")
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, str(HERE / "worker.py"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["package"].startswith(str(root)), "the worker did not run the copy"
    return result


def test_the_copy_syncs_the_fourth_table_with_the_others(seen: dict[str, Any]) -> None:
    assert seen["tables"] == ["contacts", "notes", "contact_assignments", "contact_tags"]
    full = seen["full"]
    assert full["ok"]
    assert full["rows"]["contact_tags"] == seen["server_tags"] == full["rows"]["contacts"] > 0
    assert full["words"].endswith(f" and {seen['server_tags']} tags")
    assert seen["cached_after_full"] == full["rows"]


def test_a_delta_carries_the_fourth_tables_change_and_delete_verified(
    seen: dict[str, Any],
) -> None:
    delta = seen["delta"]
    assert delta["ok"] and delta["mode"] == "delta" and delta["verified"], delta
    assert delta["changed"] >= 1 and delta["deleted"] == 1
    assert delta["rows"]["contact_tags"] == seen["server_tags"] - 1
    assert seen["cached_tags"] == {
        "count": seen["server_tags"] - 1,
        "changed": ["changed"],
        "deleted_present": False,
    }


def test_the_digest_covers_the_fourth_table(seen: dict[str, Any]) -> None:
    assert seen["verify_equal"] == "equal to the server ✓"
    assert "tags" in seen["verify_drifted"] or "contact_tags" in seen["verify_drifted"], seen


def test_the_diagnosis_names_the_fourth_tables_differing_row(seen: dict[str, Any]) -> None:
    diagnosis = seen["diagnosis"]
    assert "contact_tags" in diagnosis["tables"]
    [verdict] = diagnosis["verdicts"]
    assert (verdict["verdict"], verdict["gone_from_server"]) == ("drifted", 1)
    assert [row["status"] for row in diagnosis["differing_tags"]] == ["gone_from_server"]


def test_the_audit_probes_the_fourth_table_and_finds_it_scoped(seen: dict[str, Any]) -> None:
    audit = seen["audit"]
    assert audit["passed"]
    assert audit["tag_probes"] == [
        "all_count",
        "all_embedded",
        "all_rows",
        "count",
        "embedded",
        "foreign_ids",
        "select",
    ]
    assert audit["tags_visible"] == audit["tags_expected"] > 0
