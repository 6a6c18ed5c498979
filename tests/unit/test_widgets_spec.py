"""Every console panel takes its tables from the spec (`schemas.SYNCED_TABLES`).

The panels name no data table and no per-table column: titles, nouns and plurals come from
each `TableSpec`, headings from column names, counts from mappings keyed by table name. The
last test proves it the way a new table would arrive: a copy of the package whose spec has a
fourth synced table shows it in every panel, with no widget code changed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import contactsync_kit
from contactsync_kit.schemas import ROOT_TABLE, SYNCED_TABLES, Column, TableSpec
from contactsync_kit.widgets.cached_data import visible_columns
from contactsync_kit.widgets.login_model import describe_removed
from contactsync_kit.widgets.table_words import (
    NOUNS,
    PLURALS,
    css_class,
    label_column,
    person_columns,
    plain_columns,
    searched_columns,
    table_counts,
    words_for,
)

#: A table the kit does not have: a child of contacts with a free-text column and an author.
TAGS = TableSpec(
    "contact_tags",
    (
        Column("id", required=True, uuid=True),
        Column("contact_id", required=True, uuid=True),
        Column("organisation_id", required=True, uuid=True),
        Column("tagged_by", uuid=True),
        Column("tag", required=True),
        Column("colour", values=("red", "green")),
        Column("created_at", required=True, timestamp=True),
        Column("tagged_at", required=True, timestamp=True),
        Column("updated_at", required=True, timestamp=True),
    ),
    parent=("contact_id", ROOT_TABLE),
)


def test_a_tables_words_headings_and_columns_come_from_its_spec() -> None:
    assert css_class(TAGS) == "csk-contact-tags"
    assert (label_column(TAGS), plain_columns(TAGS)) == ("tag", ("tag",))
    assert searched_columns(TAGS) == ("tag", "id")
    assert person_columns(TAGS) == ("tagged_by",), "not its key, parent link or scope"
    # Its own time (tagged at) is shown, not created / updated; the root row's noun first.
    assert visible_columns(TAGS) == [
        "diagnosis",
        "contact",
        "tag",
        "colour",
        "tagged by",
        "tagged at",
    ]


def test_the_synced_tables_read_in_spec_order_with_their_own_words() -> None:
    *others, last = (spec.plural for spec in SYNCED_TABLES)
    assert f"{', '.join(others)} and {last}" == PLURALS
    assert NOUNS.split(", ")[0] == SYNCED_TABLES[0].noun
    for spec in SYNCED_TABLES:
        assert words_for(spec.name) == (spec.noun, spec.plural)
    assert words_for("sync_log") == ("sync log entry", "sync log entries")
    removed = {spec.name: 1 for spec in SYNCED_TABLES} | {"sync_log": 2}
    assert describe_removed(removed) == ", ".join(
        [*(f"1 {spec.noun}" for spec in SYNCED_TABLES), "2 sync log entries"]
    )


def test_per_table_counts_are_read_in_one_place_whatever_the_diagnosis_shape() -> None:
    assert table_counts({"tables": {"notes": (3, None)}}, "notes") == (3, None)
    assert table_counts({"local_notes": 4, "server_notes": 5}, "notes") == (4, 5)
    assert table_counts({"local_notes": None}, "notes") == (0, None)


#: Run in a copy of the package whose spec has a fourth synced table (`contact_tags`).
_FOURTH_TABLE_PANELS = textwrap.dedent(
    """
    import asyncio
    from datetime import UTC, datetime

    import polars as pl

    from contactsync_kit import ManualClock, UserSession
    from contactsync_kit.schemas import DATA_TABLES, TABLES
    from contactsync_kit.widgets import (
        CachedDataModel, CachedDataPanel, ClearingModel, ClearingPanel, DiagnosticsModel,
        DiagnosticsPanel, FreshnessModel, FreshnessPanel, SyncPanel,
    )

    ORG, CONTACT = "2b563c23-1921-4b20-962d-7f04058b12e4", "0c112c48-1111-4222-8333-444455556666"
    NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    STAMP = "2026-03-01T11:00:00.000000Z"
    assert DATA_TABLES[-1] == "contact_tags"

    def row(spec, **values):
        base = {c.name: STAMP if c.timestamp else None for c in spec.columns}
        return {**base, "id": spec.name + "-1", "organisation_id": ORG, **values}

    FRAMES = {
        name: pl.DataFrame([], schema=TABLES[name].frame_schema(), orient="row")
        for name in DATA_TABLES
    }
    FRAMES["contacts"] = pl.DataFrame(
        [row(TABLES["contacts"], id=CONTACT, full_name="Ada Lovelace", status="active")],
        schema=TABLES["contacts"].frame_schema(), orient="row",
    )
    FRAMES["contact_tags"] = pl.DataFrame(
        [row(TABLES["contact_tags"], contact_id=CONTACT, tag="volunteer")],
        schema=TABLES["contact_tags"].frame_schema(), orient="row",
    )

    class FrameCache:
        # The cache's read side, over frames: what the panels call.
        def read_table(self, name, organisation_id=None, columns=None):
            if name == "sync_log":
                return pl.DataFrame({"id": [1]})
            return FRAMES[name]
        def last_synced_at(self, organisation_id):
            return NOW
        def counts(self, organisation_id=None):
            return {name: frame.height for name, frame in FRAMES.items()}
        def overview(self):
            return pl.DataFrame({
                "organisation_id": [ORG], "last_synced_at": [NOW],
                **{name: [frame.height] for name, frame in FRAMES.items()},
            })

    async def main():
        session = UserSession(client=None, cache=FrameCache(), repository=None,
                              clock=ManualClock(NOW))
        data = CachedDataModel(session=session, organisation_id=ORG)
        clearing = ClearingModel(session=session)
        freshness = FreshnessModel(session=session, clock=ManualClock(NOW), draw_chart=False)
        for model in (data, clearing, freshness):
            await model.refresh()
            await model.wait()
        grids = CachedDataPanel(data).grids.value
        assert data.counts == {"contacts": 1, "notes": 0, "contact_assignments": 0,
                               "contact_tags": 1}, data.counts
        assert "<b>Contact tags</b>" in grids and "csk-contact-tags" in grids, grids
        assert "volunteer" in grids and "Ada Lovelace" in grids
        summary = ClearingPanel(clearing).summary.value
        assert "1 contact, 0 notes, 0 assignments, 1 contact tag" in summary, summary
        table = FreshnessPanel(freshness).table.value
        assert "<th>Contact tags</th>" in table, table

        diagnostics = DiagnosticsModel()
        panel = DiagnosticsPanel(diagnostics)
        tables = {name: (1, 1) for name in DATA_TABLES} | {"contact_tags": (2, 3)}
        diagnostics.rows = [{
            "label": "Acme", "organisation_id": ORG, "verdict": "drifted", "cause": "x",
            "cause_words": "x", "summary": "x", "action": "sync", "plain": "drifted",
            "age": "1 h", "contacts": 1, "tables": tables, "differences": 1,
            "table_diffs": {"contact_tags": {"missing_locally": 1}},
        }]
        assert "contact tags 2 / 3" in panel.table.value and "1 missing" in panel.table.value
        diagnostics.differing = [{
            "organisation": "Acme", "table": "contact_tags", "row": "contact tag",
            "id": "contact_tags-1", "contact_id": CONTACT, "contact": "Ada Lovelace",
            "name_on_server": "", "status": "missing_locally", "difference": "missing here",
        }]
        assert "1: 1 contact tag" in panel.rows_box.children[0].value
        assert "contact tags" in SyncPanel.help_text and "contact tags" in ClearingPanel.help_text
        print("every panel shows contact_tags")

    asyncio.run(main())
    """
)

_TAGS_SPEC = """
CONTACT_TAGS: Final = TableSpec(
    "contact_tags",
    (
        _uuid("id"),
        _uuid("contact_id"),
        _uuid("organisation_id"),
        _text("tag", required=True),
        _stamp("created_at"),
        _stamp("updated_at"),
    ),
    parent=("contact_id", "contacts"),
    indexes=(("organisation_id",), ("contact_id",)),
)
SYNCED_TABLES: Final = (CONTACTS, NOTES, CONTACT_ASSIGNMENTS, CONTACT_TAGS)"""


@pytest.mark.timeout(120)
def test_a_fourth_synced_table_shows_in_every_panel_with_no_widget_change(tmp_path: Path) -> None:
    package = Path(contactsync_kit.__file__).parent
    copy = tmp_path / "contactsync_kit"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    schemas = copy / "schemas.py"
    three = "SYNCED_TABLES: Final = (CONTACTS, NOTES, CONTACT_ASSIGNMENTS)"
    source = schemas.read_text(encoding="utf-8")
    assert source.count(three) == 1, "the spec's one list of synced tables moved"
    schemas.write_text(source.replace(three, _TAGS_SPEC.strip()), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-c", _FOURTH_TABLE_PANELS],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "every panel shows contact_tags" in run.stdout
