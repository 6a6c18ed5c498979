"""The audit iterates the spec: a fourth synced table is probed and reported with no audit
code naming it.

The test's spec is the kit's `SYNCED_TABLES` plus a test-only ``contact_tags`` (a child of
contacts, like notes). The table, its notes-like RLS policy and one tag per contact are
created on the session's stack as superuser and dropped at the end of the module, so other
tests never see it. The only thing the audit is told is the spec: `ground_truth_from_database`
takes it as `tables`, and `audit_rls` probes what the truth covers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from contactsync_kit import schemas
from contactsync_kit.devstack import DevStack, SeedResult
from contactsync_kit.rls_audit import (
    ANON_USER,
    AuditReport,
    GroundTruth,
    audit_rls,
    explain_leaks,
    ground_truth_from_database,
    parse_surface_lines,
)
from contactsync_kit.schemas import Column, TableSpec

pytestmark = pytest.mark.integration

TAGS = "contact_tags"
CONTACT_TAGS = TableSpec(
    TAGS,
    (
        Column("id", required=True, uuid=True),
        Column("contact_id", required=True, uuid=True),
        Column("organisation_id", required=True, uuid=True),
        Column("tag", required=True),
        Column("created_at", required=True, timestamp=True),
        Column("updated_at", required=True, timestamp=True),
    ),
    parent=("contact_id", "contacts"),
    indexes=(("organisation_id",), ("contact_id",)),
)
SPEC = (*schemas.SYNCED_TABLES, CONTACT_TAGS)

SURFACE_FILE = (
    Path(__file__).resolve().parents[2]
    / "contactsync_kit"
    / "devstack"
    / "sql"
    / "exposed_surface.txt"
)
#: The table is exposed like notes: accepting it is the one line a new table adds there.
ACCEPTED = [
    *parse_surface_lines(SURFACE_FILE.read_text(encoding="utf-8")),
    f"table public.{TAGS} authenticated",
]

# The fourth-table migration tests/integration/test_fourth_table.py adds to a copy of the kit
# (like notes in 0002/0003), then one tag per contact.
CREATE_SQL = (Path(__file__).resolve().parents[1] / "fourth_table" / "contact_tags.sql").read_text(
    encoding="utf-8"
) + (
    f"INSERT INTO public.{TAGS} (contact_id, organisation_id, tag) "
    "SELECT id, organisation_id, 'tag ' || left(id::text, 4) FROM public.contacts;"
)
LEAKY = "contact_tags_open"


@pytest.fixture(scope="module")
def world(stack: DevStack) -> SeedResult:
    """This module's own organisations (seed 5203): the audited set."""
    return stack.seed(
        organisations=2,
        chapters_per_org=2,
        users_per_org=3,
        contacts_per_org=[8, 6],
        notes_per_contact=1,
        assignments_per_contact=1,
        seed=5203,
    )


@pytest.fixture(scope="module")
def tags_table(stack: DevStack, world: SeedResult) -> Iterator[int]:
    """The fourth table on the stack, one tag per contact; yields how many tags."""
    stack.sql(CREATE_SQL)
    try:
        stack.reload_schema()
        [(count,)] = stack.sql(f"SELECT count(*) FROM public.{TAGS}")
        yield int(count)
    finally:
        stack.sql(f"DROP TABLE IF EXISTS public.{TAGS}")
        stack.reload_schema()


@pytest.fixture(scope="module")
def truth(stack: DevStack, world: SeedResult, tags_table: int) -> GroundTruth:
    return ground_truth_from_database(
        stack.database_url, world.users, world.organisation_ids, tables=SPEC
    )


async def audit(stack: DevStack, world: SeedResult, truth: GroundTruth) -> AuditReport:
    return await audit_rls(
        stack.url,
        stack.anon_key,
        world.users,
        world.organisation_ids,
        truth,
        database_url=stack.database_url,
        expected_surface=ACCEPTED,
        organisation_names=world.organisation_names,
    )


def tag_cells(report: AuditReport) -> pl.DataFrame:
    return report.matrix.filter(pl.col("table") == TAGS)


async def test_the_fourth_table_is_probed_every_way_a_child_table_is(
    stack: DevStack, world: SeedResult, truth: GroundTruth, tags_table: int
) -> None:
    assert truth.universe.filter(pl.col("table") == TAGS).height == tags_table > 0
    report = await audit(stack, world, truth)
    assert report.passed, report.markdown()
    cells = tag_cells(report)
    # The probes of a child table, as notes get them (the search is the root's alone).
    assert (
        set(cells["probe"])
        == set(report.matrix.filter(pl.col("table") == "notes")["probe"])
        == {"select", "count", "embedded", "foreign_ids", "all_rows", "all_count", "all_embedded"}
    )
    assert set(cells["user"]) == {u.label for u in world.users} | {ANON_USER}
    # Not vacuous: members saw tags, exactly the expected ones, plain and embedded.
    for probe in ("select", "embedded", "all_rows", "all_embedded"):
        seen = cells.filter(pl.col("probe") == probe, pl.col("user") != ANON_USER)
        assert seen["visible"].sum() == seen["expected"].sum() > 0, probe
    assert cells.filter(pl.col("user") == ANON_USER)["visible"].sum() == 0
    # Embedded tags were checked against the contact they came under.
    assert report.checks.filter(pl.col("check") == "embedded_match_parent")["passed"].all()
    assert TAGS in report.summary()
    # The catalog-side parts know the table too: it is not an unaccepted exposed object.
    assert report.surface is not None and TAGS in set(report.surface["name"])
    assert report.unaccepted_surface().is_empty()


async def test_a_using_true_policy_on_the_fourth_table_is_a_leak_naming_it(
    stack: DevStack, world: SeedResult, truth: GroundTruth, tags_table: int
) -> None:
    stack.sql(f"CREATE POLICY {LEAKY} ON public.{TAGS} FOR SELECT TO authenticated USING (true)")
    try:
        report = await audit(stack, world, truth)
    finally:
        stack.sql(f"DROP POLICY IF EXISTS {LEAKY} ON public.{TAGS}")
    assert not report.passed
    leaked = report.leaks()
    # Only the fourth table leaks: its contacts stay scoped, so the embedded read does not.
    assert set(leaked["table"]) == {TAGS}
    assert {"select", "count", "foreign_ids", "all_rows", "all_count"} <= set(leaked["probe"])
    assert set(leaked["user"]) == {u.label for u in world.users}  # anon has no grant
    assert leaked["outside_audited_set"].any()  # the session seed's tags leak too
    sources = report.leak_sources.filter(pl.col("table") == TAGS)
    assert set(sources["policy"]) == {LEAKY}
    assert f"policy {LEAKY} on {TAGS}" in explain_leaks(report.leak_sources)
    assert TAGS in set(report.errors()["table"])
    assert f"{TAGS} " in report.markdown()
    # Dropped again, the same audit passes.
    assert (await audit(stack, world, truth)).passed


async def test_without_the_spec_entry_the_audit_does_not_probe_the_table(
    stack: DevStack, world: SeedResult, tags_table: int
) -> None:
    """The spec is what drives it: the kit's own spec leaves the test-only table unprobed."""
    plain = ground_truth_from_database(stack.database_url, world.users, world.organisation_ids)
    assert TAGS not in set(plain.universe["table"])
    report = await audit(stack, world, plain)
    assert tag_cells(report).is_empty()
