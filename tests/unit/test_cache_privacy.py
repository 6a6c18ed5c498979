"""The cache on disk: one person's, private, erased at logout, and explicit about bad files.

These tests use real files in a temporary folder and read their raw bytes; the server side
is `FakeSupabase` (a real supabase-py client on a mock transport).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import contactsync_kit as kit
from contactsync_kit import ManualClock, SyncSuccess, UserSession, start_session
from contactsync_kit.cache import CacheVersionError, ContactCache
from contactsync_kit.cli import main as cli_main
from contactsync_kit.results import SyncErrorKind
from contactsync_kit.testing import FakeSupabase

ALICE, BOB, PASSWORD = "alice@example.org", "bob@example.org", "pw-for-tests"
ROOT = Path(__file__).resolve().parents[2]


def plant_contacts(fake: FakeSupabase, organisation_id: str, count: int = 40) -> list[str]:
    """Add contacts with distinctive personal values; return every value a sync caches."""
    values: list[str] = []
    for i, contact in enumerate(fake.add_contacts(organisation_id, count, notes=2, seed=7)):
        contact.update(
            full_name=f"Quillon Marrowby {i:03d}",
            phone=f"+47 915 {i:05d}",
            email=f"quillon.{i:03d}@marrowby.example",
            address=f"{i:03d} Vennelyst Allé",
        )
        values += [contact["full_name"], contact["phone"], contact["email"], contact["address"]]
        for n, note in enumerate(contact["notes"]):
            note["body"] = f"Confidential: Quillon {i:03d} said thing {n}"
            values.append(note["body"])
    return values


def _bytes(path: Path) -> bytes:
    """The file's raw bytes (b"" when it does not exist)."""
    return path.read_bytes() if path.exists() else b""


def files_holding(folder: Path, values: list[str]) -> dict[str, int]:
    """Every file under `folder` whose raw bytes hold any of `values`, with how many."""
    found: dict[str, int] = {}
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            data = file.read_bytes()
            hits = sum(value.encode() in data for value in values)
            if hits:
                found[file.name] = hits
    return found


async def session_for(fake: FakeSupabase, email: str, path: Path, **options: Any) -> UserSession:
    return await start_session(
        fake.url,
        fake.anon_key,
        email=email,
        password=PASSWORD,
        cache_path=path,
        http_client=fake.http_client(),
        clock=ManualClock(),
        **options,
    )


@pytest.fixture
def fake() -> FakeSupabase:
    return FakeSupabase(users={ALICE: PASSWORD, BOB: PASSWORD})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "cache.sqlite3"


# -- 1. the next person never reads the last person's contacts ------------------------------


async def test_the_next_person_sees_none_of_the_last_persons_contacts(
    fake: FakeSupabase, path: Path, org: str
) -> None:
    plant_contacts(fake, org)
    alice = await session_for(fake, ALICE, path)
    assert isinstance(await alice.repository.sync_contacts_for_organisation(org), SyncSuccess)
    alice.close()  # the kernel restarts: no sign-out

    bob = await session_for(fake, BOB, path)
    assert bob.cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    assert bob.cache.overview().height == 0
    assert bob.cache.last_synced_at(org) is None
    for table in ("contacts", "notes", "contact_assignments", "sync_state", "sync_log"):
        assert bob.cache.read_table(table).height == 0, table
    bob.close()


async def test_another_project_for_the_same_person_starts_empty(
    fake: FakeSupabase, path: Path, org: str
) -> None:
    plant_contacts(fake, org)
    first = await session_for(fake, ALICE, path)
    await first.repository.sync_contacts_for_organisation(org)
    first.close()
    other_project = FakeSupabase(users={ALICE: PASSWORD}, url="https://other-project.test")
    second = await session_for(other_project, ALICE, path)
    assert second.cache.counts()["contacts"] == 0
    second.close()


async def test_the_same_person_keeps_their_cache_and_the_owner_is_ids_not_email(
    fake: FakeSupabase, path: Path, org: str
) -> None:
    plant_contacts(fake, org, count=5)
    first = await session_for(fake, ALICE, path)
    await first.repository.sync_contacts_for_organisation(org)
    first.close()
    again = await session_for(fake, ALICE, path)
    assert again.cache.counts()["contacts"] == 5
    owner = again.cache.owner()
    assert owner == kit.CacheOwner.of(fake.url, str(uuid.uuid5(uuid.NAMESPACE_URL, ALICE)))
    assert "@" not in owner.user_id and "@" not in owner.project_url
    again.close()
    assert ALICE.encode() not in _bytes(path)


async def test_a_cache_without_a_recorded_owner_is_erased_before_use(
    fake: FakeSupabase, path: Path, org: str
) -> None:
    values = plant_contacts(fake, org, count=5)
    # A cache written without an owner (an earlier kit version, or wired by hand).
    path.parent.mkdir(parents=True)
    legacy = ContactCache.open(path)
    from contactsync_kit import ContactCacheSyncRepository
    from tests.unit.conftest import repository_for

    repo: ContactCacheSyncRepository = await repository_for(
        FakeSupabase(users={"coordinator@example.org": "correct horse"}, contacts=fake.contacts),
        legacy,
        ManualClock(),
    )
    assert isinstance(await repo.sync_contacts_for_organisation(org), SyncSuccess)
    legacy.close()
    assert files_holding(path.parent, values)
    bob = await session_for(fake, BOB, path)
    assert bob.cache.counts()["contacts"] == 0
    assert files_holding(path.parent, values) == {}
    bob.close()


# -- 2. logout is erasure ---------------------------------------------------------------------


async def test_clear_cache_leaves_no_synced_value_in_any_file_while_running(
    fake: FakeSupabase, path: Path, org: str
) -> None:
    values = plant_contacts(fake, org)
    session = await session_for(fake, ALICE, path)
    await session.repository.sync_contacts_for_organisation(org)
    assert sum(files_holding(path.parent, values).values()) >= len(values)  # the scan sees them
    removed = await session.repository.clear_cache()
    assert removed["contacts"] == 40
    assert files_holding(path.parent, values) == {}
    # The cache stays usable after the wipe.
    assert isinstance(await session.repository.sync_contacts_for_organisation(org), SyncSuccess)
    session.close()


async def test_sign_out_erases_every_file_of_the_cache(
    fake: FakeSupabase, path: Path, org: str
) -> None:
    values = plant_contacts(fake, org)
    session = await session_for(fake, ALICE, path)
    await session.repository.sync_contacts_for_organisation(org)
    await session.repository.sync_contacts_for_organisation(org)  # rewrites: old frames too
    assert files_holding(path.parent, values)
    removed = await session.sign_out()
    assert removed["contacts"] == 40
    assert files_holding(path.parent, values) == {}
    assert not any(f.name.startswith(path.name) for f in path.parent.iterdir())
    session.close()  # what the panels do after sign-out: harmless


CHILD = """
import asyncio, sys
from pathlib import Path
from tests.unit.test_cache_privacy import ALICE, FakeSupabase, plant_contacts, session_for
from tests.unit.test_cache_privacy import BOB, PASSWORD

async def run(path, action, org):
    fake = FakeSupabase(users={ALICE: PASSWORD, BOB: PASSWORD})
    plant_contacts(fake, org)
    session = await session_for(fake, ALICE, Path(path))
    await session.repository.sync_contacts_for_organisation(org)
    await (session.repository.clear_cache() if action == "clear" else session.sign_out())
    print("done", flush=True)
    sys.stdin.readline()   # the parent scans while this process still runs
    # exits without closing anything

asyncio.run(run(*sys.argv[1:]))
"""


@pytest.mark.parametrize("action", ["clear", "sign_out"])
def test_no_synced_value_on_disk_while_the_process_runs_and_after_it_exits(
    fake: FakeSupabase, path: Path, org: str, action: str
) -> None:
    values = plant_contacts(fake, org)  # the same values the child plants (same seed)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), action, org],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "done"
        running = files_holding(path.parent, values)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert running == {}
    assert files_holding(path.parent, values) == {}


@pytest.fixture
def secure_delete_off_by_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every new SQLite connection starts with secure_delete OFF, as on many builds;
    yields the value read on every connection checkout."""
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.execute("PRAGMA secure_delete=OFF")
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(sqlite3.dbapi2, "connect", connect)
    seen: list[int] = []

    def on_checkout(dbapi_conn: Any, *_: Any) -> None:
        cursor = dbapi_conn.cursor()
        seen.append(int(cursor.execute("PRAGMA secure_delete").fetchone()[0]))
        cursor.close()

    sa.event.listen(sa.pool.Pool, "checkout", on_checkout)
    yield seen
    sa.event.remove(sa.pool.Pool, "checkout", on_checkout)


@pytest.mark.parametrize("in_memory", [False, True])
async def test_secure_delete_is_on_for_every_connection_the_kit_opens(
    secure_delete_off_by_default: list[int],
    fake: FakeSupabase,
    path: Path,
    org: str,
    in_memory: bool,
) -> None:
    plant_contacts(fake, org, count=5)
    session = await session_for(fake, ALICE, Path(":memory:") if in_memory else path)
    await session.repository.sync_contacts_for_organisation(org)
    session.cache.counts()
    session.cache.overview()
    await session.repository.clear_cache()
    await session.sign_out()
    assert len(secure_delete_off_by_default) >= 5
    assert set(secure_delete_off_by_default) == {1}


# -- 3. private files ------------------------------------------------------------------------


@pytest.fixture(params=[0o000, 0o022, 0o277], ids=["umask000", "umask022", "umask277"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(file: Path) -> int:
    return stat.S_IMODE(file.stat().st_mode)


async def test_cache_folder_is_0700_and_every_file_0600_whatever_the_umask(
    umask: int, fake: FakeSupabase, tmp_path: Path, org: str
) -> None:
    plant_contacts(fake, org, count=5)
    folder = tmp_path / "made" / "by-the-kit"
    session = await session_for(fake, ALICE, folder / "cache.sqlite3")
    await session.repository.sync_contacts_for_organisation(org)
    files = sorted(p.name for p in folder.iterdir())
    assert {"cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"} <= set(files)
    assert _mode(folder) == 0o700 and _mode(folder.parent) == 0o700
    assert {name: _mode(folder / name) for name in files} == dict.fromkeys(files, 0o600)
    session.close()


async def test_default_cache_folder_is_private(
    umask: int, fake: FakeSupabase, tmp_path: Path, org: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CONTACTSYNC_CACHE", raising=False)
    from contactsync_kit import default_cache_path

    folder = default_cache_path()
    folder.parent.mkdir(parents=True)
    os.chmod(folder.parent, 0o755)  # ~/.cache/contactsync_kit exists, shared
    session = await start_session(
        fake.url,
        fake.anon_key,
        email=ALICE,
        password=PASSWORD,
        http_client=fake.http_client(),
        clock=ManualClock(),
    )
    await session.repository.sync_contacts_for_organisation(org)
    # Each person has their own file in the private folder, named by a keyed hash.
    user_id = session.token().subject  # type: ignore[union-attr]
    assert session.cache.path == str(default_cache_path(fake.url, user_id))
    assert Path(session.cache.path).parent == folder
    assert ALICE.split("@")[0] not in Path(session.cache.path).name
    assert _mode(folder) == 0o700
    assert {_mode(f) for f in folder.iterdir()} == {0o600}
    session.close()


async def test_the_old_world_readable_default_cache_is_erased_on_sign_in(
    fake: FakeSupabase, tmp_path: Path, org: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CONTACTSYNC_CACHE", raising=False)
    values = plant_contacts(fake, org, count=5)
    legacy = tmp_path / ".cache" / "contactsync_kit" / "cache.sqlite3"
    legacy.parent.mkdir(parents=True)
    old = ContactCache.open(legacy)
    from tests.unit.conftest import repository_for

    repo = await repository_for(
        FakeSupabase(users={"coordinator@example.org": "correct horse"}, contacts=fake.contacts),
        old,
        ManualClock(),
    )
    await repo.sync_contacts_for_organisation(org)
    old.close()
    other = legacy.parent / "postgrest-or-anything-else.txt"
    other.write_text("not the kit's cache")
    session = await start_session(
        fake.url,
        fake.anon_key,
        email=BOB,
        password=PASSWORD,
        http_client=fake.http_client(),
        clock=ManualClock(),
    )
    assert files_holding(legacy.parent, values) == {}
    assert not legacy.exists() and other.read_text() == "not the kit's cache"
    session.close()


async def test_no_permission_is_changed_after_data_was_written(
    fake: FakeSupabase, path: Path, org: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Private from birth: any chmod the kit does is on an empty file or folder."""
    plant_contacts(fake, org, count=5)
    chmods: list[tuple[str, int]] = []
    real_chmod, real_fchmod = os.chmod, os.fchmod

    def chmod(target: Any, mode: int, *args: Any, **kwargs: Any) -> None:
        p = Path(target)
        chmods.append((str(p), len(list(p.iterdir())) if p.is_dir() else p.stat().st_size))
        real_chmod(target, mode, *args, **kwargs)

    def fchmod(fd: int, mode: int) -> None:
        chmods.append((f"fd {fd}", os.fstat(fd).st_size))
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "chmod", chmod)
    monkeypatch.setattr(os, "fchmod", fchmod)
    session = await session_for(fake, ALICE, path)
    await session.repository.sync_contacts_for_organisation(org)
    session.close()
    assert chmods  # the kit did make things private...
    assert all(size == 0 for _, size in chmods), chmods  # ...before anything was in them


# -- 5. corrupt, foreign and newer files -----------------------------------------------------


def _synced_cache(path: Path) -> None:
    cache = ContactCache.open(path)
    cache.record_attempt(_entry())
    cache.close()


def _entry() -> Any:
    from datetime import UTC, datetime

    from contactsync_kit.cache import SyncLogEntry

    return SyncLogEntry(
        organisation_id=str(uuid.uuid4()),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration_ms=1,
        outcome="success",
    )


def _text_file(path: Path) -> None:
    path.write_text("name,phone\nsomeone's own notes, not a cache\n" * 50)


def _truncated_copy(path: Path) -> None:
    _synced_cache(path)
    data = path.read_bytes()
    big = ContactCache.open(path)
    for _ in range(300):
        big.record_attempt(_entry())
    big.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbled_pages(path: Path) -> None:
    _synced_cache(path)
    data = bytearray(path.read_bytes())
    data[100:] = bytes(range(256)) * ((len(data) - 100) // 256) + bytes((len(data) - 100) % 256)
    path.write_bytes(bytes(data))


def _other_apps_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.commit()
    conn.close()


BAD_FILES = {  # error classes by name: the module still imports where they do not exist
    "text file": (_text_file, "ForeignCacheFileError", "not a contactsync cache"),
    "another app's SQLite database": (
        _other_apps_database,
        "ForeignCacheFileError",
        "another application",
    ),
    "truncated copy": (_truncated_copy, "CorruptCacheError", "contactsync cache reset"),
    "garbled pages": (_garbled_pages, "CorruptCacheError", "contactsync cache reset"),
}


@pytest.mark.parametrize("bad", list(BAD_FILES))
async def test_a_bad_cache_file_gives_a_typed_actionable_error(
    fake: FakeSupabase, path: Path, bad: str
) -> None:
    make, error_name, advice = BAD_FILES[bad]
    error = getattr(kit, error_name)
    path.parent.mkdir(parents=True)
    make(path)
    before = _bytes(path)
    with pytest.raises(error) as raised:
        await session_for(fake, ALICE, path)
    assert advice in raised.value.message and str(path) in raised.value.message
    assert raised.value.kind is SyncErrorKind.LOCAL_WRITE
    if error_name == "ForeignCacheFileError":
        assert _bytes(path) == before  # never the kit's to delete


async def test_a_newer_cache_gives_a_typed_error_and_reset_clears_the_way(
    fake: FakeSupabase, path: Path
) -> None:
    _synced_cache(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(CacheVersionError, match="newer"):
        await session_for(fake, ALICE, path)
    assert ContactCache.reset(path) == [path]
    session = await session_for(fake, ALICE, path)
    assert session.cache.schema_version < 99
    session.close()


async def test_reset_removes_a_corrupt_cache_securely_and_sign_in_works_again(
    fake: FakeSupabase, path: Path
) -> None:
    path.parent.mkdir(parents=True)
    _truncated_copy(path)
    with pytest.raises(kit.CorruptCacheError):
        await session_for(fake, ALICE, path)
    assert path in ContactCache.reset(path)
    assert _bytes(path) == b""
    session = await session_for(fake, ALICE, path)
    assert session.cache.counts()["contacts"] == 0
    session.close()


@pytest.mark.parametrize("make", [_text_file, _other_apps_database])
def test_reset_never_removes_a_file_the_kit_did_not_create(path: Path, make: Any) -> None:
    path.parent.mkdir(parents=True)
    make(path)
    before = path.read_bytes()
    with pytest.raises(kit.ForeignCacheFileError, match="left untouched"):
        ContactCache.reset(path)
    assert path.read_bytes() == before
    assert cli_main(["cache", "reset", "--path", str(path)]) == 2
    assert path.read_bytes() == before


def test_contactsync_cache_reset_removes_the_cache_and_its_sidecars(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path.parent.mkdir(parents=True)
    _synced_cache(path)
    (path.parent / (path.name + "-wal")).write_bytes(b"\x00" * 10)
    assert cli_main(["cache", "reset", "--path", str(path)]) == 0
    assert list(path.parent.iterdir()) == []
    assert "erased" in capsys.readouterr().out
    assert cli_main(["cache", "reset", "--path", str(path)]) == 0  # nothing there: fine
