"""The notebooks read as static documents: exported to HTML with nbconvert, with no kernel
and no network, every table has rows and every panel has a plain-HTML copy (issue 18).

The stored notebooks hold the outputs of ``jupyter nbconvert --to notebook --execute``; they
are exported as they are. `app.ipynb` (the Voilà console) is stored without outputs, so it is
executed first (it needs no server to show its sign-in step).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: The notebooks whose panels and tables this work made static (03 is the audit's).
MINE = ("01_quickstart.ipynb", "02_stale_cache_diagnostics.ipynb")
MAX_STORED_BYTES = 2_000_000


class Tables(HTMLParser):
    """Every <table>'s data cells' text, outside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[str]] = []
        self._depth = 0
        self._skip = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "table" and not self._skip:
            self.tables.append([])
        elif tag == "td" and not self._skip and self.tables:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag == "td" and self._cell is not None and self.tables:
            self.tables[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def export(notebook: Path, out: Path, *, execute: bool = False) -> str:
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "nbconvert",
        "--to",
        "html",
        str(notebook),
        "--output-dir",
        str(out),
    ]
    if execute:
        command.insert(6, "--execute")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "CONTACTSYNC_"))}
    env["CONTACTSYNC_SETTINGS"] = str(out / "no-settings.json")
    env["CONTACTSYNC_CACHE"] = str(out / "cache.sqlite3")
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT, timeout=600)
    return (out / f"{notebook.stem}.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_is_stored_small(path: Path) -> None:
    assert path.stat().st_size <= MAX_STORED_BYTES, f"{path.name}: {path.stat().st_size:,} B"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exported_table_has_content(path: Path, tmp_path: Path) -> None:
    html = export(path, tmp_path, execute=path.name == "app.ipynb")
    parser = Tables()
    parser.feed(html)
    empty = [n for n, cells in enumerate(parser.tables) if not any(cells)]
    assert not empty, f"{path.name}: tables {empty} have no cell text"
    if path.name in MINE:
        assert parser.tables, f"{path.name} shows no table"


@pytest.mark.parametrize(
    "path",
    [p for p in NOTEBOOKS if p.name in MINE] + [ROOT / "notebooks" / "app.ipynb"],
    ids=lambda p: p.name,
)
def test_every_panel_has_a_static_copy_after_it(path: Path, tmp_path: Path) -> None:
    html = export(path, tmp_path, execute=path.name == "app.ipynb")
    views = html.count('<script type="application/vnd.jupyter.widget-view+json">')
    copies = html.count('class="csk-static"')
    assert views and copies == views, f"{views} widget outputs, {copies} static copies"
    # The copy reads as the panel: its title and status line, in words, not blank.
    copy = html.split('class="csk-static"', 1)[1]
    assert re.search(r"Sign in|Diagnose", copy)
    assert "AnyModel" not in html, "no itables widget (its 600 kB script) in the state"


def test_stored_panels_carry_no_grid_widgets() -> None:
    for path in NOTEBOOKS:
        if path.name not in MINE:
            continue
        state = json.loads(path.read_text())["metadata"].get("widgets", {})
        models = state.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        assert not [m for m in models.values() if m.get("model_name") == "AnyModel"]
