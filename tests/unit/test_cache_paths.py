"""What sits at a cache path is checked, never trusted: issue 22, point 4.

Each case plants an entry at the cache path (or at one of its sidecars) and opens the cache
both ways a caller can: `start_session` (over `FakeSupabase`) and `ContactCache.open`. An
unsafe entry gives `UnsafeCachePathError` naming the path and what to do, nothing is written
through a link, and nothing blocks: every open runs on a worker thread with a deadline, so
a FIFO that would hang the open fails the test instead of the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

import contactsync_kit as kit
from contactsync_kit import ContactCache, ManualClock, SyncSuccess, start_session
from contactsync_kit.cache_paths import UnsafeCachePathError
from contactsync_kit.testing import FakeSupabase
from tests.unit.conftest import EMAIL, repository_for
from tests.unit.conftest import PASSWORD as EMAIL_PASSWORD

ALICE, BOB, PASSWORD = "alice@example.org", "bob@example.org", "pw-for-tests"
OPEN_DEADLINE_S = 20.0
IS_ROOT = os.geteuid() == 0
# The entries the kit uses beside the main file, and the lease's lock file.
SIDE_ENTRIES = ("-wal", "-shm", "-journal", ".lock")

How = Literal["session", "cache"]


@pytest.fixture
def fake() -> FakeSupabase:
    return FakeSupabase(users={ALICE: PASSWORD, BOB: PASSWORD, EMAIL: EMAIL_PASSWORD})


@pytest.fixture(params=["session", "cache"], ids=["start_session", "ContactCache.open"])
def how(request: pytest.FixtureRequest) -> How:
    return request.param


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    made = tmp_path / "caches"
    made.mkdir(mode=0o700)
    return made


@pytest.fixture
def path(folder: Path) -> Path:
    return folder / "cache.sqlite3"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """Another folder, where a planted link points: nothing may ever be written here."""
    made = tmp_path / "elsewhere"
    made.mkdir()
    return made


@dataclass
class Opened:
    """What an open (and optional sync) gave: the cache file used, or the error raised."""

    cache_path: str | None = None
    error: BaseException | None = None
    synced: bool = False


class _DaemonThreads(concurrent.futures.ThreadPoolExecutor):
    """Runs each job on a daemon thread: one stuck in a blocking open cannot hold up exit."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # the future carries it
                    future.set_exception(exc)

        threading.Thread(target=run, daemon=True).start()
        return future


async def _open(
    how: How, fake: FakeSupabase, path: Path, email: str, org: str | None, keep: list[Any]
) -> Opened:
    # start_session opens the cache with asyncio.to_thread: on a daemon thread here.
    asyncio.get_running_loop().set_default_executor(_DaemonThreads())
    if how == "session":
        session = await start_session(
            fake.url,
            fake.anon_key,
            email=email,
            password=PASSWORD,
            cache_path=path,
            http_client=fake.http_client(),
            clock=ManualClock(),
        )
        cache, repository = session.cache, session.repository
    else:
        cache = ContactCache.open(path)
        repository = await repository_for(fake, cache, ManualClock())
    synced = False
    if org is not None:
        result = await repository.sync_contacts_for_organisation(org)
        synced = isinstance(result, SyncSuccess)
    opened = Opened(cache_path=cache.path, synced=synced)
    if keep is not None:
        keep.append(cache)
    else:
        cache.close()
    return opened


def open_with_deadline(
    how: How,
    fake: FakeSupabase,
    path: Path,
    *,
    email: str = ALICE,
    org: str | None = None,
    keep: list[Any] | None = None,
) -> Opened:
    """Open the cache at `path` the `how` way on a worker thread; fail if it blocks.

    With `org`, sync it once. With `keep`, the open cache is appended there (left open).
    """
    outcome = Opened()

    def run() -> None:
        try:
            found = asyncio.run(_open(how, fake, path, email, org, keep))  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the test thread
            outcome.error = exc
        else:
            outcome.cache_path, outcome.synced = found.cache_path, found.synced

    worker = threading.Thread(target=run, name="open-cache", daemon=True)
    worker.start()
    worker.join(OPEN_DEADLINE_S)
    if worker.is_alive():
        give_up = time.monotonic() + 5
        while worker.is_alive() and time.monotonic() < give_up:
            _unblock_fifos(path)
            worker.join(0.05)
        pytest.fail(f"opening the cache at {path} ({how}) blocked for {OPEN_DEADLINE_S:.0f} s")
    return outcome


def _unblock_fifos(path: Path) -> None:
    # An open() blocked on a FIFO returns once the other end is opened, and a blocked read
    # once something is written: so a stuck open ends (with an error) and the run goes on.
    for entry in [path, *(path.with_name(path.name + s) for s in SIDE_ENTRIES)]:
        if entry.is_fifo():
            for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
                try:
                    fd = os.open(entry, flags)
                except OSError:
                    continue
                try:
                    if flags & os.O_WRONLY:
                        os.write(fd, b"not a database " * 8)
                except OSError:
                    pass
                finally:
                    os.close(fd)


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under `folder` with its bytes (files) or kind: compared before and after."""
    found: dict[str, bytes | str] = {}
    for entry in sorted(folder.rglob("*")):
        name = str(entry.relative_to(folder))
        if entry.is_symlink():
            found[name] = f"link to {os.readlink(entry)}"
        elif entry.is_file():
            found[name] = entry.read_bytes()
        else:
            found[name] = "folder" if entry.is_dir() else "other"
    return found


def assert_refused(opened: Opened, entry: Path) -> UnsafeCachePathError:
    """The open was refused with the typed error naming `entry` and what to do."""
    assert opened.cache_path is None, f"the cache was opened at {opened.cache_path}"
    error = opened.error
    assert isinstance(error, UnsafeCachePathError), repr(error)
    assert isinstance(error, kit.CacheFileError) and isinstance(error, kit.ContactSyncError)
    assert error.kind is kit.SyncErrorKind.LOCAL_WRITE
    assert error.path == str(entry)
    assert str(entry) in error.message and str(entry) in str(error)
    # What to do, in words a person can act on.
    advice = error.message.lower()
    assert "cache_path" in advice and ("choose" in advice or "remove" in advice), error.message
    return error


# -- what sits at the path itself -----------------------------------------------------------


def _link_to_file(path: Path, elsewhere: Path) -> None:
    target = elsewhere / "target.sqlite3"
    target.touch()
    path.symlink_to(target)


def _link_to_missing_file(path: Path, elsewhere: Path) -> None:
    path.symlink_to(elsewhere / "not-yet.sqlite3")  # dangling


def _link_to_folder(path: Path, elsewhere: Path) -> None:
    path.symlink_to(elsewhere, target_is_directory=True)


def _link_to_dev_null(path: Path, _elsewhere: Path) -> None:
    path.symlink_to("/dev/null")


LINKS: dict[str, Callable[[Path, Path], None]] = {
    "link-to-a-file-in-another-folder": _link_to_file,
    "dangling-link": _link_to_missing_file,
    "link-to-a-folder": _link_to_folder,
    "link-to-dev-null": _link_to_dev_null,
}


@pytest.mark.parametrize("plant", list(LINKS.values()), ids=list(LINKS))
def test_a_symlink_at_the_path_is_refused_and_nothing_is_written_through_it(
    how: How,
    fake: FakeSupabase,
    path: Path,
    elsewhere: Path,
    plant: Callable[[Path, Path], None],
) -> None:
    plant(path, elsewhere)
    before, link = snapshot(elsewhere), os.readlink(path)
    error = assert_refused(open_with_deadline(how, fake, path), path)
    assert "symbolic link" in error.message
    assert snapshot(elsewhere) == before  # no file, no -wal, no -shm in the link's target
    assert os.readlink(path) == link  # the link itself is left as it was
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_fifo_at_the_path_is_refused_without_blocking(
    how: How, fake: FakeSupabase, path: Path
) -> None:
    os.mkfifo(path, 0o600)
    error = assert_refused(open_with_deadline(how, fake, path), path)
    assert "FIFO" in error.message
    assert path.is_fifo()


def test_a_socket_at_the_path_is_refused(how: How, fake: FakeSupabase, path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        error = assert_refused(open_with_deadline(how, fake, path), path)
    assert "socket" in error.message


def test_a_character_device_linked_at_the_path_is_refused(
    how: How, fake: FakeSupabase, path: Path, elsewhere: Path
) -> None:
    _link_to_dev_null(path, elsewhere)
    assert_refused(open_with_deadline(how, fake, path), path)
    assert Path("/dev/null").is_char_device()


# Creating a device node or giving a file to another uid needs root (CI runs as root); as
# another user these cases cannot be set up, so they are not generated.
@pytest.mark.parametrize("_root", [pytest.param(True, id="as-root")] if IS_ROOT else [])
def test_a_character_device_node_at_the_path_is_refused(
    how: How, fake: FakeSupabase, path: Path, _root: bool
) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # a second /dev/null
    error = assert_refused(open_with_deadline(how, fake, path), path)
    assert "character device" in error.message
    assert path.is_char_device()


def test_a_folder_at_the_path_is_refused_by_contact_cache_open(path: Path) -> None:
    path.mkdir()
    (path / "someones-file.txt").write_text("kept")
    error = assert_refused(open_with_deadline("cache", FakeSupabase(), path), path)
    assert "folder" in error.message
    assert snapshot(path) == {"someones-file.txt": b"kept"}


def test_a_file_where_the_folder_should_be_is_refused(
    how: How, fake: FakeSupabase, folder: Path
) -> None:
    not_a_folder = folder / "plain-file"
    not_a_folder.write_text("kept")
    opened = open_with_deadline(how, fake, not_a_folder / "cache.sqlite3")
    assert isinstance(opened.error, UnsafeCachePathError), repr(opened.error)
    assert str(not_a_folder) in opened.error.message
    assert not_a_folder.read_text() == "kept"


@pytest.mark.parametrize("_root", [pytest.param(True, id="as-root")] if IS_ROOT else [])
@pytest.mark.parametrize("entry_suffix", ["", *SIDE_ENTRIES])
def test_a_file_of_another_os_user_is_refused_and_left_alone(
    how: How, fake: FakeSupabase, path: Path, entry_suffix: str, _root: bool
) -> None:
    entry = path.with_name(path.name + entry_suffix)
    entry.write_bytes(b"")
    os.chmod(entry, 0o644)
    os.chown(entry, 65534, 65534)
    error = assert_refused(open_with_deadline(how, fake, path), entry)
    assert "another OS user" in error.message
    info = entry.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (65534, 0o644)


# -- the sidecars and the lock file ---------------------------------------------------------


@pytest.mark.parametrize("suffix", SIDE_ENTRIES)
def test_a_symlink_at_a_sidecar_or_the_lock_file_is_refused(
    how: How, fake: FakeSupabase, path: Path, elsewhere: Path, suffix: str
) -> None:
    entry = path.with_name(path.name + suffix)
    entry.symlink_to(elsewhere / f"planted{suffix}")
    before = snapshot(elsewhere)
    error = assert_refused(open_with_deadline(how, fake, path), entry)
    assert "symbolic link" in error.message
    assert snapshot(elsewhere) == before
    assert not (elsewhere / f"planted{suffix}").exists()


@pytest.mark.parametrize("suffix", SIDE_ENTRIES)
def test_a_fifo_at_a_sidecar_or_the_lock_file_is_refused_without_blocking(
    how: How, fake: FakeSupabase, path: Path, suffix: str
) -> None:
    entry = path.with_name(path.name + suffix)
    os.mkfifo(entry, 0o600)
    error = assert_refused(open_with_deadline(how, fake, path), entry)
    assert "FIFO" in error.message
    assert entry.is_fifo()


@pytest.mark.parametrize("suffix", SIDE_ENTRIES)
def test_a_folder_at_a_sidecar_or_the_lock_file_is_refused(
    how: How, fake: FakeSupabase, path: Path, suffix: str
) -> None:
    entry = path.with_name(path.name + suffix)
    entry.mkdir()
    error = assert_refused(open_with_deadline(how, fake, path), entry)
    assert "folder" in error.message


# -- a pre-existing empty file is made private before any personal byte --------------------


@pytest.fixture(params=[0o000, 0o022], ids=["umask000", "umask022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(file: Path) -> int:
    return stat.S_IMODE(file.stat().st_mode)


@pytest.mark.parametrize("mode", [0o644, 0o666], ids=["0644", "0666"])
def test_a_pre_existing_empty_file_and_its_sidecars_end_up_0600(
    how: How, fake: FakeSupabase, path: Path, org: str, umask: int, mode: int
) -> None:
    fake.add_contacts(org, 30, notes=2)
    path.touch()
    os.chmod(path, mode)
    assert _mode(path) == mode
    kept: list[Any] = []
    opened = open_with_deadline(how, fake, path, org=org, keep=kept)
    assert opened.error is None, repr(opened.error)
    try:
        assert opened.synced and opened.cache_path == str(path)
        files = {p.name: _mode(p) for p in path.parent.iterdir() if p.is_file()}
        # Checked while the session is open, when -wal and -shm hold the synced rows.
        assert {path.name, f"{path.name}-wal", f"{path.name}-shm"} <= set(files), files
        assert files == dict.fromkeys(files, 0o600)
    finally:
        for cache in kept:
            cache.close()


# -- a folder given to start_session: one file per person -----------------------------------


def test_a_folder_as_cache_path_gives_each_person_their_own_private_file(
    fake: FakeSupabase, folder: Path, org: str
) -> None:
    fake.add_contacts(org, 10, notes=1)
    kept: list[Any] = []
    alice = open_with_deadline("session", fake, folder, email=ALICE, org=org, keep=kept)
    bob = open_with_deadline("session", fake, folder, email=BOB, org=org, keep=kept)
    try:
        assert alice.error is None and bob.error is None, (alice.error, bob.error)
        assert alice.synced and bob.synced
        assert alice.cache_path and bob.cache_path and alice.cache_path != bob.cache_path
        for file in (Path(alice.cache_path), Path(bob.cache_path)):
            assert file.parent == folder
            assert file.is_file() and not file.is_symlink()
            for who in (ALICE, BOB):
                assert who not in file.name and who.split("@")[0] not in file.name
        assert {_mode(p) for p in folder.iterdir() if p.is_file()} == {0o600}
        assert _mode(folder) == 0o700
        # The same person signing in again gets the same file.
        again = open_with_deadline("session", fake, folder, email=ALICE)
        assert again.cache_path == alice.cache_path
    finally:
        for cache in kept:
            cache.close()
