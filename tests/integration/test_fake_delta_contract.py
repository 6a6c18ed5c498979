"""`testing.FakeDeltaSource` honours the real delta source's contract, proven on the stack.

The fake is loaded with exactly the rows the real server shows the user; then every query
the delta makes (changes since, ids, buckets, projected columns, keyset pages, the embedded
select) and both digests are asked of both, and the answers must be the same. The unit tests
of the delta (tests/unit/test_delta.py) run on the fake; this is why they may.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from contactsync_kit import SystemClock, start_session
from contactsync_kit.delta_plan import changed_since
from contactsync_kit.devstack import DevStack
from contactsync_kit.digest import BUCKET_PREFIX
from contactsync_kit.remote import DeltaSource, RemoteReader, SupabaseDeltaSource
from contactsync_kit.schemas import DATA_TABLES, EMBEDDED_TABLES
from contactsync_kit.testing import FakeDeltaSource

PAGE = 7  # small pages: the keyset paging is part of the contract


async def all_pages(source: DeltaSource, table: str, org: str, **query: Any) -> list[list[Any]]:
    pages, cursor = [], None
    while True:
        page = json.loads((await source.fetch_rows(table, org, after=cursor, **query)).body)
        pages.append(page)
        if not page:
            return pages
        cursor = page[-1]["id"]


def ids(pages: list[list[dict[str, Any]]]) -> list[list[str]]:
    return [[row["id"] for row in page] for page in pages]


async def test_the_fake_delta_source_answers_every_delta_query_as_the_server_does(
    stack: DevStack, tmp_path: Path
) -> None:
    world = stack.seed(
        organisations=1,
        chapters_per_org=2,
        users_per_org=3,
        contacts_per_org=[25],
        notes_per_contact=2,
        assignments_per_contact=1,
        seed=6101,
    )
    org, user = world.organisation_ids[0], world.user("org1-admin")
    session = await start_session(
        stack.url,
        stack.anon_key,
        email=user.email,
        password=user.password,
        cache_path=tmp_path / "c.sqlite3",
    )
    try:
        real = SupabaseDeltaSource(session.client, SystemClock(), page_size=PAGE)
        fake = FakeDeltaSource(page_size=PAGE)
        reader = RemoteReader(session.client)
        for table in DATA_TABLES:
            fake.tables[table] = await reader.rows(table, "*", [("organisation_id", "eq", org)])
            assert fake.tables[table], table

        for prefix in (0, BUCKET_PREFIX):
            assert set(await fake.digest(org, prefix)) == set(await real.digest(org, prefix))

        for table in DATA_TABLES:
            rows = fake.rows(table, org)
            stamps = sorted(r["updated_at"] for r in rows)
            queries: list[dict[str, Any]] = [
                {},
                {"since": changed_since(stamps[len(stamps) // 2], timedelta(0))},
                {"ids": [r["id"] for r in rows[::3]]},
                {"buckets": sorted({r["id"][:BUCKET_PREFIX] for r in rows[::4]})},
                {
                    "buckets": sorted({r["id"][:BUCKET_PREFIX] for r in rows[1::5]}),
                    "columns": "id,updated_at",
                },
            ]
            for query in queries:
                theirs, ours = (
                    await all_pages(real, table, org, **query),
                    await all_pages(fake, table, org, **query),
                )
                assert ids(ours) == ids(theirs), (table, query)
                # Each filter selects some rows, not all: the comparison says something.
                assert query == {} or 0 < sum(map(len, ours)) < len(rows), (table, query)
                assert [sorted(r) for p in ours for r in p] == [
                    sorted(r) for p in theirs for r in p
                ], "the same columns"

        cursor, with_count = None, True
        while True:
            real_page = await real.fetch_page(org, after=cursor, with_count=with_count)
            fake_page = await fake.fetch_page(org, after=cursor, with_count=with_count)
            assert (fake_page.total, fake_page.rows, fake_page.last_key) == (
                real_page.total,
                real_page.rows,
                real_page.last_key,
            )
            mine, server = json.loads(fake_page.body), json.loads(real_page.body)
            assert [r["id"] for r in mine] == [r["id"] for r in server]
            for a, b in zip(mine, server, strict=True):
                for table in EMBEDDED_TABLES:
                    assert sorted(c["id"] for c in a[table]) == sorted(c["id"] for c in b[table])
            if not server:
                break
            cursor, with_count = server[-1]["id"], False
    finally:
        session.close()
