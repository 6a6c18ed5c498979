"""The sync repository against a real supabase-py client over `FakeSupabase` (HTTP level)."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from contactsync_kit import (
    ContactCache,
    ContactCacheSyncRepository,
    ManualClock,
    SyncError,
    SyncErrorKind,
    SyncFailure,
    SyncProgress,
    SyncSuccess,
    sign_in,
)
from contactsync_kit.testing import FakeContactSource, FakeSupabase, StorageFaults, WriteEvent

from ..waiting import HANG_S, until
from .conftest import EMAIL, PASSWORD, repository_for


def snapshot(cache: ContactCache) -> dict[str, list[tuple[object, ...]]]:
    return {
        t: cache.read_table(t).rows()
        for t in ("contacts", "notes", "contact_assignments", "sync_state")
    }


async def synced(repo: ContactCacheSyncRepository, org: str) -> SyncSuccess:
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncSuccess), result
    return result


# -- the seed's five cases ----------------------------------------------------------------


async def test_happy_path_caches_ten_contacts_with_notes_and_sets_last_synced_at(
    repo: ContactCacheSyncRepository,
    fake: FakeSupabase,
    cache: ContactCache,
    clock: ManualClock,
    org: str,
) -> None:
    fake.add_contacts(org, 10, notes=2, assignments=1)
    result = await synced(repo, org)
    assert (result.items_synced, result.notes_synced, result.assignments_synced) == (10, 20, 10)
    assert result.error is None and result.ok
    assert cache.counts(org) == {"contacts": 10, "notes": 20, "contact_assignments": 10}
    assert repo.last_synced_at(org) == clock.now()
    assert len(fake.rest_requests()) == 1, "one embedded query, never N+1"
    query = fake.rest_requests()[0].url.params
    assert query["select"].replace(" ", "") == "*,notes(*),contact_assignments(*)"
    assert query["organisation_id"] == f"eq.{org}"


async def test_empty_organisation_succeeds_with_zero_items(
    repo: ContactCacheSyncRepository, cache: ContactCache, org: str
) -> None:
    result = await synced(repo, org)
    assert result.items_synced == 0 and result.error is None
    assert cache.last_synced_at(org) is not None


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (httpx.ConnectError("connection refused"), SyncErrorKind.NETWORK),
        (httpx.ReadTimeout("slow"), SyncErrorKind.TIMEOUT),
        (httpx.RemoteProtocolError("peer closed connection"), SyncErrorKind.NETWORK),
    ],
)
async def test_network_failure_returns_failure_and_leaves_cache_unchanged(
    repo: ContactCacheSyncRepository,
    fake: FakeSupabase,
    cache: ContactCache,
    org: str,
    fault: Exception,
    kind: SyncErrorKind,
) -> None:
    fake.add_contacts(org, 4)
    await synced(repo, org)
    before = snapshot(cache)
    fake.add_contacts(org, 3)
    fake.raise_on_rest = fault
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure)
    assert result.error.kind is kind
    assert snapshot(cache) == before


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (401, b'{"code":"PGRST301","message":"JWT expired"}', SyncErrorKind.AUTH, "PGRST301"),
        (401, b'{"code":"PGRST303","message":"JWT expired"}', SyncErrorKind.AUTH, "PGRST303"),
        (403, b'{"code":"42501","message":"permission denied"}', SyncErrorKind.AUTH, "42501"),
        (500, b'{"code":"XX000","message":"internal error"}', SyncErrorKind.REMOTE, "XX000"),
        (503, b"<html>Service Unavailable</html>", SyncErrorKind.REMOTE, "503"),
        (504, b"<html>Gateway Timeout</html>", SyncErrorKind.TIMEOUT, "504"),
    ],
)
async def test_postgrest_errors_map_to_kinds_and_leave_cache_unchanged(
    repo: ContactCacheSyncRepository,
    fake: FakeSupabase,
    cache: ContactCache,
    org: str,
    status: int,
    body: bytes,
    kind: SyncErrorKind,
    code: str,
) -> None:
    fake.add_contacts(org, 2)
    await synced(repo, org)
    before = snapshot(cache)
    fake.respond_with = (status, body)
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure)
    assert (result.error.kind, result.error.code) == (kind, code)
    assert snapshot(cache) == before


async def test_write_failure_rolls_back_and_keeps_last_synced_at(
    fake: FakeSupabase, clock: ManualClock, org: str
) -> None:
    faults = StorageFaults()
    cache = ContactCache.open(":memory:", faults=faults)
    repo = await repository_for(fake, cache, clock)
    fake.add_contacts(org, 5, notes=0)
    first = await repo.sync_contacts_for_organisation(org)
    assert isinstance(first, SyncSuccess)
    synced_at = cache.last_synced_at(org)
    before = snapshot(cache)
    fake.add_contacts(org, 5, notes=2)
    # The notes merge fails inside the commit, after the contacts were merged.
    faults.fail_on("merge", OSError("disk full"), table="notes")
    clock.advance(timedelta(hours=1))
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure)
    assert result.error.kind is SyncErrorKind.LOCAL_WRITE
    assert "rolled back" in result.error.message
    assert snapshot(cache) == before, "the contacts upsert must have been rolled back"
    assert cache.last_synced_at(org) == synced_at


async def test_parallel_calls_share_one_fetch_and_both_resolve(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, org: str
) -> None:
    fake.add_contacts(org, 3)
    fake.delay_s = 0.05
    first, second = await asyncio.gather(
        repo.sync_contacts_for_organisation(org), repo.sync_contacts_for_organisation(org)
    )
    assert first is second and isinstance(first, SyncSuccess)
    assert len(fake.rest_requests()) == 1


# -- beyond the seed ------------------------------------------------------------------------


async def test_reject_policy_answers_in_progress_at_once(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, org: str
) -> None:
    fake.add_contacts(org, 3)
    fake.delay_s = 0.05
    running = asyncio.ensure_future(repo.sync_contacts_for_organisation(org))
    await until(lambda: fake.rest_requests(), "the sync's request to reach the server")
    assert repo.is_syncing(org)
    second = await repo.sync_contacts_for_organisation(org, on_concurrent="reject")
    assert isinstance(second, SyncFailure) and second.error.kind is SyncErrorKind.IN_PROGRESS
    assert isinstance(await running, SyncSuccess)
    assert len(fake.rest_requests()) == 1


async def test_different_organisations_sync_side_by_side_without_touching_each_other(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, cache: ContactCache, org: str
) -> None:
    other = "00000000-0000-4000-8000-000000000001"
    fake.add_contacts(org, 4)
    fake.add_contacts(other, 6)
    a, b = await asyncio.gather(
        repo.sync_contacts_for_organisation(org), repo.sync_contacts_for_organisation(other)
    )
    assert (a.items_synced, b.items_synced) == (4, 6)
    other_rows = cache.read_table("contacts", other).rows()
    fake.contacts = [c for c in fake.contacts if c["organisation_id"] != org]
    emptied = await synced(repo, org)
    assert emptied.items_synced == 0 and cache.counts(org)["contacts"] == 0
    assert cache.read_table("contacts", other).rows() == other_rows


async def test_pagination_fetches_every_page_with_keyset_cursor(
    fake: FakeSupabase, cache: ContactCache, clock: ManualClock, org: str
) -> None:
    repo = await repository_for(fake, cache, clock, page_size=100, max_rows=100)
    fake.max_rows = 100
    fake.add_contacts(org, 250, notes=1)
    result = await synced(repo, org)
    assert (result.items_synced, result.pages) == (250, 3)
    params = [r.url.params for r in fake.rest_requests()]
    assert "id" not in params[0] and params[1]["id"].startswith("gt.")
    assert all("offset" not in p for p in params), "offset paging is quadratic"
    assert cache.counts(org)["contacts"] == 250


async def test_embedded_array_at_the_cap_fails_incomplete_and_writes_nothing(
    fake: FakeSupabase, cache: ContactCache, clock: ManualClock, org: str
) -> None:
    repo = await repository_for(fake, cache, clock, max_rows=50)
    fake.max_rows = 50
    fake.add_contacts(org, 3, notes=60)  # the server cuts each notes array to 50, silently
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.INCOMPLETE
    assert "notes" in result.error.message
    assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}


async def test_count_mismatch_fails_incomplete(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, cache: ContactCache, org: str
) -> None:
    fake.add_contacts(org, 5)
    fake.count_offset = 2  # the server says 7 but sends 5
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.INCOMPLETE
    assert cache.last_synced_at(org) is None


async def test_rows_deleted_on_the_server_leave_the_cache(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, cache: ContactCache, org: str
) -> None:
    made = fake.add_contacts(org, 5, notes=2)
    await synced(repo, org)
    gone = made[0]
    fake.contacts.remove(gone)
    made[1]["notes"].pop()
    await synced(repo, org)
    ids = set(cache.read_table("contacts", org)["id"])
    assert gone["id"] not in ids and len(ids) == 4
    note_contacts = set(cache.read_table("notes", org)["contact_id"])
    assert gone["id"] not in note_contacts
    assert cache.counts(org)["notes"] == 7


@pytest.mark.parametrize("org_id", ["", "not-a-uuid", "1234", "'; drop table contacts; --"])
async def test_organisation_id_must_be_a_uuid_and_no_request_is_made(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, org_id: str
) -> None:
    result = await repo.sync_contacts_for_organisation(org_id)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.INVALID_INPUT
    assert fake.rest_requests() == []


async def test_non_json_body_is_invalid_data(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, cache: ContactCache, org: str
) -> None:
    fake.respond_with = (200, b"<html>captive portal</html>")
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.INVALID_DATA
    assert cache.last_synced_at(org) is None


async def test_row_of_another_organisation_is_refused(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, cache: ContactCache, org: str
) -> None:
    rows = fake.add_contacts(org, 3)
    rows[1]["notes"][0]["organisation_id"] = "00000000-0000-4000-8000-000000000009"
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.INVALID_DATA
    assert "another organisation" in result.error.message
    assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}


async def test_sign_out_fallback_to_anon_fails_auth_and_keeps_cache(
    fake: FakeSupabase, cache: ContactCache, clock: ManualClock, org: str
) -> None:
    client = await sign_in(
        fake.url, fake.anon_key, email=EMAIL, password=PASSWORD, http_client=fake.http_client()
    )
    repo = ContactCacheSyncRepository(client, cache, clock)
    fake.add_contacts(org, 3)
    await synced(repo, org)
    before = snapshot(cache)
    await client.auth.sign_out()  # supabase-py now sends the anon key, which sees 200 []
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.AUTH
    assert snapshot(cache) == before
    assert len(fake.rest_requests()) == 1, "no request is made after sign-out"


async def test_expired_access_token_fails_auth_before_any_request(
    fake: FakeSupabase, cache: ContactCache, org: str
) -> None:
    client = await sign_in(
        fake.url,
        fake.anon_key,
        access_token=fake.user_token(lifetime_s=-5),
        http_client=fake.http_client(),
    )
    repo = ContactCacheSyncRepository(client, cache, ManualClock())
    # The ManualClock is in the past, so only the server can tell the token is expired.
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.AUTH
    assert result.error.code == "PGRST301"
    from contactsync_kit import SystemClock

    repo = ContactCacheSyncRepository(client, cache, SystemClock())
    before = len(fake.rest_requests())
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.code == "token_expired"
    assert len(fake.rest_requests()) == before


async def test_clear_during_a_running_sync_leaves_the_cache_empty(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, cache: ContactCache, org: str
) -> None:
    fake.add_contacts(org, 5)
    await synced(repo, org)
    fake.delay_s = 0.1
    before = len(fake.rest_requests())
    running = asyncio.ensure_future(repo.sync_contacts_for_organisation(org))
    await until(
        lambda: len(fake.rest_requests()) > before, "the second sync's request to reach the server"
    )
    removed = await repo.clear_cache()
    assert removed["contacts"] == 5
    result = await running
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.CANCELLED
    # The result arrives only once the attempt's worker threads are done, so nothing of this
    # sync can still write: the cache is final now.
    assert not repo.is_syncing()
    assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    assert cache.last_synced_at(org) is None
    assert cache.read_table("sync_log").height == 0


async def test_clear_while_a_write_is_in_flight_runs_after_the_write(
    fake: FakeSupabase, clock: ManualClock, org: str
) -> None:
    entered = asyncio.Event()
    release = threading.Event()
    loop = asyncio.get_running_loop()

    def slow_merge(_event: WriteEvent) -> None:
        # Hold the write until the wipe has been asked for (the limit only stops a hang).
        loop.call_soon_threadsafe(entered.set)
        release.wait(HANG_S)

    faults = StorageFaults()
    faults.call_on("merge", slow_merge)
    cache = ContactCache.open(":memory:", faults=faults)
    repo = await repository_for(fake, cache, clock)
    fake.add_contacts(org, 3)
    running = asyncio.ensure_future(repo.sync_contacts_for_organisation(org))
    await entered.wait()
    clearing = asyncio.ensure_future(repo.clear_cache())
    # Scheduled after the wipe's first step: the write is released only once it is asked for.
    loop.call_soon(release.set)
    await clearing
    assert release.is_set()
    assert (await running).error is not None
    assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    assert cache.last_synced_at(org) is None


async def test_every_attempt_is_logged_without_personal_data(
    repo: ContactCacheSyncRepository, fake: FakeSupabase, cache: ContactCache, org: str
) -> None:
    rows = fake.add_contacts(org, 2)
    await synced(repo, org)
    fake.respond_with = (401, b'{"code":"PGRST301","message":"JWT expired"}')
    await repo.sync_contacts_for_organisation(org)
    log = cache.read_table("sync_log", org)
    assert log["outcome"].to_list() == ["success", "failure"]
    assert log["error_code"].to_list() == [None, "PGRST301"]
    text = str(log.rows())
    assert rows[0]["full_name"] not in text and rows[0]["email"] not in text


async def test_progress_reports_pages_and_tables_and_a_broken_callback_is_harmless(
    fake: FakeSupabase, cache: ContactCache, clock: ManualClock, org: str
) -> None:
    repo = await repository_for(fake, cache, clock, page_size=10)
    fake.add_contacts(org, 25)
    events: list[tuple[str, int, str | None]] = []

    def record(event: object) -> None:
        events.append((event.stage, event.contacts_received, event.table))  # type: ignore[attr-defined]
        raise RuntimeError("the display broke")

    result = await repo.sync_contacts_for_organisation(org, progress=record)
    # Write reports arrive through the loop, from the thread that writes.
    await until(lambda: len([e for e in events if e[0] == "write"]) >= 3, "the write reports")
    assert isinstance(result, SyncSuccess) and result.pages == 3
    assert [e for e in events if e[0] == "fetch"] == [
        ("fetch", 10, None),
        ("fetch", 20, None),
        ("fetch", 25, None),
    ]
    assert [e[2] for e in events if e[0] == "write"] == ["contacts", "notes", "contact_assignments"]


async def test_writes_of_different_organisations_never_interleave(
    fake: FakeSupabase, clock: ManualClock
) -> None:
    spans: list[tuple[str, str]] = []
    orgs = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 4)]
    fetched: set[str] = set()
    all_fetched = threading.Event()

    def enter(event: WriteEvent) -> None:
        spans.append(("enter", event.organisation_id))
        # Hold the write until every organisation has its page, so the others head for the
        # cache while this one writes (the limit only stops a hang).
        all_fetched.wait(HANG_S)

    def record(event: SyncProgress) -> None:
        if event.stage == "fetch":
            fetched.add(event.organisation_id)
        if fetched == set(orgs):
            all_fetched.set()

    faults = StorageFaults()
    # A commit's transaction runs from the first table's merge to the sync_state stamp.
    faults.call_on("merge", enter, table="contacts")
    faults.call_on("sync_state", lambda event: spans.append(("exit", event.organisation_id)))
    cache = ContactCache.open(":memory:", faults=faults)
    repo = await repository_for(fake, cache, clock)
    for org in orgs:
        fake.add_contacts(org, 2)
    results = await asyncio.gather(
        *(repo.sync_contacts_for_organisation(o, progress=record) for o in orgs)
    )
    assert all(r.ok for r in results) and all_fetched.is_set()
    assert [kind for kind, _ in spans] == ["enter", "exit"] * 3
    assert all(spans[i][1] == spans[i + 1][1] for i in range(0, 6, 2))


async def test_a_failure_while_staging_a_page_writes_nothing(
    fake: FakeSupabase, clock: ManualClock, org: str
) -> None:
    faults = StorageFaults()
    faults.fail_on("stage", OSError("no space left on device"))
    cache = ContactCache.open(":memory:", faults=faults)
    repo = await repository_for(fake, cache, clock, page_size=10)
    fake.add_contacts(org, 25)
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.LOCAL_WRITE
    assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    assert cache.last_synced_at(org) is None


async def test_a_file_cache_syncs_many_pages(
    fake: FakeSupabase, clock: ManualClock, org: str, tmp_path: Path
) -> None:
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    repo = await repository_for(fake, cache, clock, page_size=40)
    fake.add_contacts(org, 130, notes=3)
    result = await synced(repo, org)
    assert (result.items_synced, result.pages) == (130, 4)
    fake.contacts = fake.contacts[:100]
    assert (await synced(repo, org)).items_synced == 100
    assert cache.counts(org) == {"contacts": 100, "notes": 300, "contact_assignments": 100}


# -- through the in-memory ContactSource ----------------------------------------------------


async def test_a_failure_on_a_later_page_writes_nothing_and_is_logged(
    cache: ContactCache, clock: ManualClock, org: str
) -> None:
    source = FakeContactSource(page_size=10)
    source.add_contacts(org, 25)
    source.page_errors[3] = SyncError(SyncErrorKind.NETWORK, "connection reset")
    repo = ContactCacheSyncRepository(None, cache, clock, source=source)
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.NETWORK
    assert result.pages == 2 and result.items_synced == 0
    assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    assert cache.read_table("sync_log", org)["error_kind"].to_list() == ["network"]
    assert [after is None for after, _ in source.fetches] == [True, False, False]


async def test_a_session_problem_fails_before_any_fetch(
    cache: ContactCache, clock: ManualClock, org: str
) -> None:
    source = FakeContactSource(session_error=SyncError(SyncErrorKind.AUTH, "not signed in"))
    source.add_contacts(org, 3)
    repo = ContactCacheSyncRepository(None, cache, clock, source=source)
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.AUTH
    assert source.fetches == []


async def test_match_sees_exactly_the_two_cases(
    cache: ContactCache, clock: ManualClock, org: str
) -> None:
    source = FakeContactSource(page_size=2)
    source.add_contacts(org, 3, notes=1)
    repo = ContactCacheSyncRepository(None, cache, clock, source=source)
    match await repo.sync_contacts_for_organisation(org):
        case SyncSuccess(items_synced=items, pages=pages):
            assert (items, pages) == (3, 2)
        case SyncFailure(error=error):
            pytest.fail(f"expected a success, got {error}")


async def test_a_failed_sync_log_write_is_reported_not_swallowed(
    clock: ManualClock, org: str, caplog: pytest.LogCaptureFixture
) -> None:
    faults = StorageFaults()
    faults.fail_on("log", OSError("disk full"))
    cache = ContactCache.open(":memory:", faults=faults)
    source = FakeContactSource()
    source.add_contacts(org, 2)
    repo = ContactCacheSyncRepository(None, cache, clock, source=source)
    with caplog.at_level(logging.ERROR, logger="contactsync_kit.repository"):
        result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncSuccess), "the sync itself stands"
    assert cache.counts(org)["contacts"] == 2
    assert cache.read_table("sync_log").height == 0
    [record] = [r for r in caplog.records if "sync log" in r.getMessage()]
    assert org in record.getMessage() and "success" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], OSError)


async def test_organisations_syncing_together_into_a_file_cache_take_turns_and_all_succeed(
    clock: ManualClock, tmp_path: Path
) -> None:
    # The first sync holds the file's write lock from its first page to its commit; the
    # others stage their pages aside meanwhile and merge them in turn, never failing on the
    # lock and never writing inside another organisation's transaction.
    spans: list[tuple[str, str]] = []
    faults = StorageFaults()
    faults.call_on("stage", lambda e: spans.append(("page", e.organisation_id)), table="contacts")
    faults.call_on("merge", lambda e: spans.append(("enter", e.organisation_id)), table="contacts")
    faults.call_on("sync_state", lambda e: spans.append(("exit", e.organisation_id)))
    cache = ContactCache.open(tmp_path / "cache.sqlite3", faults=faults)
    source = FakeContactSource(page_size=10)
    orgs = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 4)]
    for org in orgs:
        source.add_contacts(org, 25, notes=1)
    repo = ContactCacheSyncRepository(None, cache, clock, source=source)
    results = await asyncio.gather(*(repo.sync_contacts_for_organisation(o) for o in orgs))
    assert all(isinstance(r, SyncSuccess) and r.items_synced == 25 for r in results), results
    assert all(
        cache.counts(o) == {"contacts": 25, "notes": 25, "contact_assignments": 25} for o in orgs
    )
    commits = [(kind, org) for kind, org in spans if kind != "page"]
    assert [kind for kind, _ in commits] == ["enter", "exit"] * 3
    assert all(commits[i][1] == commits[i + 1][1] for i in range(0, 6, 2))
    assert not repo.is_syncing()


async def test_clear_during_a_file_sync_rolls_it_back_and_leaves_the_cache_empty(
    clock: ManualClock, org: str, tmp_path: Path
) -> None:
    # A file cache's sync has its write transaction open from its first page: the wipe must
    # wait for it to roll back, and nothing of it may appear afterwards.
    loop = asyncio.get_running_loop()
    writing = asyncio.Event()
    faults = StorageFaults()
    cache = ContactCache.open(tmp_path / "cache.sqlite3", faults=faults)
    source = FakeContactSource(page_size=10)
    source.add_contacts(org, 25)
    repo = ContactCacheSyncRepository(None, cache, clock, source=source)
    await synced(repo, org)
    source.add_contacts(org, 60)

    def page_written(_event: WriteEvent) -> None:
        loop.call_soon_threadsafe(writing.set)

    faults.call_on("stage", page_written, table="notes")
    running = asyncio.ensure_future(repo.sync_contacts_for_organisation(org))
    await writing.wait()
    removed = await repo.clear_cache()
    assert removed["contacts"] == 25
    result = await running
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.CANCELLED
    assert cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    assert cache.last_synced_at(org) is None
    assert (await synced(repo, org)).items_synced == 85, "the cache is usable afterwards"
