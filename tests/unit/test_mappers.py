"""The pure mapper: raw rows -> validated frames, or a MappingProblem."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import polars as pl
import pytest

from contactsync_kit import MappedPage, MappingProblem, map_contacts_page
from contactsync_kit.mappers import empty_page
from contactsync_kit.schemas import DATA_TABLES, TABLES, table_schema
from contactsync_kit.testing import fake_contact

ORG = "5f0e7a4e-1111-4c3b-9d2a-000000000001"


def rows(count: int = 3, notes: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [fake_contact(ORG, notes=notes, assignments=1, rng=rng) for _ in range(count)]


def test_maps_rows_to_one_frame_per_table_with_declared_schemas() -> None:
    page = map_contacts_page(rows(), ORG)
    assert isinstance(page, MappedPage)
    assert page.counts() == {"contacts": 3, "notes": 6, "contact_assignments": 3}
    for table, frame in page.frames().items():
        assert frame.schema == table_schema(table)
    assert page["notes"]["contact_id"].to_list()[:2] == [page["contacts"]["id"][0]] * 2


def test_bytes_and_parsed_rows_map_to_the_same_frames() -> None:
    raw = rows()
    from_list = map_contacts_page(raw, ORG)
    from_bytes = map_contacts_page(json.dumps(raw).encode(), ORG)
    assert isinstance(from_list, MappedPage) and isinstance(from_bytes, MappedPage)
    for table in DATA_TABLES:
        assert from_list.frames()[table].equals(from_bytes.frames()[table])


def test_timestamps_are_normalised_to_utc_and_uuids_to_lower_case() -> None:
    raw = rows(1)
    raw[0]["updated_at"] = "2026-03-01T12:00:00.5+02:00"
    raw[0]["id"] = raw[0]["id"].upper()
    for child in raw[0]["notes"]:
        child["contact_id"] = child["contact_id"].upper()
    page = map_contacts_page(raw, ORG)
    assert isinstance(page, MappedPage)
    assert page["contacts"]["updated_at"][0] == "2026-03-01T10:00:00.500000Z"
    assert page["contacts"]["id"][0] == raw[0]["id"].lower()


@pytest.mark.parametrize(
    ("sent", "cached"),
    [
        # PostgREST's UTC form, fractional digits trimmed: normalised by string operations.
        ("2026-03-01T12:00:00+00:00", "2026-03-01T12:00:00.000000Z"),
        ("2026-03-01T12:00:00.5+00:00", "2026-03-01T12:00:00.500000Z"),
        ("2026-03-01T12:00:00.123456+00:00", "2026-03-01T12:00:00.123456Z"),
        ("2024-02-29T23:59:59.000001Z", "2024-02-29T23:59:59.000001Z"),
        ("2000-02-29T00:00:00+00:00", "2000-02-29T00:00:00.000000Z"),  # a 400th year leaps
        ("2026-03-01T12:00:00.25+00", "2026-03-01T12:00:00.250000Z"),
        # Any other form is parsed: another offset, a space for the T.
        ("2026-03-01T12:00:00.5-03:30", "2026-03-01T15:30:00.500000Z"),
        ("2026-03-01 12:00:00+00:00", "2026-03-01T12:00:00.000000Z"),
    ],
)
def test_every_timestamp_form_is_cached_in_one_form(sent: str, cached: str) -> None:
    raw = rows(2)
    for contact in raw:  # every row alike: the fast path is taken per column
        contact["updated_at"] = sent
        for note in contact["notes"]:
            note["created_at"] = sent
    page = map_contacts_page(raw, ORG)
    assert isinstance(page, MappedPage)
    assert page["contacts"]["updated_at"].to_list() == [cached, cached]
    assert set(page["notes"]["created_at"].to_list()) == {cached}


@pytest.mark.parametrize(
    "impossible",
    [
        "2023-02-30T10:00:00+00:00",
        "2023-04-31T10:00:00.5+00:00",
        "2023-13-01",
        "2023-02-29T10:00:00+00:00",  # not a leap year
        "1900-02-29T10:00:00+00:00",  # a century that is not a 400th year
        "2024-02-31T10:00:00Z",
        "2024-11-31T10:00:00Z",
    ],
)
def test_an_impossible_date_in_the_usual_form_is_refused(impossible: str) -> None:
    raw = rows(2)
    raw[1]["updated_at"] = impossible
    page = map_contacts_page(raw, ORG)
    assert isinstance(page, MappingProblem)
    assert page.reasons == {"contacts.updated_at not a timestamp": 1}


def test_missing_optional_columns_and_extra_columns_are_fine() -> None:
    raw = rows(1)
    del raw[0]["phone"]
    raw[0]["favourite_colour"] = "teal"
    page = map_contacts_page(raw, ORG)
    assert isinstance(page, MappedPage)
    assert page["contacts"]["phone"][0] is None


def test_empty_page_maps_to_empty_frames() -> None:
    empties: tuple[Any, ...] = ([], b"[]", b"  []\n")
    for raw in empties:
        page = map_contacts_page(raw, ORG)
        assert isinstance(page, MappedPage) and page.counts() == dict.fromkeys(DATA_TABLES, 0)


def _break(path: tuple[Any, ...], value: Any) -> list[dict[str, Any]]:
    raw = copy.deepcopy(rows())
    target: Any = raw
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ((0, "id"), KeyError, "contacts.id missing"),
        ((0, "id"), None, "contacts.id missing"),
        ((0, "id"), "not-a-uuid", "contacts.id not a UUID"),
        ((0, "id"), 12345, "contacts.id not a UUID"),
        ((1, "chapter_id"), "chapter-7", "contacts.chapter_id not a UUID"),
        ((1, "updated_at"), "yesterday", "contacts.updated_at not a timestamp"),
        ((1, "created_at"), None, "contacts.created_at missing"),
        (
            (2, "organisation_id"),
            "00000000-0000-4000-8000-000000000002",
            "contacts rows of another organisation",
        ),
        ((2, "status"), "deleted", "contacts.status unknown"),
        ((0, "full_name"), None, "contacts.full_name missing"),
        (
            (0, "notes", 0, "contact_id"),
            "00000000-0000-4000-8000-000000000003",
            "notes under the wrong contact",
        ),
        (
            (0, "notes", 1, "organisation_id"),
            "00000000-0000-4000-8000-000000000002",
            "notes rows of another organisation",
        ),
        ((1, "notes", 0, "id"), None, "notes.id missing"),
        ((1, "notes", 0, "body"), None, "notes.body missing"),
        ((2, "contact_assignments", 0, "role"), "owner", "contact_assignments.role unknown"),
        (
            (2, "contact_assignments", 0, "assigned_at"),
            "31/12/2026",
            "contact_assignments.assigned_at not a timestamp",
        ),
        ((0, "notes"), None, "contacts without an embedded notes array"),
        (
            (0, "contact_assignments"),
            KeyError,
            "contacts without an embedded contact_assignments array",
        ),
    ],
)
def test_bad_values_fail_the_whole_page_with_a_counted_reason(
    path: tuple[Any, ...], value: Any, reason: str
) -> None:
    problem = map_contacts_page(_break(path, value), ORG)
    assert isinstance(problem, MappingProblem)
    assert problem.kind == "invalid_data"
    assert problem.reasons.get(reason) == 1, problem.reasons


def test_repeated_ids_are_refused() -> None:
    raw = rows(2)
    raw[1]["id"] = raw[0]["id"]
    for child in raw[1]["notes"] + raw[1]["contact_assignments"]:
        child["contact_id"] = raw[0]["id"]
    problem = map_contacts_page(raw, ORG)
    assert isinstance(problem, MappingProblem) and "contacts ids repeated" in problem.reasons


def test_problem_messages_hold_counts_not_values() -> None:
    raw = rows(1)
    raw[0]["updated_at"] = "Ada Lindqvist"
    problem = map_contacts_page(raw, ORG)
    assert isinstance(problem, MappingProblem) and "Ada" not in problem.message


@pytest.mark.parametrize(
    "raw",
    [
        "<html>Bad gateway</html>",
        {"message": "hi"},
        None,
        42,
        b'{"a": 1}',
        b"<html>",
        [1, 2, 3],
        b"[1, 2",
    ],
)
def test_a_body_that_is_not_a_list_of_rows_is_invalid_data(raw: Any) -> None:
    problem = map_contacts_page(raw, ORG)
    assert isinstance(problem, MappingProblem) and problem.kind == "invalid_data"


def test_embedded_array_at_the_cap_is_incomplete() -> None:
    raw = rows(2, notes=5)
    assert isinstance(map_contacts_page(raw, ORG, embedded_cap=6), MappedPage)
    problem = map_contacts_page(raw, ORG, embedded_cap=5)
    assert isinstance(problem, MappingProblem) and problem.kind == "incomplete"


def test_mapping_is_vectorised_at_scale() -> None:
    rng = random.Random(1)
    raw = [fake_contact(ORG, notes=3, rng=rng) for _ in range(5_000)]
    page = map_contacts_page(json.dumps(raw).encode(), ORG)
    assert isinstance(page, MappedPage) and page["notes"].height == 15_000
    assert page["notes"].filter(pl.col("contact_id").is_null()).height == 0


def _spec_breaks() -> list[tuple[tuple[Any, ...], Any, str]]:
    """One broken value per rule the table spec declares, at the right place in a row."""
    where = {
        "contacts": (1,),
        "notes": (1, "notes", 0),
        "contact_assignments": (1, "contact_assignments", 0),
    }
    assert set(where) == set(DATA_TABLES)
    cases: list[tuple[tuple[Any, ...], Any, str]] = []
    for table in DATA_TABLES:
        for column in TABLES[table].columns:
            path = (*where[table], column.name)
            if column.required:
                cases.append((path, None, f"{table}.{column.name} missing"))
            if column.uuid:
                cases.append((path, "nope", f"{table}.{column.name} not a UUID"))
            if column.timestamp:
                cases.append((path, "nope", f"{table}.{column.name} not a timestamp"))
            if column.values is not None:
                cases.append((path, "nope", f"{table}.{column.name} unknown"))
    return cases


@pytest.mark.parametrize(("path", "value", "reason"), _spec_breaks())
def test_every_rule_of_the_table_spec_is_checked(
    path: tuple[Any, ...], value: Any, reason: str
) -> None:
    problem = map_contacts_page(_break(path, value), ORG)
    assert isinstance(problem, MappingProblem), reason
    assert reason in problem.reasons, problem.reasons


def test_mapped_page_frames_are_the_data_tables_in_order() -> None:
    page = map_contacts_page(rows(2), ORG)
    assert isinstance(page, MappedPage)
    assert tuple(page.frames()) == DATA_TABLES
    assert tuple(empty_page().frames()) == DATA_TABLES


def test_pages_mapped_one_after_another_are_each_checked_on_their_own() -> None:
    # The checks are built once per table, organisation and kind of page, and reused: a
    # later page must still be checked for its own organisation and its own forms.
    raw = rows()
    assert isinstance(map_contacts_page(raw, ORG), MappedPage)

    other = map_contacts_page(raw, "5f0e7a4e-1111-4c3b-9d2a-000000000002")
    assert isinstance(other, MappingProblem)
    assert other.reasons["contacts rows of another organisation"] == 3

    shouting = copy.deepcopy(raw)
    for contact in shouting:
        contact["id"] = contact["id"].upper()
        for note in contact["notes"]:
            note["contact_id"] = note["contact_id"].upper()
    folded = map_contacts_page(shouting, ORG)
    assert isinstance(folded, MappedPage)
    assert folded["contacts"]["id"].to_list() == [c["id"] for c in raw]

    raw[1]["updated_at"] = "2026-02-30T10:00:00+00:00"
    impossible = map_contacts_page(raw, ORG)
    assert isinstance(impossible, MappingProblem)
    assert impossible.reasons == {"contacts.updated_at not a timestamp": 1}
