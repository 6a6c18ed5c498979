"""The verified incremental sync without the stack: the delta, reconcile and fallback paths.

`FakeDeltaSource` is the server (its digest computed with the kit's twin of the server's
function); the cache is a real in-memory `ContactCache`. The stack's own tests
(tests/integration/test_delta_sync_stack.py) prove the same paths against PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import pytest

from contactsync_kit import (
    ContactCache,
    ContactCacheSyncRepository,
    ManualClock,
    SyncErrorKind,
    SyncFailure,
    SyncResult,
    SyncSuccess,
)
from contactsync_kit.delta import IncrementalSync
from contactsync_kit.delta_store import DeltaStore
from contactsync_kit.diagnostics import Verdict
from contactsync_kit.digest import BUCKET_PREFIX
from contactsync_kit.remote import DeltaSource, DigestSource
from contactsync_kit.results import SyncError
from contactsync_kit.schemas import DATA_TABLES, EMBEDDED_TABLES, ROOT_TABLE
from contactsync_kit.testing import FakeDeltaSource, StorageFaults
from contactsync_kit.verify import verify_against

ORG = "5f0e7c9a-3b1d-4e2f-9a8b-7c6d5e4f3a2b"
CHILD = EMBEDDED_TABLES[0]
T = TypeVar("T")


def instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


def cached(cache: ContactCache) -> dict[str, set[tuple[str, datetime]]]:
    """Per table, the cached ``(id, updated_at)`` pairs of the organisation."""
    return {
        table: {
            (row_id, instant(stamp))
            for row_id, stamp in cache.read_table(table, ORG, ("id", "updated_at")).iter_rows()
        }
        for table in DATA_TABLES
    }


def on_server(server: FakeDeltaSource) -> dict[str, set[tuple[str, datetime]]]:
    return {
        table: {(r["id"], instant(r["updated_at"])) for r in server.rows(table, ORG)}
        for table in DATA_TABLES
    }


def row_pages(server: FakeDeltaSource, since: int = 0) -> list[dict[str, Any]]:
    return [arguments for kind, _, arguments in server.calls[since:] if kind == "rows"]


@pytest.fixture
def server() -> FakeDeltaSource:
    server = FakeDeltaSource(page_size=40)
    server.add_contacts(ORG, 30)
    return server


async def synced(
    server: FakeDeltaSource, faults: StorageFaults | None = None
) -> ContactCacheSyncRepository:
    """A repository over `server` whose cache took a verified full sync."""
    cache = ContactCache.open(":memory:", faults=faults)
    repository = ContactCacheSyncRepository(None, cache, ManualClock(), source=server)
    first = await repository.sync_contacts_for_organisation(ORG, mode="full")
    assert isinstance(first, SyncSuccess) and first.verified, first
    assert cached(cache) == on_server(server)
    return repository


async def test_an_unchanged_server_gives_a_verified_delta_of_no_rows(
    server: FakeDeltaSource,
) -> None:
    repository = await synced(server)
    before = len(server.calls)
    result = await repository.sync_contacts_for_organisation(ORG)
    assert isinstance(result, SyncSuccess), result
    assert (result.mode, result.verified, result.reconciled) == ("delta", True, False)
    assert (result.rows_changed, result.rows_deleted) == (0, 0)
    assert result.rows_synced == {t: len(server.rows(t, ORG)) for t in DATA_TABLES}
    # The safety window reads the rows stamped within it again (all of them here: one
    # stamp); they are the cached rows, so nothing is written. Each page of rows is a
    # page, the digest is not; nothing is listed by bucket.
    pages = row_pages(server, before)
    assert result.pages == len(pages) > len(DATA_TABLES)
    assert all(page["since"] and not page["buckets"] for page in pages)
    assert [c[2] for c in server.calls[before:] if c[0] == "digest"] == [{"prefix_length": 0}]


async def test_changes_are_applied_and_verified(server: FakeDeltaSource) -> None:
    repository = await synced(server)
    contact = server.rows(ROOT_TABLE, ORG)[3]
    server.put(ROOT_TABLE, {**contact, "full_name": "Renamed Person"})
    child = {**server.rows(CHILD, ORG)[0], "id": str(uuid.uuid4())}
    server.put(CHILD, child)
    before = len(server.calls)

    result = await repository.sync_contacts_for_organisation(ORG)

    assert isinstance(result, SyncSuccess), result
    assert (result.mode, result.verified, result.reconciled) == ("delta", True, False)
    assert (result.rows_changed, result.rows_deleted) == (2, 0)
    assert cached(repository.cache) == on_server(server)
    names = repository.cache.read_table(ROOT_TABLE, ORG, ("id", "full_name")).rows()
    assert (contact["id"], "Renamed Person") in names
    assert result.pages == len(row_pages(server, before))
    assert all(not page["buckets"] for page in row_pages(server, before)), "nothing listed"


async def test_a_page_cut_short_by_the_servers_row_cap_is_not_the_last(
    server: FakeDeltaSource,
) -> None:
    repository = await synced(server)
    server.max_rows = 4  # below the page size (40): every answer is cut short, silently
    later = datetime.now(UTC) + timedelta(days=1)
    for row in server.rows(CHILD, ORG)[:11]:
        server.put(CHILD, row, when=later)
    result = await repository.sync_contacts_for_organisation(ORG)
    assert isinstance(result, SyncSuccess), result
    # Every change arrived by paging on past the short pages: nothing left to reconcile.
    assert (result.mode, result.verified, result.reconciled) == ("delta", True, False)
    assert result.rows_changed == 11
    assert cached(repository.cache) == on_server(server)


async def test_deletes_are_located_by_the_digest_and_reconciled(server: FakeDeltaSource) -> None:
    repository = await synced(server)
    gone_child = server.rows(CHILD, ORG)[5]
    server.delete(CHILD, gone_child["id"])
    gone_root = server.rows(ROOT_TABLE, ORG)[7]
    server.delete(ROOT_TABLE, gone_root["id"])
    for table in EMBEDDED_TABLES:  # the server's cascade
        for row in server.rows(table, ORG):
            if row["contact_id"] == gone_root["id"]:
                server.delete(table, row["id"])
    removed = sum(len(v) for v in cached(repository.cache).values()) - sum(
        len(v) for v in on_server(server).values()
    )
    before = len(server.calls)

    result = await repository.sync_contacts_for_organisation(ORG)

    assert isinstance(result, SyncSuccess), result
    assert (result.mode, result.verified, result.reconciled) == ("delta", True, True)
    assert (result.rows_changed, result.rows_deleted) == (0, removed)
    assert cached(repository.cache) == on_server(server)
    # Only the buckets of the rows that went are listed, never a whole table.
    listed = {b for page in row_pages(server, before) for b in page["buckets"] or ()}
    gone_buckets = {gone_child["id"][:BUCKET_PREFIX], gone_root["id"][:BUCKET_PREFIX]}
    assert gone_buckets <= listed and len(listed) <= removed
    digests = [c[2]["prefix_length"] for c in server.calls[before:] if c[0] == "digest"]
    assert sorted(digests) == [0, BUCKET_PREFIX]


async def test_a_changed_servers_bucketed_digest_is_asked_for_beside_the_total(
    server: FakeDeltaSource,
) -> None:
    # The total digest scans every row on a real server; the changes come back long before
    # it. Once they show the server changed, the bucketed digest must not wait for the total.
    repository = await synced(server)
    contact = server.rows(ROOT_TABLE, ORG)[2]
    server.put(ROOT_TABLE, {**contact, "full_name": "Renamed Person"})
    server.delete(CHILD, server.rows(CHILD, ORG)[0]["id"])  # found only by the buckets
    bucketed_asked = asyncio.Event()
    real_digest = server.digest

    async def digest(organisation_id: str, prefix_length: int = 0) -> Any:
        if prefix_length == 0:
            await asyncio.wait_for(bucketed_asked.wait(), timeout=5)
        else:
            bucketed_asked.set()
        return await real_digest(organisation_id, prefix_length)

    server.digest = digest  # type: ignore[method-assign]

    result = await repository.sync_contacts_for_organisation(ORG)

    assert isinstance(result, SyncSuccess), result
    assert (result.mode, result.verified, result.reconciled) == ("delta", True, True)
    assert (result.rows_changed, result.rows_deleted) == (1, 1)
    assert cached(repository.cache) == on_server(server)


async def test_a_digest_that_still_differs_after_reconciling_runs_a_full_sync(
    server: FakeDeltaSource,
) -> None:
    repository = await synced(server)
    gone = server.rows(CHILD, ORG)[2]
    server.delete(CHILD, gone["id"])

    def write_after_answering(_org: str, prefix_length: int) -> None:
        # Right after the bucketed digest is sent, the row comes back: the listing then
        # disagrees with the digest the reconcile is checked against.
        if prefix_length == BUCKET_PREFIX:
            server.after_digest = None
            server.put(CHILD, gone)

    server.after_digest = write_after_answering

    result = await repository.sync_contacts_for_organisation(ORG)

    assert isinstance(result, SyncSuccess), result
    assert (result.mode, result.verified) == ("full", True)
    assert result.fallback_reason and "still differed after reconciling" in result.fallback_reason
    assert cached(repository.cache) == on_server(server)


async def test_a_server_without_the_digest_function_gets_a_full_sync(
    server: FakeDeltaSource,
) -> None:
    repository = await synced(server)
    server.digest_available = False
    result = await repository.sync_contacts_for_organisation(ORG, mode="delta")
    assert isinstance(result, SyncSuccess), result
    assert (result.mode, result.verified) == ("full", False)
    assert result.fallback_reason and "no digest function" in result.fallback_reason


async def test_a_failed_request_in_a_delta_leaves_the_cache_as_it_was(
    server: FakeDeltaSource,
) -> None:
    repository = await synced(server)
    server.put(ROOT_TABLE, {**server.rows(ROOT_TABLE, ORG)[0], "full_name": "Changed"})
    before = cached(repository.cache)
    server.fetch_errors[1] = SyncError(SyncErrorKind.NETWORK, "could not talk to the server")
    result = await repository.sync_contacts_for_organisation(ORG)
    assert isinstance(result, SyncFailure), result
    assert (result.mode, result.error.kind) == ("delta", SyncErrorKind.NETWORK)
    assert cached(repository.cache) == before


async def test_a_local_write_failure_in_a_delta_is_reported_as_local(
    server: FakeDeltaSource,
) -> None:
    faults = StorageFaults()
    repository = await synced(server, faults)
    server.put(CHILD, {**server.rows(CHILD, ORG)[0], "id": str(uuid.uuid4())})
    before = cached(repository.cache)
    faults.fail_on("merge", OSError("disk full"), table=CHILD)

    result = await repository.sync_contacts_for_organisation(ORG)

    assert isinstance(result, SyncFailure), result
    assert (result.mode, result.error.kind) == ("delta", SyncErrorKind.LOCAL_WRITE)
    assert "writing the cache failed (OSError)" in result.error.message
    assert cached(repository.cache) == before, "the delta's transaction rolled back"
    faults.clear()
    again = await repository.sync_contacts_for_organisation(ORG)
    assert isinstance(again, SyncSuccess) and again.mode == "delta", again
    assert cached(repository.cache) == on_server(server)


class FailingReads:
    """A `DeltaStore` whose reads of cached rows fail (a disk error); the rest is the real one."""

    def __init__(self, store: DeltaStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def digests_after(self, *args: object) -> object:
        raise OSError("disk I/O error")

    def versions(self, *args: object) -> object:
        raise OSError("disk I/O error")


async def test_a_cache_read_failure_in_a_reconcile_is_reported_as_local(
    server: FakeDeltaSource,
) -> None:
    repository = await synced(server)
    server.delete(ROOT_TABLE, server.rows(ROOT_TABLE, ORG)[0]["id"])
    logged: list[SyncResult] = []

    async def write(epoch: int, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)

    async def log(result: SyncResult, _started: datetime, _epoch: int) -> None:
        logged.append(result)

    async def no_full_sync(_hooks: object) -> SyncResult:
        raise AssertionError("a failed cache read is a failure, not a reason for a full sync")

    delta = IncrementalSync(
        source=server,
        store=cast(DeltaStore, FailingReads(DeltaStore(repository.cache))),
        clock=ManualClock(),
        full=no_full_sync,
        write=write,
        log=log,
        epoch=0,
        window=timedelta(seconds=60),
    )
    result = await delta.run(ORG, "auto")

    assert isinstance(result, SyncFailure), result
    assert (result.mode, result.error.kind) == ("delta", SyncErrorKind.LOCAL_WRITE)
    assert "reading the cache failed (OSError)" in result.error.message
    assert logged == [result]


async def test_verify_answers_with_the_one_verdict_type(server: FakeDeltaSource) -> None:
    repository = await synced(server)
    cache = repository.cache
    equal = await verify_against(server, cache, ORG)
    assert equal.verdict is Verdict.EQUAL and equal.equal
    server.delete(CHILD, server.rows(CHILD, ORG)[0]["id"])
    drifted = await verify_against(server, cache, ORG)
    assert drifted.verdict is Verdict.DRIFTED and str(drifted.verdict) == "drifted"
    assert not drifted.tables[CHILD].equal and drifted.tables[ROOT_TABLE].equal
    server.digest_available = False
    unavailable = await verify_against(server, cache, ORG)
    assert unavailable.verdict is Verdict.UNAVAILABLE
    assert isinstance(server, DigestSource) and isinstance(server, DeltaSource)
