"""Fetching a large organisation several pages at a time: id ranges, cursors off raw bodies."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from pathlib import Path

import pytest

from contactsync_kit import ContactCache, ContactCacheSyncRepository, ManualClock, SyncSuccess
from contactsync_kit.paging import id_ranges, pages_needed
from contactsync_kit.remote import last_row_key
from contactsync_kit.testing import FakeContactSource, fake_contact


def test_id_ranges_cover_every_id_above_the_cursor_once_in_order() -> None:
    after = "3fffffff-ffff-4fff-bfff-ffffffffffff"
    ranges = id_ranges(after, 9_500, 1000)
    assert len(ranges) == 11  # about 900 rows each: a second page is rarely needed
    assert ranges[0][0] == after and ranges[-1][1] is None
    for (_, upto), (start, _) in itertools.pairwise(ranges):
        assert upto == start
    bounds = [uuid.UUID(start) for start, _ in ranges]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
    assert pages_needed(0, 1000) == 0 and pages_needed(1001, 1000) == 2


@pytest.mark.parametrize("indent", [None, 2])
def test_the_cursor_is_read_off_the_end_of_the_raw_body(indent: int | None) -> None:
    rows = [fake_contact("org", rng=random.Random(seed), notes=3) for seed in range(4)]
    rows[-1]["full_name"] = '{"id": "not this one"}'
    rows[-1]["notes"][0]["body"] = 'quotes \\" and } and ] and a last backslash \\'
    rows[-1]["notes"][1]["body"] = "x" * 50_000  # longer than the first window looked at
    assert last_row_key(json.dumps(rows, indent=indent).encode()) == rows[-1]["id"]


@pytest.mark.parametrize(
    "body", [b"[]", b"<html>captive portal</html>", b'[{"name": 1}]', b'{"id": "a"}', b""]
)
def test_a_body_without_a_last_row_id_gives_no_cursor(body: bytes) -> None:
    assert last_row_key(body) is None


async def test_a_large_organisation_is_fetched_as_id_ranges_and_arrives_in_full(
    tmp_path: Path,
) -> None:
    org = str(uuid.uuid4())
    source = FakeContactSource(page_size=20)
    source.add_contacts(org, 500, notes=2)
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    repo = ContactCacheSyncRepository(None, cache, ManualClock(), source=source, max_rows=20)
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncSuccess), result
    assert (result.items_synced, result.notes_synced) == (500, 1000)
    assert cache.counts(org) == {"contacts": 500, "notes": 1000, "contact_assignments": 500}
    assert set(cache.read_table("contacts", org)["id"]) == {r["id"] for r in source.contacts}
    assert result.pages >= 25 and source.fetches[0] == (None, True)
    assert sum(with_count for _, with_count in source.fetches) == 1, "one count, first page"
