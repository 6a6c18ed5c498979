"""The deterministic demo/test data seeder.

:func:`build_seed` turns the parameters and a seed into the rows of every table (as COPY text)
plus a :class:`SeedResult` describing what it made; :func:`load_seed` writes them with
``COPY ... FROM STDIN``. Each organisation's rows come from their own ``random.Random``
(keyed by seed and organisation index), so organisation, chapter and user ids stay the same when
only the number of contacts changes. UUIDs are drawn from the RNG too: the same seed always gives
the same ids.

Per organisation the seed makes users with these roles (``users_per_org`` of them, default 3):

1. ``org<N>-admin``: admin, whole organisation;
2. ``org<N>-coordinator``: coordinator bound to the organisation's first chapter;
3. ``org<N>-volunteer``: volunteer bound to the organisation's last chapter;
4. and more volunteers/coordinators bound to chapters in turn.

With two or more organisations there is also ``multi-org``: coordinator for the whole first
organisation and volunteer bound to the first chapter of the second one. Every seeded user has the
password :data:`DEMO_PASSWORD`. About 10% of contacts have no chapter: only whole-organisation
members see those.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import psycopg

from . import fakedata
from .passwords import hash_password

__all__ = [
    "DEMO_PASSWORD",
    "Membership",
    "SeedConflict",
    "SeedData",
    "SeedResult",
    "SeededOrganisation",
    "SeededUser",
    "build_seed",
    "load_seed",
]

DEMO_PASSWORD: Final = "demo-password-1"
# Fixed so that timestamps, like ids, depend only on the seed.
_EPOCH: Final = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp())
_TWO_YEARS: Final = 2 * 365 * 24 * 3600
_NINETY_DAYS: Final = 90 * 24 * 3600
# COPY order respects the foreign keys.
TABLES: Final = (
    ("auth.users", ("id", "email", "encrypted_password", "created_at")),
    ("public.organisations", ("id", "name", "created_at")),
    ("public.chapters", ("id", "organisation_id", "name")),
    ("public.organisation_members", ("user_id", "organisation_id", "chapter_id", "role")),
    ("public.contacts", ("id", "organisation_id", "chapter_id", "full_name", "phone", "email",
                         "address", "status", "created_at", "updated_at")),
    ("public.notes", ("id", "contact_id", "organisation_id", "author_id", "body", "created_at",
                      "updated_at")),
    ("public.contact_assignments", ("id", "contact_id", "organisation_id", "assignee_id", "role",
                                    "assigned_at", "updated_at")),
)


class SeedConflict(ValueError):
    """The seed (or part of it) is already in the database."""


class Membership(NamedTuple):
    """One organisation membership: ``chapter_id`` None means the whole organisation."""

    organisation_id: str
    chapter_id: str | None
    role: str


@dataclass(frozen=True)
class SeededUser:
    """A user the seeder (or ``DevStack.create_user``) made, with the password to sign in."""

    email: str
    password: str
    user_id: str
    memberships: list[Membership]
    label: str = ""

    @property
    def organisation_ids(self) -> list[str]:
        """The organisations this user is a member of."""
        return [m.organisation_id for m in self.memberships]


@dataclass(frozen=True)
class SeededOrganisation:
    """One seeded organisation with its chapters and how many contacts it got."""

    id: str
    name: str
    chapter_ids: list[str]
    chapter_names: list[str]
    contact_count: int
    # Contacts per chapter id; the key None counts the contacts without a chapter.
    contacts_by_chapter: Mapping[str | None, int]


@dataclass(frozen=True)
class SeedResult:
    """What :meth:`DevStack.seed` made: ids, names, credentials and row counts."""

    seed: int
    organisations: list[SeededOrganisation]
    users: list[SeededUser]
    contact_count: int
    note_count: int
    assignment_count: int
    duration_s: float = 0.0

    @property
    def organisation_ids(self) -> list[str]:
        """Organisation ids in seeding order."""
        return [o.id for o in self.organisations]

    @property
    def organisation_names(self) -> dict[str, str]:
        """Organisation id -> name."""
        return {o.id: o.name for o in self.organisations}

    @property
    def chapter_ids(self) -> dict[str, list[str]]:
        """Organisation id -> its chapter ids."""
        return {o.id: o.chapter_ids for o in self.organisations}

    @property
    def contact_counts(self) -> dict[str, int]:
        """Organisation id -> number of contacts."""
        return {o.id: o.contact_count for o in self.organisations}

    def user(self, label: str) -> SeededUser:
        """The seeded user with this label, e.g. ``"org1-admin"`` or ``"multi-org"``."""
        for user in self.users:
            if user.label == label:
                return user
        raise KeyError(f"no seeded user labelled {label!r}; have {[u.label for u in self.users]}")


@dataclass(frozen=True)
class SeedData:
    """A seed built in memory by :func:`build_seed`: the result and each table's COPY text."""

    result: SeedResult
    copy_text: dict[str, str]


_UUID_MASK: Final = ((1 << 128) - 1) & ~((0xF000 << 64) | (0xC000 << 48))
_UUID_V4_BITS: Final = (0x4000 << 64) | (0x8000 << 48)
_DAY_SECONDS: Final = 86_400
# "YYYY-MM-DD" for each day after _EPOCH that generated timestamps can reach.
_DAYS: Final = tuple(
    datetime.fromtimestamp(_EPOCH + d * _DAY_SECONDS, UTC).strftime("%Y-%m-%d")
    for d in range((_TWO_YEARS + 3 * _NINETY_DAYS) // _DAY_SECONDS + 2))
_CHUNK_ROWS: Final = 5_000


def _uuid(rng: random.Random) -> str:
    # Same value as str(uuid.UUID(int=rng.getrandbits(128), version=4)), several times faster.
    h = "%032x" % ((rng.getrandbits(128) & _UUID_MASK) | _UUID_V4_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ts(offset_s: int) -> str:
    """COPY text for the timestamp ``offset_s`` seconds after _EPOCH."""
    day, second = divmod(offset_s, _DAY_SECONDS)
    return (f"{_DAYS[day]} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+00")


def _copy_field(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                 .replace("\r", "\\r"))
    return value


def _line(values: Sequence[str | None]) -> str:
    return "\t".join(_copy_field(v) for v in values) + "\n"


def _role_plan(index: int, chapters: list[str]) -> tuple[str, str | None, str]:
    """(label suffix, chapter id or None, role) of the organisation's index-th user."""
    if index == 0 or not chapters:
        return ("admin" if index == 0 else f"volunteer-{index + 1}", None,
                "admin" if index == 0 else "volunteer")
    if index == 1:
        return "coordinator", chapters[0], "coordinator"
    if index == 2:
        return "volunteer", chapters[-1], "volunteer"
    role = "coordinator" if index % 2 else "volunteer"
    return f"{role}-{index + 1}", chapters[index % len(chapters)], role


Emit = Callable[[str, str], None]
"""Receives ``(table, COPY text chunk)``; chunks of one table arrive together, in order."""


def _generate(*, organisations: int, chapters_per_org: int, users_per_org: int,
              contacts_per_org: int | Sequence[int], notes_per_contact: int,
              assignments_per_contact: int, seed: int, password: str,
              emit: Emit) -> tuple[SeedResult, list[tuple[str, str, str, str]]]:
    """Generate every row, handing COPY text to ``emit`` table by table.

    Returns the result and the users as ``(id, email, password, created_at)`` (auth.users is
    not emitted: its passwords still need hashing).
    """
    if organisations < 1:
        raise ValueError("organisations must be >= 1")
    if isinstance(contacts_per_org, int):
        contact_plan = [contacts_per_org] * organisations
    else:
        contact_plan = list(contacts_per_org)
        if len(contact_plan) != organisations:
            raise ValueError("contacts_per_org needs one count per organisation")
    if min([*contact_plan, chapters_per_org, users_per_org, notes_per_contact,
            assignments_per_contact]) < 0:
        raise ValueError("counts must be >= 0")

    used_emails: set[str] = set()
    seeded_orgs: list[SeededOrganisation] = []
    users: list[SeededUser] = []
    user_rows: list[tuple[str, str, str, str]] = []
    org_user_ids: list[list[str]] = []
    org_chapters: list[list[str]] = []
    orgs_text, chapters_text, members_text = [], [], []

    def add_user(rng: random.Random, label: str, memberships: list[Membership]) -> SeededUser:
        user_id = _uuid(rng)
        while True:
            first, last = rng.choice(fakedata.FIRST_NAMES), rng.choice(fakedata.LAST_NAMES)
            email = f"{fakedata.email_local_part(first, last)}{rng.randrange(10, 100)}@example.org"
            if email not in used_emails:
                used_emails.add(email)
                break
        user_rows.append((user_id, email, password, _ts(rng.randrange(_TWO_YEARS))))
        for m in memberships:
            members_text.append(_line((user_id, m.organisation_id, m.chapter_id, m.role)))
        user = SeededUser(email, password, user_id, memberships, label)
        users.append(user)
        return user

    # Organisations, chapters and users, each organisation from its own RNG.
    for org_index in range(organisations):
        rng = random.Random(f"contactsync-seed/{seed}/organisation/{org_index}")
        org_id = _uuid(rng)
        words = fakedata.ORGANISATION_WORDS
        name = f"{rng.choice(words[0])} {rng.choice(words[1])}"
        orgs_text.append(_line((org_id, name, _ts(rng.randrange(_TWO_YEARS)))))
        areas = rng.sample(fakedata.CHAPTER_AREAS,
                           min(chapters_per_org, len(fakedata.CHAPTER_AREAS)))
        chapter_ids, chapter_names = [], []
        for i in range(chapters_per_org):
            chapter_id = _uuid(rng)
            chapter_name = f"{name} {areas[i] if i < len(areas) else f'Area {i + 1}'}"
            chapters_text.append(_line((chapter_id, org_id, chapter_name)))
            chapter_ids.append(chapter_id)
            chapter_names.append(chapter_name)
        member_ids = []
        for i in range(users_per_org):
            suffix, member_chapter, role = _role_plan(i, chapter_ids)
            user = add_user(rng, f"org{org_index + 1}-{suffix}",
                            [Membership(org_id, member_chapter, role)])
            member_ids.append(user.user_id)
        org_user_ids.append(member_ids)
        org_chapters.append(chapter_ids)
        seeded_orgs.append(SeededOrganisation(org_id, name, chapter_ids, chapter_names, 0, {}))

    if organisations >= 2:
        rng = random.Random(f"contactsync-seed/{seed}/multi-org")
        multi = add_user(rng, "multi-org", [
            Membership(seeded_orgs[0].id, None, "coordinator"),
            Membership(seeded_orgs[1].id, org_chapters[1][0] if org_chapters[1] else None,
                       "volunteer"),
        ])
        org_user_ids[0].append(multi.user_id)
        org_user_ids[1].append(multi.user_id)

    emit("public.organisations", "".join(orgs_text))
    emit("public.chapters", "".join(chapters_text))
    emit("public.organisation_members", "".join(members_text))

    # The bulk. Separate RNG streams per table and organisation keep each table's rows stable,
    # and let each table be generated (and COPYed) in one go. Word-list fields never need COPY
    # escaping, so rows are joined directly.
    first_names, last_names = fakedata.FIRST_NAMES, fakedata.LAST_NAMES
    emails = [[fakedata.email_local_part(f, last) for last in last_names] for f in first_names]
    streets, cities, sentences = fakedata.STREETS, fakedata.CITIES, fakedata.NOTE_SENTENCES
    domains, prefixes = ("example.org", "example.net"), ("47 9", "47 4", "46 70 ")
    contact_index: list[list[tuple[str, int]]] = []  # per org: (contact id, created offset)
    buf: list[str] = []
    for org_index, org in enumerate(seeded_orgs):
        rng = random.Random(f"contactsync-seed/{seed}/contacts/{org_index}")
        rand = rng.random
        chapters = org_chapters[org_index]
        n_chapters = len(chapters)
        by_chapter: dict[str | None, int] = dict.fromkeys([*chapters, None], 0)
        index: list[tuple[str, int]] = []
        for _ in range(contact_plan[org_index]):
            contact_id = _uuid(rng)
            contact_chapter = (chapters[int(rand() * n_chapters)]
                               if n_chapters and rand() >= 0.1 else None)
            by_chapter[contact_chapter] += 1
            fi, li = int(rand() * len(first_names)), int(rand() * len(last_names))
            phone = (f"+{prefixes[int(rand() * 3)]}{10 + int(rand() * 90)} "
                     f"{10 + int(rand() * 90)} {100 + int(rand() * 900)}"
                     if rand() >= 0.05 else "\\N")
            email = (f"{emails[fi][li]}@{domains[int(rand() * 2)]}" if rand() >= 0.1 else "\\N")
            postcode, city = cities[int(rand() * len(cities))]
            roll = rand()
            status = "active" if roll < 0.85 else "inactive" if roll < 0.95 else "archived"
            created = int(rand() * _TWO_YEARS)
            updated = created + int(rand() * _NINETY_DAYS)
            buf.append(f"{contact_id}\t{org.id}\t{contact_chapter or chr(92) + 'N'}\t"
                       f"{first_names[fi]} {last_names[li]}\t{phone}\t{email}\t"
                       f"{streets[int(rand() * len(streets))]} {1 + int(rand() * 119)}, "
                       f"{postcode} {city}\t{status}\t{_ts(created)}\t{_ts(updated)}\n")
            index.append((contact_id, created))
            if len(buf) >= _CHUNK_ROWS:
                emit("public.contacts", "".join(buf))
                buf.clear()
        contact_index.append(index)
        seeded_orgs[org_index] = SeededOrganisation(
            org.id, org.name, org.chapter_ids, org.chapter_names, contact_plan[org_index],
            by_chapter)
    if buf:
        emit("public.contacts", "".join(buf))
        buf.clear()

    note_count = 0
    for org_index, org in enumerate(seeded_orgs):
        rng = random.Random(f"contactsync-seed/{seed}/notes/{org_index}")
        rand = rng.random
        authors = org_user_ids[org_index]
        for contact_id, created in contact_index[org_index]:
            for _ in range(notes_per_contact):
                at = created + int(rand() * _NINETY_DAYS)
                body = sentences[int(rand() * len(sentences))]
                if rand() < 0.5:
                    body = f"{body} {sentences[int(rand() * len(sentences))]}"
                author = authors[int(rand() * len(authors))] if authors and rand() >= 0.1 \
                    else "\\N"
                buf.append(f"{_uuid(rng)}\t{contact_id}\t{org.id}\t{author}\t{body}\t"
                           f"{_ts(at)}\t{_ts(at + int(rand() * 3600))}\n")
                note_count += 1
            if len(buf) >= _CHUNK_ROWS:
                emit("public.notes", "".join(buf))
                buf.clear()
    if buf:
        emit("public.notes", "".join(buf))
        buf.clear()

    assignment_count = 0
    for org_index, org in enumerate(seeded_orgs):
        rng = random.Random(f"contactsync-seed/{seed}/assignments/{org_index}")
        rand = rng.random
        authors = org_user_ids[org_index]
        per_contact = min(assignments_per_contact, len(authors))
        for contact_id, created in contact_index[org_index]:
            for i, assignee in enumerate(rng.sample(authors, per_contact)):
                assigned = _ts(created + int(rand() * _NINETY_DAYS))
                buf.append(f"{_uuid(rng)}\t{contact_id}\t{org.id}\t{assignee}\t"
                           f"{'primary' if i == 0 else 'backup'}\t{assigned}\t{assigned}\n")
                assignment_count += 1
            if len(buf) >= _CHUNK_ROWS:
                emit("public.contact_assignments", "".join(buf))
                buf.clear()
    if buf:
        emit("public.contact_assignments", "".join(buf))

    result = SeedResult(seed, seeded_orgs, users, sum(contact_plan), note_count,
                        assignment_count)
    return result, user_rows


def build_seed(*, organisations: int = 3, chapters_per_org: int = 2, users_per_org: int = 3,
               contacts_per_org: int | Sequence[int] = 100, notes_per_contact: int = 3,
               assignments_per_contact: int = 1, seed: int = 42,
               password: str = DEMO_PASSWORD) -> SeedData:
    """Build (but do not load) a seed, in memory. Pure: equal arguments give equal data.

    ``copy_text`` holds each table's COPY text; auth.users' password column is left empty
    (hashes are salted at random, so they are made only when loading).
    """
    texts: dict[str, list[str]] = {table: [] for table, _ in TABLES}
    result, user_rows = _generate(
        organisations=organisations, chapters_per_org=chapters_per_org,
        users_per_org=users_per_org, contacts_per_org=contacts_per_org,
        notes_per_contact=notes_per_contact, assignments_per_contact=assignments_per_contact,
        seed=seed, password=password, emit=lambda table, text: texts[table].append(text))
    texts["auth.users"] = [_line((uid, email, "", created))
                           for uid, email, _, created in user_rows]
    return SeedData(result, {table: "".join(parts) for table, parts in texts.items()})


def _hash_users(user_rows: list[tuple[str, str, str, str]]) -> str:
    # PBKDF2 releases the GIL, so a few threads hash the seeded users in parallel.
    with ThreadPoolExecutor(max_workers=4) as pool:
        hashes = list(pool.map(lambda row: hash_password(row[2]), user_rows))
    return "".join(_line((uid, email, encoded, created))
                   for (uid, email, _, created), encoded in zip(user_rows, hashes, strict=True))


_ABORT: Final = ("", "")


def load_seed(conn: psycopg.Connection[Any], *, organisations: int = 3,
              chapters_per_org: int = 2, users_per_org: int = 3,
              contacts_per_org: int | Sequence[int] = 100, notes_per_contact: int = 3,
              assignments_per_contact: int = 1, seed: int = 42,
              password: str = DEMO_PASSWORD) -> SeedResult:
    """Generate a seed and COPY it into the database in one transaction, then ANALYZE.

    Generation (Python) and COPY (PostgreSQL) overlap: a loader thread streams each chunk
    into COPY while the next one is generated. Foreign-key triggers are skipped for the load
    (``session_replication_role = replica``, superuser only): the generator produces
    consistent rows by construction and checking 500,000 of them row by row would triple the
    load time. ``conn`` must be an autocommit superuser connection used by no one else
    meanwhile. Raises :class:`SeedConflict` if the seed's organisations or emails exist.
    """
    started = time.perf_counter()
    probe = build_seed(organisations=organisations, chapters_per_org=chapters_per_org,
                       users_per_org=users_per_org, contacts_per_org=0, notes_per_contact=0,
                       assignments_per_contact=0, seed=seed, password=password).result
    clash = conn.execute(
        "SELECT (SELECT count(*) FROM public.organisations WHERE id = ANY(%s::uuid[])),"
        " (SELECT count(*) FROM auth.users WHERE email = ANY(%s))",
        (probe.organisation_ids, [u.email for u in probe.users])).fetchone()
    if clash is not None and (clash[0] or clash[1]):
        raise SeedConflict(
            f"seed {seed} (or some of its users) is already loaded in this database: "
            f"{clash[0]} organisation(s) and {clash[1]} user email(s) exist")

    columns = dict(TABLES)
    chunks: queue.Queue[tuple[str, str] | None] = queue.Queue(maxsize=16)
    failure: list[BaseException] = []

    def loader() -> None:
        try:
            with conn.transaction(), conn.cursor() as cur, contextlib.ExitStack() as copies:
                cur.execute("SET LOCAL session_replication_role = replica")
                current, copy = "", None
                while (item := chunks.get()) is not None:
                    if item is _ABORT:
                        raise RuntimeError("seed generation failed")
                    table, text = item
                    if table != current:
                        copies.close()
                        copy = copies.enter_context(cur.copy(
                            f"COPY {table} ({', '.join(columns[table])}) FROM STDIN"))
                        current = table
                    assert copy is not None
                    copy.write(text)
        except BaseException as exc:
            failure.append(exc)
            while chunks.get() is not None:  # keep the producer from blocking forever
                pass

    def emit(table: str, text: str) -> None:
        if text:
            chunks.put((table, text))

    thread = threading.Thread(target=loader, name="devstack-seed-copy", daemon=True)
    thread.start()
    try:
        result, user_rows = _generate(
            organisations=organisations, chapters_per_org=chapters_per_org,
            users_per_org=users_per_org, contacts_per_org=contacts_per_org,
            notes_per_contact=notes_per_contact, assignments_per_contact=assignments_per_contact,
            seed=seed, password=password, emit=emit)
        # Last, although users come first in foreign-key order: FK triggers are off for the
        # load, and the hashing is the slowest part of a small seed.
        emit("auth.users", _hash_users(user_rows))
    except BaseException:
        chunks.put(_ABORT)
        chunks.put(None)
        thread.join()
        raise
    chunks.put(None)
    thread.join()
    if failure:
        raise failure[0]
    # Fresh statistics so the planner uses the indexes for RLS-filtered queries right away.
    for table, _ in TABLES:
        conn.execute(f"ANALYZE {table}")
    return SeedResult(result.seed, result.organisations, result.users, result.contact_count,
                      result.note_count, result.assignment_count,
                      time.perf_counter() - started)
