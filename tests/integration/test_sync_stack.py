"""The sync over HTTP through an unmodified supabase-py client, against the local stack.

The stack is real PostgreSQL + PostgREST with real RLS policies (the embedded local stack).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contactsync_kit import (
    ContactCache,
    ContactCacheSyncRepository,
    ManualClock,
    PrivilegedKeyError,
    SyncErrorKind,
    SyncFailure,
    SyncSuccess,
    SystemClock,
    UserSession,
    sign_in,
    start_session,
)
from contactsync_kit.devstack import DevStack, SeededUser, SeedResult
from contactsync_kit.testing import StorageFaults

from ..waiting import until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(stack: DevStack) -> SeedResult:
    """Three organisations with two chapters each and users of every role."""
    return stack.seed(
        organisations=3,
        chapters_per_org=2,
        users_per_org=3,
        contacts_per_org=[40, 25, 10],
        notes_per_contact=3,
        assignments_per_contact=1,
        seed=2101,
    )


async def session_for(
    stack: DevStack, user: SeededUser, tmp_path: Path, **options: object
) -> UserSession:
    return await start_session(
        stack.url,
        stack.anon_key,
        email=user.email,
        password=user.password,
        cache_path=tmp_path / "cache.sqlite3",
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def admin(stack: DevStack, world: SeedResult, tmp_path: Path) -> AsyncIterator[UserSession]:
    session = await session_for(stack, world.user("org1-admin"), tmp_path)
    yield session
    session.close()


def server_ids(
    stack: DevStack, table: str, organisation_id: str, chapter_id: str | None = None
) -> set[str]:
    """Ground truth as superuser: what RLS should let a member see."""
    if table == "contacts":
        query = "SELECT id::text FROM contacts WHERE organisation_id = %s"
    else:
        query = (
            f"SELECT t.id::text FROM {table} t JOIN contacts c ON c.id = t.contact_id "
            "WHERE c.organisation_id = %s"
        )
    params: list[str] = [organisation_id]
    if chapter_id is not None:
        query += " AND c.chapter_id = %s" if table != "contacts" else " AND chapter_id = %s"
        params.append(chapter_id)
    return {row[0] for row in stack.sql(query, *params)}


def cached_ids(cache: ContactCache, table: str, organisation_id: str | None = None) -> set[str]:
    return set(cache.read_table(table, organisation_id)["id"].to_list())


def snapshot(cache: ContactCache) -> dict[str, list[tuple[object, ...]]]:
    return {
        t: cache.read_table(t).rows()
        for t in ("contacts", "notes", "contact_assignments", "sync_state")
    }


# -- the seed's five cases, over HTTP -----------------------------------------------------


async def test_happy_path_caches_the_organisation_with_notes_and_assignments(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    result = await admin.repository.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncSuccess), result
    assert (result.items_synced, result.notes_synced, result.assignments_synced) == (40, 120, 40)
    assert cached_ids(admin.cache, "contacts") == server_ids(stack, "contacts", org)
    assert cached_ids(admin.cache, "notes") == server_ids(stack, "notes", org)
    last = admin.repository.last_synced_at(org)
    assert last is not None and abs((datetime.now(UTC) - last).total_seconds()) < 60


async def test_an_empty_organisation_syncs_to_zero_items(
    stack: DevStack, world: SeedResult, tmp_path: Path
) -> None:
    org_id = stack.sql("INSERT INTO organisations (name) VALUES ('Empty Org') RETURNING id::text")[
        0
    ][0]
    user_id = stack.create_user(
        "empty.org.admin@example.org", "pw-empty-1", memberships=[(org_id, None, "admin")]
    )
    assert user_id
    session = await start_session(
        stack.url,
        stack.anon_key,
        email="empty.org.admin@example.org",
        password="pw-empty-1",
        cache_path=tmp_path / "c.sqlite3",
    )
    result = await session.repository.sync_contacts_for_organisation(org_id)
    assert isinstance(result, SyncSuccess) and result.items_synced == 0
    assert session.repository.last_synced_at(org_id) is not None


@pytest.mark.parametrize("fault", ["postgrest_stopped", "connection_cut", "gateway_503"])
async def test_server_faults_fail_with_the_right_kind_and_leave_the_cache_unchanged(
    stack: DevStack, world: SeedResult, admin: UserSession, fault: str
) -> None:
    org = world.organisation_ids[0]
    assert (await admin.repository.sync_contacts_for_organisation(org)).ok
    before = snapshot(admin.cache)
    if fault == "postgrest_stopped":
        stack.stop_postgrest()
        expected = {SyncErrorKind.REMOTE, SyncErrorKind.NETWORK}
    elif fault == "connection_cut":
        stack.faults.cut_after_bytes = 2000
        expected = {SyncErrorKind.NETWORK}
    else:
        stack.faults.respond(503, b'{"message": "Service Unavailable"}')
        expected = {SyncErrorKind.REMOTE}
    # A full sync: its pages are large enough for the cut (a delta's answers are tiny).
    result = await admin.repository.sync_contacts_for_organisation(org, mode="full")
    assert isinstance(result, SyncFailure) and result.error.kind in expected, result
    assert snapshot(admin.cache) == before


async def test_a_slow_server_times_out(stack: DevStack, world: SeedResult, tmp_path: Path) -> None:
    user = world.user("org1-admin")
    # A token minted without a request: a password sign-in under a 0.5 s timeout could itself
    # time out on a loaded machine.
    client = await sign_in(
        stack.url, stack.anon_key, access_token=stack.access_token_for(user.user_id), timeout_s=0.5
    )
    repo = ContactCacheSyncRepository(client, ContactCache.open(":memory:"), SystemClock())
    stack.faults.latency_s = 1.5
    result = await repo.sync_contacts_for_organisation(world.organisation_ids[0])
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.TIMEOUT


async def test_a_failed_local_write_rolls_back_everything(
    stack: DevStack, world: SeedResult
) -> None:
    user = world.user("org2-admin")
    client = await sign_in(stack.url, stack.anon_key, email=user.email, password=user.password)
    # The assignments merge fails after contacts and notes were merged.
    faults = StorageFaults()
    faults.fail_on("merge", OSError("disk full"), table="contact_assignments")
    cache = ContactCache.open(":memory:", faults=faults)
    repo = ContactCacheSyncRepository(client, cache, SystemClock())
    result = await repo.sync_contacts_for_organisation(world.organisation_ids[1])
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.LOCAL_WRITE
    assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    assert cache.last_synced_at(world.organisation_ids[1]) is None


async def test_parallel_calls_share_one_sync(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    stack.faults.latency_s = 0.2
    org = world.organisation_ids[0]
    first, second = await asyncio.gather(
        admin.repository.sync_contacts_for_organisation(org),
        admin.repository.sync_contacts_for_organisation(org),
    )
    assert first is second and first.ok
    rejected = asyncio.ensure_future(admin.repository.sync_contacts_for_organisation(org))
    await until(lambda: admin.repository.is_syncing(org), "the first click's sync to start")
    second_click = await admin.repository.sync_contacts_for_organisation(
        org, on_concurrent="reject"
    )
    assert isinstance(second_click, SyncFailure)
    assert second_click.error.kind is SyncErrorKind.IN_PROGRESS
    assert (await rejected).ok


# -- RLS scoping ----------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["org1-admin", "org1-coordinator", "org2-volunteer", "multi-org"])
async def test_each_user_caches_exactly_what_rls_lets_them_see(
    stack: DevStack, world: SeedResult, tmp_path: Path, label: str
) -> None:
    user = world.user(label)
    session = await session_for(stack, user, tmp_path)
    for organisation_id in world.organisation_ids:
        result = await session.repository.sync_contacts_for_organisation(organisation_id)
        assert isinstance(result, SyncSuccess), result
        membership = next(
            (m for m in user.memberships if m.organisation_id == organisation_id), None
        )
        for table in ("contacts", "notes", "contact_assignments"):
            expected = (
                set()
                if membership is None
                else server_ids(stack, table, organisation_id, membership.chapter_id)
            )
            assert cached_ids(session.cache, table, organisation_id) == expected, (table, label)
        if membership is None:
            assert result.items_synced == 0
    foreign = {m for m in world.organisation_ids if m not in user.organisation_ids}
    assert not set(session.cache.read_table("contacts")["organisation_id"]) & foreign
    session.close()


# -- completeness under db-max-rows -----------------------------------------------------------


async def test_thousands_of_contacts_arrive_in_full_under_the_row_cap(
    stack: DevStack, tmp_path: Path
) -> None:
    big = stack.seed(
        organisations=1,
        chapters_per_org=1,
        users_per_org=1,
        contacts_per_org=2500,
        notes_per_contact=1,
        assignments_per_contact=1,
        seed=2102,
    )
    session = await session_for(stack, big.user("org1-admin"), tmp_path)
    result = await session.repository.sync_contacts_for_organisation(big.organisation_ids[0])
    assert isinstance(result, SyncSuccess), result
    assert result.items_synced == 2500 and result.pages == 3
    assert session.cache.counts()["contacts"] == 2500


async def test_a_contact_with_more_notes_than_the_cap_fails_incomplete(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    assert (await admin.repository.sync_contacts_for_organisation(org)).ok
    before = snapshot(admin.cache)
    contact_id = stack.sql(
        "SELECT id::text FROM contacts WHERE organisation_id = %s ORDER BY id LIMIT 1", org
    )[0][0]
    stack.sql(
        "INSERT INTO notes (contact_id, organisation_id, body) "
        "SELECT %s, %s, 'bulk note ' || g FROM generate_series(1, 1200) g",
        contact_id,
        org,
    )
    try:
        # The full sync's embedded select is what db-max-rows cuts (a delta pages each table).
        result = await admin.repository.sync_contacts_for_organisation(org, mode="full")
        assert isinstance(result, SyncFailure), "the capped notes array must not be cached"
        assert result.error.kind is SyncErrorKind.INCOMPLETE
        assert snapshot(admin.cache) == before
    finally:
        stack.sql("DELETE FROM notes WHERE body LIKE 'bulk note %%'")


# -- rows that leave ------------------------------------------------------------------------


async def test_deleted_contacts_and_revoked_access_leave_the_cache(
    stack: DevStack, world: SeedResult, tmp_path: Path
) -> None:
    org = world.organisation_ids[2]
    user = world.user("org3-admin")
    session = await session_for(stack, user, tmp_path)
    assert (await session.repository.sync_contacts_for_organisation(org)).items_synced == 10
    gone = stack.sql(
        "DELETE FROM contacts WHERE id = (SELECT id FROM contacts "
        "WHERE organisation_id = %s ORDER BY id LIMIT 1) RETURNING id::text",
        org,
    )[0][0]
    result = await session.repository.sync_contacts_for_organisation(org)
    assert result.items_synced == 9 and gone not in cached_ids(session.cache, "contacts")
    assert cached_ids(session.cache, "notes") == server_ids(stack, "notes", org)

    stack.remove_membership(user.user_id, org)
    try:
        result = await session.repository.sync_contacts_for_organisation(org)
        assert isinstance(result, SyncSuccess) and result.items_synced == 0
        assert session.cache.counts(org) == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    finally:
        stack.add_membership(user.user_id, org, None, "admin")
    session.close()


# -- sessions -------------------------------------------------------------------------------


async def test_an_expired_token_fails_auth_and_keeps_the_cache(
    stack: DevStack, world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    assert (await admin.repository.sync_contacts_for_organisation(org)).ok
    before = snapshot(admin.cache)
    user = world.user("org1-admin")
    expired = stack.access_token_for(user.user_id, lifetime_s=-30)
    client = await sign_in(stack.url, stack.anon_key, access_token=expired)
    # A clock in the past lets the request through, so the server's own verdict is tested.
    server_judged = ContactCacheSyncRepository(client, admin.cache, ManualClock())
    result = await server_judged.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.AUTH
    assert result.error.code == "PGRST301" and result.error.status == 401
    locally_judged = ContactCacheSyncRepository(client, admin.cache, SystemClock())
    result = await locally_judged.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.code == "token_expired"
    assert snapshot(admin.cache) == before


async def test_sign_out_mid_session_fails_auth_instead_of_emptying_the_cache(
    world: SeedResult, admin: UserSession
) -> None:
    org = world.organisation_ids[0]
    assert (await admin.repository.sync_contacts_for_organisation(org)).ok
    before = snapshot(admin.cache)
    await admin.client.auth.sign_out()  # supabase-py falls back to the anon key: 200 []
    result = await admin.repository.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.AUTH
    assert snapshot(admin.cache) == before


async def test_the_logout_path_wipes_the_cache(world: SeedResult, admin: UserSession) -> None:
    assert (await admin.repository.sync_contacts_for_organisation(world.organisation_ids[0])).ok
    removed = await admin.sign_out()
    assert removed["contacts"] == 40 and removed["sync_state"] == 1
    # Logout erased the file itself.
    assert not await asyncio.to_thread(Path(admin.cache.path).exists)


async def test_the_service_role_key_is_refused_before_any_request(
    stack: DevStack, world: SeedResult
) -> None:
    user = world.user("org1-admin")
    with pytest.raises(PrivilegedKeyError):
        await sign_in(stack.url, stack.service_role_key, email=user.email, password=user.password)
    with pytest.raises(PrivilegedKeyError):
        await sign_in(stack.url, stack.anon_key, access_token=stack.service_role_key)
