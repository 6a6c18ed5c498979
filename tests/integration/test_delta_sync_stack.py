"""Verified incremental sync against the real local stack: after a first full sync, every kind
of server change leaves the cache equal to what RLS shows the user, by a verified delta.

Each test seeds its own small world (its own seed number), so the session stack stays clean.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import polars as pl
import psycopg
import pytest

from contactsync_kit import (
    ContactCacheSyncRepository,
    SyncErrorKind,
    SyncFailure,
    SyncSuccess,
    SystemClock,
    UserSession,
    start_session,
    verify_cache,
)
from contactsync_kit.delta_store import DeltaStore
from contactsync_kit.devstack import DevStack, SeedResult
from contactsync_kit.devstack.migrations import migration_files
from contactsync_kit.digest import total
from contactsync_kit.mappers import map_table_rows
from contactsync_kit.remote import RemoteReader, SupabaseDeltaSource
from contactsync_kit.schemas import DATA_TABLES, TABLE_COLUMNS

pytestmark = pytest.mark.integration

_seeds = itertools.count(4101)


@pytest.fixture
def world(stack: DevStack) -> SeedResult:
    """A world of its own per test: two organisations, two chapters each."""
    return stack.seed(
        organisations=2,
        chapters_per_org=2,
        users_per_org=3,
        contacts_per_org=[30, 10],
        notes_per_contact=3,
        assignments_per_contact=1,
        seed=next(_seeds),
    )


async def open_session(
    stack: DevStack, world: SeedResult, label: str, tmp_path: Path
) -> UserSession:
    user = world.user(label)
    return await start_session(
        stack.url,
        stack.anon_key,
        email=user.email,
        password=user.password,
        cache_path=tmp_path / f"{label}.sqlite3",
    )


@pytest.fixture
async def admin(stack: DevStack, world: SeedResult, tmp_path: Path) -> AsyncIterator[UserSession]:
    session = await open_session(stack, world, "org1-admin", tmp_path)
    yield session
    session.close()


async def visible(session: UserSession, org: str) -> dict[str, pl.DataFrame]:
    """Every row the user may see, read through RLS with the user's own client."""
    reader = RemoteReader(session.client)
    result = {}
    for table in DATA_TABLES:
        rows = await reader.rows(table, "*", [("organisation_id", "eq", org)])
        frame = map_table_rows(rows, table, org)
        assert isinstance(frame, pl.DataFrame), frame
        result[table] = frame.sort("id")
    return result


def cached(session: UserSession, org: str) -> dict[str, pl.DataFrame]:
    return {
        t: session.cache.read_table(t, org, columns=list(TABLE_COLUMNS[t])).sort("id")
        if session.cache.counts(org)[t]
        else pl.DataFrame(schema={c: pl.String for c in TABLE_COLUMNS[t]})
        for t in DATA_TABLES
    }


async def assert_cache_equals_server(session: UserSession, org: str) -> None:
    server, local = await visible(session, org), cached(session, org)
    for table in DATA_TABLES:
        assert local[table].rows() == server[table].rows(), table


async def synced_delta(session: UserSession, org: str) -> SyncSuccess:
    result = await session.repository.sync_contacts_for_organisation(org, mode="delta")
    assert isinstance(result, SyncSuccess), result
    assert result.mode == "delta" and result.verified, result
    await assert_cache_equals_server(session, org)
    return result


async def first_full(session: UserSession, org: str) -> SyncSuccess:
    result = await session.repository.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncSuccess) and result.mode == "full" and result.verified, result
    return result


def some_contact(stack: DevStack, org: str, chapter: str | None = None, offset: int = 0) -> str:
    where = "AND chapter_id = %s" if chapter else ""
    params = [org, chapter] if chapter else [org]
    return str(
        stack.sql(
            f"SELECT id::text FROM contacts WHERE organisation_id = %s {where} "
            f"ORDER BY id OFFSET {offset} LIMIT 1",
            *params,
        )[0][0]
    )


# -- the changes that arrive as changes ------------------------------------------------------


async def test_first_sync_is_full_and_verified_then_an_unchanged_resync_is_an_empty_delta(
    world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    first = await admin.repository.sync_contacts_for_organisation(org, mode="delta")
    assert isinstance(first, SyncSuccess) and first.mode == "full" and first.verified
    assert first.fallback_reason and "no verified earlier sync" in first.fallback_reason
    again = await synced_delta(admin, org)
    assert (again.rows_changed, again.rows_deleted) == (0, 0)


async def test_the_digest_state_is_wiped_with_the_cache(
    world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    await first_full(admin, org)
    store, user = DeltaStore(admin.cache), world.user("org1-admin").user_id
    assert store.load(org, user) is not None
    await admin.repository.clear_cache()
    assert store.load(org, user) is None
    with admin.cache.store.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM sync_digest_buckets").scalar() == 0
    after = await admin.repository.sync_contacts_for_organisation(org)
    assert isinstance(after, SyncSuccess) and after.mode == "full" and after.verified


@pytest.mark.parametrize(
    "change",
    [
        "contact renamed",
        "note body edited",
        "note deleted",
        "contact deleted with its notes",
        "contact inserted with notes",
        "assignment deleted",
        "contact updated, updated_at kept",
    ],
)
async def test_a_server_change_is_synced_by_a_verified_delta(
    stack: DevStack, world: SeedResult, admin: UserSession, change: str
) -> None:
    org = world.organisation_ids[0]
    await first_full(admin, org)
    contact = some_contact(stack, org, offset=3)
    if change == "contact renamed":
        stack.sql("UPDATE contacts SET full_name = 'Renamed Person' WHERE id = %s", contact)
    elif change == "note body edited":
        stack.sql(
            "UPDATE notes SET body = 'edited body' WHERE id = (SELECT id FROM notes "
            "WHERE contact_id = %s ORDER BY id LIMIT 1)",
            contact,
        )
    elif change == "note deleted":
        stack.sql(
            "DELETE FROM notes WHERE id = (SELECT id FROM notes WHERE contact_id = %s "
            "ORDER BY id LIMIT 1)",
            contact,
        )
    elif change == "contact deleted with its notes":
        stack.sql("DELETE FROM contacts WHERE id = %s", contact)
    elif change == "contact inserted with notes":
        new = stack.sql(
            "INSERT INTO contacts (organisation_id, full_name) VALUES (%s, "
            "'New Person') RETURNING id::text",
            org,
        )[0][0]
        stack.sql(
            "INSERT INTO notes (contact_id, organisation_id, body) VALUES "
            "(%s, %s, 'first'), (%s, %s, 'second')",
            new,
            org,
            new,
            org,
        )
    elif change == "assignment deleted":
        stack.sql("DELETE FROM contact_assignments WHERE contact_id = %s", contact)
    else:
        stack.sql(
            "UPDATE contacts SET phone = '+1 555 0100', updated_at = updated_at WHERE id = %s",
            contact,
        )
    result = await synced_delta(admin, org)
    assert result.rows_changed + result.rows_deleted >= 1


async def test_an_update_that_leaves_updated_at_unchanged_still_moves_it_and_the_digest(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    contact = some_contact(stack, org)
    source = SupabaseDeltaSource(admin.client, SystemClock())
    before = {r.table: r.digest for r in await source.digest(org)}
    stamp = stack.sql("SELECT updated_at FROM contacts WHERE id = %s", contact)[0][0]
    stack.sql("UPDATE contacts SET full_name = full_name WHERE id = %s", contact)
    assert stack.sql("SELECT updated_at FROM contacts WHERE id = %s", contact)[0][0] > stamp
    after = {r.table: r.digest for r in await source.digest(org)}
    assert after["contacts"] != before["contacts"]
    assert after["notes"] == before["notes"]


# -- the changes that do not arrive as changes -----------------------------------------------


async def test_a_transaction_that_commits_after_the_sync_is_caught_by_the_digest(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    await first_full(admin, org)
    late, other = some_contact(stack, org, offset=1), some_contact(stack, org, offset=2)
    with psycopg.connect(stack.database_url) as conn:
        # Begins before the sync; its timestamp is older than anything the sync will see.
        conn.execute(
            "UPDATE contacts SET full_name = 'Late Commit', "
            "updated_at = now() - interval '1 hour' WHERE id = %s",
            (late,),
        )
        stack.sql("UPDATE contacts SET full_name = 'Seen First' WHERE id = %s", other)
        during = await synced_delta(admin, org)
        assert during.rows_changed >= 1
        conn.commit()
    after = await synced_delta(admin, org)
    assert after.reconciled and after.fallback_reason is None
    names = admin.cache.read_table("contacts", org, columns=["id", "full_name"])
    assert names.filter(pl.col("id") == late)["full_name"].to_list() == ["Late Commit"]


async def test_a_chapter_move_hides_a_contact_from_a_chapter_bound_user(
    stack: DevStack, world: SeedResult, tmp_path: Path
) -> None:
    org = world.organisation_ids[0]
    chapters = world.chapter_ids[org]
    session = await open_session(stack, world, "org1-coordinator", tmp_path)
    try:
        await first_full(session, org)
        moved = some_contact(stack, org, chapter=chapters[0])
        assert moved in set(session.cache.read_table("contacts", org)["id"].to_list())
        stack.sql("UPDATE contacts SET chapter_id = %s WHERE id = %s", chapters[1], moved)
        result = await synced_delta(session, org)
        assert result.rows_deleted >= 1
        assert moved not in set(session.cache.read_table("contacts", org)["id"].to_list())
        assert (
            session.cache.read_table("notes", org).filter(pl.col("contact_id") == moved).height == 0
        )
    finally:
        session.close()


async def test_a_revoked_membership_empties_that_organisation(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org, user = world.organisation_ids[0], world.user("org1-admin")
    await first_full(admin, org)
    stack.remove_membership(user.user_id, org)
    result = await admin.repository.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncSuccess) and result.verified, result
    assert admin.cache.counts(org) == dict.fromkeys(DATA_TABLES, 0)


# -- the digest itself -----------------------------------------------------------------------


async def test_the_local_digest_equals_the_servers_on_the_same_rows(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    # Fractional microseconds, as triggers write them.
    stack.sql("UPDATE notes SET body = body || '.' WHERE organisation_id = %s", org)
    await first_full(admin, org)
    local = DeltaStore(admin.cache).actual_digests(org)
    source = SupabaseDeltaSource(admin.client, SystemClock())
    server = {r.table: (r.count, r.digest) for r in await source.digest(org)}
    for table in DATA_TABLES:
        assert total(local[table]).agrees_with(server[table]), table
    buckets = {(r.table, r.bucket): (r.count, r.digest) for r in await source.digest(org, 3)}
    assert buckets == {(t, b): (d.count, d.value) for t in DATA_TABLES for b, d in local[t].items()}


async def test_the_digest_function_is_for_signed_in_users_only(
    stack: DevStack, world: SeedResult
) -> None:
    privileges = stack.sql(
        "SELECT has_function_privilege('anon', 'public.contactsync_digest(uuid, integer, text[])', "
        "'EXECUTE'), has_function_privilege('authenticated', "
        "'public.contactsync_digest(uuid, integer, text[])', 'EXECUTE'), p.prosecdef, p.proconfig "
        "FROM pg_proc p WHERE p.proname = 'contactsync_digest'"
    )
    assert privileges == [(False, True, False, ['search_path=""'])]


async def test_a_full_sync_that_does_not_match_the_servers_digest_writes_nothing(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    await first_full(admin, org)
    before = cached(admin, org)
    contact = some_contact(stack, org)

    class RacingSource(SupabaseDeltaSource):
        async def digest(self, organisation_id: str, prefix_length: int = 0):  # type: ignore[no-untyped-def]
            # A write lands between the last page and the digest: the rows received are
            # no longer what the server holds.
            stack.sql("UPDATE contacts SET full_name = 'Raced' WHERE id = %s", contact)
            return await super().digest(organisation_id, prefix_length)

    # The source is the repository's constructor parameter (the seam a test replaces).
    racing = ContactCacheSyncRepository(
        None, admin.cache, SystemClock(), source=RacingSource(admin.client, SystemClock())
    )
    result = await racing.sync_contacts_for_organisation(org, mode="full")
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.INCOMPLETE
    after = cached(admin, org)
    assert all(after[t].equals(before[t]) for t in DATA_TABLES)


async def test_a_server_without_the_digest_function_gets_a_full_sync_with_the_reason(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    await first_full(admin, org)
    source = SupabaseDeltaSource(admin.client, SystemClock())
    stack.sql("DROP FUNCTION public.contactsync_digest(uuid, integer, text[])")
    try:
        stack.reload_schema()
        result = await admin.repository.sync_contacts_for_organisation(org, mode="delta")
        assert isinstance(result, SyncSuccess), result
        assert result.mode == "full" and not result.verified
        assert result.fallback_reason and "no digest function" in result.fallback_reason
        await assert_cache_equals_server(admin, org)
    finally:
        sql = dict(migration_files())["0006_sync_digest_tables.sql"]
        stack.sql(sql)
        stack.reload_schema()
        deadline = time.monotonic() + 30
        while True:  # until PostgREST's schema cache has the function again
            try:
                await source.digest(org)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def test_verify_cache_tells_equal_from_drifted_in_one_request(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    await first_full(admin, org)
    assert (await verify_cache(admin.client, admin.cache, org)).line() == "equal to the server ✓"
    stack.sql(
        "DELETE FROM notes WHERE id = (SELECT id FROM notes WHERE organisation_id = %s "
        "ORDER BY id LIMIT 1)",
        org,
    )
    drifted = await verify_cache(admin.client, admin.cache, org)
    assert drifted.verdict == "drifted" and not drifted.tables["notes"].equal
    assert drifted.tables["notes"].cached_rows == drifted.tables["notes"].server_rows + 1
    assert drifted.tables["contacts"].equal
    await synced_delta(admin, org)
    assert (await verify_cache(admin.client, admin.cache, org)).equal
