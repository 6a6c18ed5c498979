"""The write path's seams: `TableWriter` (frames into SQLite) and `AiohttpTransport` (HTTP).

The writer must keep the cache's guarantees (the sync's one transaction, any number of rows);
the transport must look like httpx's own to everything above it (bodies, headers, and
httpx's exceptions for a refused connection or a timeout).
"""

from __future__ import annotations

import asyncio
import random
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
import pytest
from aiohttp import web

from contactsync_kit import ContactCache, MappedPage, map_contacts_page
from contactsync_kit import staging as staging_module
from contactsync_kit import storage as storage_module
from contactsync_kit.cache_files import sqlcipher_module
from contactsync_kit.staging import SyncStaging
from contactsync_kit.table_writer import ColumnsWriter, TableWriter
from contactsync_kit.testing import fake_contact
from contactsync_kit.transport import AiohttpTransport

ORG = "aaaaaaaa-0000-4000-8000-000000000001"
WHEN = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def page(count: int, seed: int = 0) -> MappedPage:
    rng = random.Random(seed)
    mapped = map_contacts_page([fake_contact(ORG, rng=rng, notes=3) for _ in range(count)], ORG)
    assert isinstance(mapped, MappedPage)
    return mapped


def test_the_columns_writer_writes_every_row_across_its_slices(tmp_path: Path) -> None:
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    big = page(5000, seed=1)  # more rows than one slice of the writer
    cache.apply_sync(ORG, big, WHEN)
    assert cache.counts(ORG)["contacts"] == 5000
    stored = cache.read_table("contacts", ORG).sort("id")
    assert stored.equals(big["contacts"].select(stored.columns).sort("id"))
    cache.close()


def page_bytes(path: Path, key: str | None = None) -> int:
    conn = (sqlite3 if key is None else sqlcipher_module()).connect(path)
    if key is not None:
        conn.execute(f"PRAGMA key = '{key}'")
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_a_new_cache_file_is_made_with_the_kits_page_size(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    cache = ContactCache.open(path)
    cache.apply_sync(ORG, page(50), WHEN)
    cache.close()
    sqlite_default = 4096  # so the test can fail
    assert page_bytes(path) == storage_module.NEW_FILE_PAGE_BYTES != sqlite_default


def test_an_existing_cache_keeps_its_page_size_and_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cache.sqlite3"
    with monkeypatch.context() as older_kit:
        older_kit.setattr(storage_module, "NEW_FILE_PAGE_BYTES", 4096)
        cache = ContactCache.open(path)
        cache.apply_sync(ORG, page(50, seed=1), WHEN)
        cache.close()
    cache = ContactCache.open(path)
    assert cache.counts(ORG)["contacts"] == 50
    cache.apply_sync(ORG, page(80, seed=2), WHEN)
    assert cache.counts(ORG)["contacts"] == 80
    cache.clear()  # not even its VACUUM changes a WAL file's page size
    cache.apply_sync(ORG, page(30, seed=3), WHEN)
    assert cache.counts(ORG)["contacts"] == 30
    cache.close()
    assert page_bytes(path) == 4096


def test_an_encrypted_cache_keeps_its_ciphers_page_size(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    cache = ContactCache.open(path, key="k")
    cache.apply_sync(ORG, page(50), WHEN)
    cache.close()
    assert page_bytes(path, key="k") == 4096
    reopened = ContactCache.open(path, key="k")
    assert reopened.counts(ORG)["contacts"] == 50
    reopened.close()


def test_rows_a_writer_wrote_roll_back_with_the_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging_module, "SORTED_BATCH_ROWS", 20)  # notes are written now
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    written: list[int] = []

    class Counting:
        def write(self, conn, sql, frame):  # type: ignore[no-untyped-def]
            written.append(ColumnsWriter().write(conn, sql, frame))
            return written[-1]

    writer: TableWriter = Counting()
    staging = SyncStaging(cache.store, ORG, 1, writer=writer)
    staging.stage(page(30, seed=2))
    assert sum(written) > 30  # contacts, notes and assignments went through the writer
    staging.discard()  # no commit: everything the writer wrote is rolled back
    assert cache.counts(ORG) == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    cache.close()


class Recording:
    """A writer that keeps each table's written frames (and writes them)."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, pl.DataFrame]] = []

    def write(self, conn, sql, frame):  # type: ignore[no-untyped-def]
        self.frames.append((sql.split()[4], frame))
        return ColumnsWriter().write(conn, sql, frame)


def test_child_rows_are_written_sorted_by_key_in_batches_during_the_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Notes and assignments have random uuid keys: held back and written in key order, a
    # batch at a time, so the primary-key B-tree is walked once per batch, not once per row.
    monkeypatch.setattr(staging_module, "SORTED_BATCH_ROWS", 100)
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    writer = Recording()
    staging = SyncStaging(cache.store, ORG, 1, writer=writer)
    pages = [page(20, seed=10 + n) for n in range(4)]  # 60 notes a page
    for mapped in pages[:2]:
        staging.stage(mapped)
    notes = [frame for table, frame in writer.frames if table == "notes"]
    assert len(notes) == 1 and notes[0].height == 120, "a batch is written once it is full"
    staging.stage(pages[2])
    staging.stage(pages[3])
    staging.commit(WHEN)
    for table in ("notes", "contact_assignments"):
        written = [frame for name, frame in writer.frames if name == table]
        assert all(frame.get_column("id").is_sorted() for frame in written)
        everything = pl.concat([p[table] for p in pages])
        assert sum(frame.height for frame in written) == everything.height
        stored = cache.read_table(table, ORG).sort("id")
        assert stored.equals(everything.select(stored.columns).sort("id"))
    cache.close()


def test_a_child_row_that_came_twice_keeps_its_last_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A note moved to another contact between two pages arrives twice: the later copy wins,
    # as it did when each page was written as it came.
    rng = random.Random(5)
    first = [fake_contact(ORG, rng=rng, notes=3) for _ in range(3)]
    second = [fake_contact(ORG, rng=rng, notes=3) for _ in range(3)]
    moved = dict(first[0]["notes"][0], contact_id=second[1]["id"], body="moved")
    second[1]["notes"].append(moved)
    for batch in (10_000, 4):  # written at the commit, or in a batch during the sync
        monkeypatch.setattr(staging_module, "SORTED_BATCH_ROWS", batch)
        cache = ContactCache.open(tmp_path / f"cache-{batch}.sqlite3")
        staging = SyncStaging(cache.store, ORG, 1)
        for rows in (first, second):
            mapped = map_contacts_page(rows, ORG)
            assert isinstance(mapped, MappedPage)
            staging.stage(mapped)
        staging.commit(WHEN)
        notes = cache.read_table("notes", ORG)
        assert notes.height == 3 * 3 + 3 * 3  # the moved note once
        row = notes.filter(pl.col("id") == moved["id"]).row(0, named=True)
        assert (row["contact_id"], row["body"]) == (second[1]["id"], "moved")
        cache.close()


def test_an_empty_frame_writes_nothing(tmp_path: Path) -> None:
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    with cache.store.write() as conn:
        assert (
            ColumnsWriter().write(conn, "INSERT INTO sync_state VALUES (?, ?)", pl.DataFrame()) == 0
        )
    cache.close()


async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_the_transport_carries_requests_and_responses_like_httpx() -> None:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(
            body=body[::-1],
            status=201,
            headers={"content-range": "0-1/2", "x-seen": request.headers.get("x-ask", "")},
        )

    runner, url = await serve(echo)
    try:
        async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=5) as client:
            response = await client.post(
                f"{url}/rest/v1/x", params={"a": "1"}, content=b"abc", headers={"x-ask": "yes"}
            )
        assert response.status_code == 201
        assert response.content == b"cba"
        assert response.headers["content-range"] == "0-1/2"
        assert response.headers["x-seen"] == "yes"
    finally:
        await runner.cleanup()


async def test_a_refused_connection_is_httpxs_connect_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_a_slow_answer_is_httpxs_read_timeout() -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    runner, url = await serve(slow)
    try:
        async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(url)
    finally:
        await runner.cleanup()


async def test_a_connection_dropped_mid_body_is_a_transport_error() -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        request.transport.close()  # type: ignore[union-attr]
        return response

    runner, url = await serve(cut)
    try:
        async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=5) as client:
            with pytest.raises(httpx.TransportError) as caught:
                await client.get(url)
        assert not isinstance(caught.value, httpx.TimeoutException)
    finally:
        await runner.cleanup()
