"""The audit's tables, probes, truth SQL and argument heuristic follow the spec it is given.

A test-only fourth synced table (``contact_tags``, a child of contacts like notes) is probed,
read from ground truth and recognised in function arguments with no audit code naming it;
`tests/integration/test_rls_audit_fourth_table.py` runs the whole audit with it on the stack.
"""

from __future__ import annotations

import polars as pl

from contactsync_kit import schemas
from contactsync_kit.rls_audit.database import universe_sql
from contactsync_kit.rls_audit.frames import (
    AUDIT_TABLES,
    PROBES_BY_TABLE,
    SCOPE_TABLES,
    SURFACE_SCHEMA,
    UNFILTERED_BY_TABLE,
    Probe,
    audit_tables,
    probes_by_table,
    root_of,
    unfiltered_by_table,
)
from contactsync_kit.rls_audit.plan import caller_plan
from contactsync_kit.rls_audit.surface import argument_kind, function_targets, surface_targets
from contactsync_kit.schemas import Column, TableSpec

TAGS = TableSpec(
    "contact_tags",
    (
        Column("id", required=True, uuid=True),
        Column("contact_id", required=True, uuid=True),
        Column("organisation_id", required=True, uuid=True),
        Column("tag", required=True),
        Column("created_at", required=True, timestamp=True),
        Column("updated_at", required=True, timestamp=True),
    ),
    parent=("contact_id", "contacts"),
)
SPEC = (*schemas.SYNCED_TABLES, TAGS)


def test_the_default_tables_are_the_scoping_tables_then_the_spec() -> None:
    assert (*SCOPE_TABLES, *schemas.DATA_TABLES) == AUDIT_TABLES
    assert audit_tables(SPEC) == (*AUDIT_TABLES, "contact_tags")
    assert root_of(SPEC).name == schemas.ROOT_TABLE


def test_a_child_table_gets_a_child_tables_probes() -> None:
    filtered, unfiltered = probes_by_table(SPEC), unfiltered_by_table(SPEC)
    child = schemas.EMBEDDED_TABLES[0]
    assert filtered["contact_tags"] == filtered[child] == PROBES_BY_TABLE[child]
    assert unfiltered["contact_tags"] == unfiltered[child] == UNFILTERED_BY_TABLE[child]
    assert filtered["contact_tags"] == (
        Probe.SELECT,
        Probe.COUNT,
        Probe.EMBEDDED,
        Probe.FOREIGN_IDS,
    )
    # The search is the root's alone; the scoping tables get select and count only.
    assert Probe.SEARCH in filtered[schemas.ROOT_TABLE]
    assert Probe.ALL_SEARCH in unfiltered[schemas.ROOT_TABLE]
    assert {filtered[t] for t in SCOPE_TABLES} == {(Probe.SELECT, Probe.COUNT)}
    assert {unfiltered[t] for t in SCOPE_TABLES} == {(Probe.ALL_ROWS, Probe.ALL_COUNT)}


def test_the_truth_sql_has_one_select_per_table_reaching_the_root_through_parent() -> None:
    sql = universe_sql(SPEC)
    assert sql.count("UNION ALL") == len(SCOPE_TABLES) + len(SPEC) - 1
    assert (
        "SELECT 'contact_tags', t0.organisation_id::text, t0.id::text, t1.chapter_id::text, "
        "t1.id::text, NULL, NULL::boolean FROM public.contact_tags t0 "
        "JOIN public.contacts t1 ON t1.id = t0.contact_id"
    ) in sql
    assert "t0.full_name ILIKE %(pattern)s FROM public.contacts t0" in sql
    assert "contact_tags" not in universe_sql()


def test_a_grandchild_reaches_the_root_through_each_parent() -> None:
    """A row two levels down takes its chapter and root id from the root row."""
    votes = TableSpec(
        "tag_votes",
        (Column("id"), Column("tag_id"), Column("organisation_id")),
        parent=("tag_id", "contact_tags"),
    )
    sql = universe_sql((*SPEC, votes))
    assert (
        "t1.chapter_id" not in sql.split("'tag_votes'")[1]
        and "t2.chapter_id::text, t2.id::text" in sql.split("'tag_votes'")[1]
    )
    assert (
        "FROM public.tag_votes t0 JOIN public.contact_tags t1 ON t1.id = t0.tag_id "
        "JOIN public.contacts t2 ON t2.id = t1.contact_id"
    ) in sql


def test_arguments_name_the_tables_of_the_spec() -> None:
    assert argument_kind("p_tag_id uuid", SPEC) == "contact_tags"
    assert argument_kind("tag_ids uuid[]", SPEC) == "contact_tags"
    assert argument_kind("p_tag_id uuid") == schemas.ROOT_TABLE  # not in the kit's spec
    assert argument_kind("p_stage uuid", SPEC) == schemas.ROOT_TABLE  # a word, not a part
    assert argument_kind("p_note_id uuid", SPEC) == "notes"
    assert argument_kind("p_assignment_ids uuid[]") == "contact_assignments"
    assert argument_kind("p_contact_id uuid", SPEC) == "contacts"
    assert argument_kind("id uuid", SPEC) == "contacts"
    assert argument_kind("p_author_id uuid", SPEC) == "organisation_members"


def _exposed(*rows: tuple[str, str, list[str], int, bool, list[str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (
                "public",
                name,
                kind,
                ["authenticated"],
                "authenticated:SELECT",
                columns,
                None,
                None,
                False,
                True,
                required,
                returns_set,
                "postgres",
                None,
                arguments,
            )
            for name, kind, columns, required, returns_set, arguments in rows
        ],
        schema=SURFACE_SCHEMA,
        orient="row",
    )


def test_the_surface_leaves_the_spec_tables_to_the_matrix() -> None:
    surface = _exposed(
        ("contact_tags", "table", ["id", "organisation_id"], 0, False, []),
        ("tags_of(p_tag_id uuid)", "function", ["id"], 1, True, ["p_tag_id uuid"]),
    )
    targets, _ = surface_targets(surface, ["public"], SPEC)
    assert targets == []  # the matrix probes contact_tags itself
    targets, _ = surface_targets(surface, ["public"])
    assert [t.label for t in targets] == ["public.contact_tags"]  # unknown: an exposed object
    functions, skipped = function_targets(surface, ["public"], SPEC)
    assert skipped == {}
    assert [(f.rpc, f.arguments) for f in functions] == [
        ("tags_of", (("p_tag_id", "contact_tags", False),))
    ]


def test_a_caller_plan_carries_the_tables_and_samples_their_foreign_ids() -> None:
    universe = pl.DataFrame(
        [
            ("contact_tags", "org-2", "t9", None, "c9", None, None),
            ("contacts", "org-2", "c9", None, "c9", None, False),
        ],
        schema={
            "table": pl.String,
            "organisation_id": pl.String,
            "id": pl.String,
            "chapter_id": pl.String,
            "root_id": pl.String,
            "user_id": pl.String,
            "name_match": pl.Boolean,
        },
        orient="row",
    )
    expected = pl.DataFrame(
        schema={
            "user": pl.String,
            "table": pl.String,
            "organisation_id": pl.String,
            "id": pl.String,
        }
    )
    members = pl.DataFrame(schema={"user": pl.String, "organisation_id": pl.String})
    plan = caller_plan(
        "vol", ["org-2"], universe, expected, members, search_pattern="*", sample=5, tables=SPEC
    )
    assert plan.tables == SPEC
    assert plan.foreign == {("org-2", "contact_tags"): ["t9"], ("org-2", "contacts"): ["c9"]}
    default = caller_plan(
        "vol", ["org-2"], universe, expected, members, search_pattern="*", sample=5
    )
    assert default.foreign == {("org-2", "contacts"): ["c9"]}
