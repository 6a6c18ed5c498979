"""SQLite's temporary files never hold personal values outside the cache's folder (issue 22, 7).

By default SQLite spills large sorts, TEMP tables and VACUUM's copy into unlinked files in
the system temp folder (``/var/tmp/etilqs_…``). The kit keeps them in memory
(``PRAGMA temp_store=MEMORY`` on every connection). This test watches every file the process
holds open, from a thread that reads ``/proc/self/fd`` about every millisecond, while a sync
large enough to spill (tens of MB of long notes) is staged in TEMP tables, merged, and
then cleared (VACUUM).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from contactsync_kit import ContactCache
from contactsync_kit.mappers import MappedPage
from contactsync_kit.schemas import table_schema

CONTACTS = 24_000
NOTES_PER_CONTACT = 3
NOTE_BYTES = 400  # 72,000 notes of 400 bytes: about 29 MB of note bodies alone
PAGES = 4
STAMP = "2026-01-01T00:00:00.000000+00:00"
ORG = str(uuid.UUID(int=7, version=4))


def _ids(prefix: int, count: int) -> pl.Series:
    return pl.Series([str(uuid.UUID(int=(prefix << 64) + i, version=4)) for i in range(count)])


def large_page(first: int, count: int) -> MappedPage:
    """`count` contacts from number `first`, each with long notes and one assignment."""
    numbers = pl.int_range(first, first + count, eager=True)
    contact_ids = _ids(1, first + count)[first:]
    contacts = pl.DataFrame(
        {
            "id": contact_ids,
            "organisation_id": ORG,
            "chapter_id": None,
            "full_name": "Quillon Marrowby " + numbers.cast(pl.String),
            "phone": "+47 915 " + numbers.cast(pl.String),
            "email": "quillon." + numbers.cast(pl.String) + "@marrowby.example",
            "address": numbers.cast(pl.String) + " Vennelyst Allé",
            "status": "active",
            "created_at": STAMP,
            "updated_at": STAMP,
        },
        schema=table_schema("contacts"),
    )
    note_numbers = pl.int_range(
        first * NOTES_PER_CONTACT, (first + count) * NOTES_PER_CONTACT, eager=True
    )
    filler = "Confidential; said on the phone. " * (NOTE_BYTES // 33 + 1)
    notes = pl.DataFrame(
        {
            "id": _ids(2, (first + count) * NOTES_PER_CONTACT)[first * NOTES_PER_CONTACT :],
            "contact_id": contact_ids.gather(
                pl.int_range(0, count, eager=True).repeat_by(NOTES_PER_CONTACT).explode()
            ),
            "organisation_id": ORG,
            "author_id": None,
            # Distinct bodies, so the pages do not compress into a few repeated values.
            "body": (note_numbers.cast(pl.String) + " " + filler).str.slice(0, NOTE_BYTES),
            "created_at": STAMP,
            "updated_at": STAMP,
        },
        schema=table_schema("notes"),
    )
    assignments = pl.DataFrame(
        {
            "id": _ids(3, first + count)[first:],
            "contact_id": contact_ids,
            "organisation_id": ORG,
            "assignee_id": _ids(4, first + count)[first:],
            "role": "primary",
            "assigned_at": STAMP,
            "updated_at": STAMP,
        },
        schema=table_schema("contact_assignments"),
    )
    return MappedPage({"contacts": contacts, "notes": notes, "contact_assignments": assignments})


class OpenFileWatch:
    """Every file the process opens while it runs, from ``/proc/self/fd`` about every 1 ms.

    What was already open when the watch started (pytest's capture files, say) is left out.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._before: set[tuple[str, str]] = set()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fd-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(0.001)

    def poll(self) -> None:
        """One look at every open file descriptor."""
        self.seen.update(target for fd, target in _open_now() - self._before)
        self.polls += 1

    def __enter__(self) -> OpenFileWatch:
        self._before = _open_now()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()


def _open_now() -> set[tuple[str, str]]:
    """(descriptor, what it points at) for every file descriptor open in this process."""
    found: set[tuple[str, str]] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            continue  # closed between listing and reading
    return found


def private_files_outside(seen: set[str], folder: Path) -> list[str]:
    """The opened files that could hold cache data but are not in `folder`.

    Sockets, pipes, anonymous inodes, /dev and /proc entries are not files; libraries and
    the interpreter's own files are opened read-only and hold nothing of the cache. Anything
    deleted, or in a temp folder, or named like SQLite's temporaries, is suspect.
    """
    inside = str(folder.resolve()) + os.sep
    suspect: list[str] = []
    for target in sorted(seen):
        if not target.startswith("/") or target.startswith(inside):
            continue  # socket:[…], pipe:[…], anon_inode:…, or the cache's own files
        if target.startswith(("/dev/", "/proc/", "/sys/")):
            continue
        name = os.path.basename(target.removesuffix(" (deleted)"))
        if (
            target.endswith(" (deleted)")
            or name.startswith("etilqs_")
            or target.startswith(("/tmp/", "/var/tmp/", "/usr/tmp/", "/dev/shm/"))
            or target.startswith(os.path.realpath(os.environ.get("TMPDIR", "/tmp")) + os.sep)
        ):
            suspect.append(target)
    return suspect


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # The cache lives outside every temp folder, so that "in /tmp" is an alarm and not
    # the cache itself; SQLite's temp folder is the default one (/var/tmp or /tmp).
    made = Path.home() / ".cache" / "contactsync_kit-tests" / f"temp-files-{uuid.uuid4().hex}"
    for variable in ("SQLITE_TMPDIR", "TMPDIR"):
        monkeypatch.delenv(variable, raising=False)
    yield made
    ContactCache.reset(made / "cache.sqlite3")
    for leftover in made.iterdir():
        leftover.unlink()
    made.rmdir()
    with contextlib.suppress(OSError):  # another run may still use it
        made.parent.rmdir()


def test_no_temporary_file_outside_the_cache_folder_during_a_large_staged_sync(
    folder: Path,
) -> None:
    assert not str(folder).startswith(("/tmp/", "/var/tmp/"))
    per_page = CONTACTS // PAGES
    pages = [large_page(n * per_page, per_page) for n in range(PAGES)]
    note_bytes = sum(p["notes"]["body"].str.len_bytes().sum() for p in pages)
    assert note_bytes > 20_000_000  # far past SQLite's default 2 MB page cache: it would spill

    with OpenFileWatch() as watch:
        cache = ContactCache.open(folder / "cache.sqlite3")
        try:
            # Staged aside in TEMP tables (as when another organisation's sync holds the
            # write lock), then merged in key order: the TEMP tables, the sort and the
            # sweep's NOT IN set all outgrow the page cache.
            with cache.begin_sync(ORG) as staging:
                staging.allow_direct = False
                for page in pages:
                    staging.stage(page)
                staging.commit(datetime(2026, 1, 2, tzinfo=UTC))
            assert staging.direct is False
            assert cache.counts(ORG) == {
                "contacts": CONTACTS,
                "notes": CONTACTS * NOTES_PER_CONTACT,
                "contact_assignments": CONTACTS,
            }
            # VACUUM copies the whole file through a temporary database.
            assert cache.clear()["notes"] == CONTACTS * NOTES_PER_CONTACT
        finally:
            cache.close()

    assert watch.polls > 50  # the watch really ran during the sync...
    cache_files = {str(folder.resolve() / name) for name in ("cache.sqlite3", "cache.sqlite3-wal")}
    assert cache_files <= watch.seen  # ...and saw the files it opened
    assert private_files_outside(watch.seen, folder) == []
