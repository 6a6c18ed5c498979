"""Generating a seed's rows as PostgreSQL COPY text, deterministically.

Each step draws from its own ``random.Random``, keyed by the seed, the step and the
organisation's index, so one table's rows do not change when another table's counts do, and
organisation, chapter and user ids stay the same when only the number of contacts changes.
UUIDs and timestamps come from the RNG too (timestamps count from a fixed epoch).

The steps, in order: `_organisations` (with their chapters and users), the ``multi-org``
user, then the bulk tables `_contacts`, `_notes` and `_assignments`, each
handed to ``emit`` in chunks while it is generated.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from . import fakedata
from .seed_result import Membership, SeededOrganisation, SeededUser, SeedResult

__all__ = ["Emit", "SeedPlan", "UserRow", "copy_line", "generate"]

__io__ = "none"

# Fixed so that timestamps, like ids, depend only on the seed.
_EPOCH: Final = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp())
_TWO_YEARS: Final = 2 * 365 * 24 * 3600
_NINETY_DAYS: Final = 90 * 24 * 3600
_UUID_MASK: Final = ((1 << 128) - 1) & ~((0xF000 << 64) | (0xC000 << 48))
_UUID_V4_BITS: Final = (0x4000 << 64) | (0x8000 << 48)
_DAY_SECONDS: Final = 86_400
# "YYYY-MM-DD" for each day after _EPOCH that generated timestamps can reach.
_DAYS: Final = tuple(
    datetime.fromtimestamp(_EPOCH + d * _DAY_SECONDS, UTC).strftime("%Y-%m-%d")
    for d in range((_TWO_YEARS + 3 * _NINETY_DAYS) // _DAY_SECONDS + 2)
)
_CHUNK_ROWS: Final = 5_000
_NULL: Final = "\\N"

Emit = Callable[[str, str], None]
"""Receives ``(table, COPY text chunk)``; chunks of one table arrive together, in order."""

UserRow = tuple[str, str, str, str]
"""``(id, email, password, created_at)`` of a user; hashed only when loading."""


@dataclass(frozen=True)
class SeedPlan:
    """Checked seed parameters: ``contacts`` has one count per organisation."""

    organisations: int
    chapters_per_org: int
    users_per_org: int
    contacts: tuple[int, ...]
    notes_per_contact: int
    assignments_per_contact: int
    seed: int
    password: str

    @classmethod
    def of(
        cls,
        *,
        organisations: int,
        chapters_per_org: int,
        users_per_org: int,
        contacts_per_org: int | Sequence[int],
        notes_per_contact: int,
        assignments_per_contact: int,
        seed: int,
        password: str,
    ) -> SeedPlan:
        """Validate the parameters (ValueError) and spread ``contacts_per_org``."""
        if organisations < 1:
            raise ValueError("organisations must be >= 1")
        if isinstance(contacts_per_org, int):
            contacts = (contacts_per_org,) * organisations
        else:
            contacts = tuple(contacts_per_org)
            if len(contacts) != organisations:
                raise ValueError("contacts_per_org needs one count per organisation")
        if (
            min(
                [
                    *contacts,
                    chapters_per_org,
                    users_per_org,
                    notes_per_contact,
                    assignments_per_contact,
                ]
            )
            < 0
        ):
            raise ValueError("counts must be >= 0")
        return cls(
            organisations,
            chapters_per_org,
            users_per_org,
            contacts,
            notes_per_contact,
            assignments_per_contact,
            seed,
            password,
        )

    def rng(self, step: str) -> random.Random:
        """The RNG of one step, e.g. ``"contacts/0"``."""
        return random.Random(f"contactsync-seed/{self.seed}/{step}")


def _uuid(rng: random.Random) -> str:
    # Same value as str(uuid.UUID(int=rng.getrandbits(128), version=4)), several times faster.
    h = "%032x" % ((rng.getrandbits(128) & _UUID_MASK) | _UUID_V4_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ts(offset_s: int) -> str:
    """COPY text for the timestamp ``offset_s`` seconds after _EPOCH."""
    day, second = divmod(offset_s, _DAY_SECONDS)
    return f"{_DAYS[day]} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+00"


def _copy_field(value: str | None) -> str:
    if value is None:
        return _NULL
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def copy_line(values: Sequence[str | None]) -> str:
    """One COPY text line; ``None`` is NULL and special characters are escaped."""
    return "\t".join(_copy_field(v) for v in values) + "\n"


class _Chunks:
    """Collects one table's COPY lines and emits them in chunks of ``_CHUNK_ROWS``."""

    def __init__(self, emit: Emit, table: str) -> None:
        self._emit, self._table = emit, table
        self._lines: list[str] = []
        self.count = 0

    def add(self, line: str) -> None:
        self._lines.append(line)
        self.count += 1

    def flush_if_full(self) -> None:
        if len(self._lines) >= _CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._emit(self._table, "".join(self._lines))
            self._lines.clear()


def _role_plan(index: int, chapters: list[str]) -> tuple[str, str | None, str]:
    """(label suffix, chapter id or None, role) of the organisation's index-th user."""
    if index == 0 or not chapters:
        return (
            "admin" if index == 0 else f"volunteer-{index + 1}",
            None,
            "admin" if index == 0 else "volunteer",
        )
    if index == 1:
        return "coordinator", chapters[0], "coordinator"
    if index == 2:
        return "volunteer", chapters[-1], "volunteer"
    role = "coordinator" if index % 2 else "volunteer"
    return f"{role}-{index + 1}", chapters[index % len(chapters)], role


@dataclass
class _People:
    """Organisations, chapters, users and memberships: everything but the bulk tables."""

    password: str
    organisations: list[SeededOrganisation] = field(default_factory=list)
    users: list[SeededUser] = field(default_factory=list)
    user_rows: list[UserRow] = field(default_factory=list)
    member_ids: list[list[str]] = field(default_factory=list)  # per organisation
    emails: set[str] = field(default_factory=set)
    lines: dict[str, list[str]] = field(
        default_factory=lambda: {
            "public.organisations": [],
            "public.chapters": [],
            "public.organisation_members": [],
        }
    )

    def add_user(self, rng: random.Random, label: str, memberships: list[Membership]) -> SeededUser:
        user_id = _uuid(rng)
        while True:
            first, last = rng.choice(fakedata.FIRST_NAMES), rng.choice(fakedata.LAST_NAMES)
            email = f"{fakedata.email_local_part(first, last)}{rng.randrange(10, 100)}@example.org"
            if email not in self.emails:
                self.emails.add(email)
                break
        self.user_rows.append((user_id, email, self.password, _ts(rng.randrange(_TWO_YEARS))))
        for m in memberships:
            self.lines["public.organisation_members"].append(
                copy_line((user_id, m.organisation_id, m.chapter_id, m.role))
            )
        user = SeededUser(email, self.password, user_id, memberships, label)
        self.users.append(user)
        return user


def _organisation(plan: SeedPlan, people: _People, org_index: int) -> None:
    rng = plan.rng(f"organisation/{org_index}")
    org_id = _uuid(rng)
    words = fakedata.ORGANISATION_WORDS
    name = f"{rng.choice(words[0])} {rng.choice(words[1])}"
    people.lines["public.organisations"].append(
        copy_line((org_id, name, _ts(rng.randrange(_TWO_YEARS))))
    )
    areas = rng.sample(
        fakedata.CHAPTER_AREAS, min(plan.chapters_per_org, len(fakedata.CHAPTER_AREAS))
    )
    chapter_ids, chapter_names = [], []
    for i in range(plan.chapters_per_org):
        chapter_id = _uuid(rng)
        chapter_name = f"{name} {areas[i] if i < len(areas) else f'Area {i + 1}'}"
        people.lines["public.chapters"].append(copy_line((chapter_id, org_id, chapter_name)))
        chapter_ids.append(chapter_id)
        chapter_names.append(chapter_name)
    member_ids = []
    for i in range(plan.users_per_org):
        suffix, member_chapter, role = _role_plan(i, chapter_ids)
        user = people.add_user(
            rng, f"org{org_index + 1}-{suffix}", [Membership(org_id, member_chapter, role)]
        )
        member_ids.append(user.user_id)
    people.member_ids.append(member_ids)
    people.organisations.append(SeededOrganisation(org_id, name, chapter_ids, chapter_names, 0, {}))


def _multi_org_user(plan: SeedPlan, people: _People) -> None:
    first, second = people.organisations[0], people.organisations[1]
    multi = people.add_user(
        plan.rng("multi-org"),
        "multi-org",
        [
            Membership(first.id, None, "coordinator"),
            Membership(
                second.id, second.chapter_ids[0] if second.chapter_ids else None, "volunteer"
            ),
        ],
    )
    people.member_ids[0].append(multi.user_id)
    people.member_ids[1].append(multi.user_id)


def _organisations(plan: SeedPlan, emit: Emit) -> _People:
    people = _People(plan.password)
    for org_index in range(plan.organisations):
        _organisation(plan, people, org_index)
    if plan.organisations >= 2:
        _multi_org_user(plan, people)
    for table, lines in people.lines.items():
        emit(table, "".join(lines))
    return people


# Word-list fields never need COPY escaping, so the bulk rows are joined directly.
_EMAIL_PARTS: Final = [
    [fakedata.email_local_part(f, last) for last in fakedata.LAST_NAMES]
    for f in fakedata.FIRST_NAMES
]
_DOMAINS: Final = ("example.org", "example.net")
_PHONE_PREFIXES: Final = ("47 9", "47 4", "46 70 ")


def _contact_line(
    rng: random.Random, contact_id: str, org_id: str, chapter: str | None
) -> tuple[str, int]:
    """The contact's COPY line (after its id and chapter were drawn) and its created offset."""
    rand = rng.random
    first_names, last_names = fakedata.FIRST_NAMES, fakedata.LAST_NAMES
    fi, li = int(rand() * len(first_names)), int(rand() * len(last_names))
    phone = (
        f"+{_PHONE_PREFIXES[int(rand() * 3)]}{10 + int(rand() * 90)} "
        f"{10 + int(rand() * 90)} {100 + int(rand() * 900)}"
        if rand() >= 0.05
        else _NULL
    )
    email = f"{_EMAIL_PARTS[fi][li]}@{_DOMAINS[int(rand() * 2)]}" if rand() >= 0.1 else _NULL
    postcode, city = fakedata.CITIES[int(rand() * len(fakedata.CITIES))]
    roll = rand()
    status = "active" if roll < 0.85 else "inactive" if roll < 0.95 else "archived"
    created = int(rand() * _TWO_YEARS)
    updated = created + int(rand() * _NINETY_DAYS)
    street = fakedata.STREETS[int(rand() * len(fakedata.STREETS))]
    line = (
        f"{contact_id}\t{org_id}\t{chapter or _NULL}\t"
        f"{first_names[fi]} {last_names[li]}\t{phone}\t{email}\t"
        f"{street} {1 + int(rand() * 119)}, {postcode} {city}\t{status}\t"
        f"{_ts(created)}\t{_ts(updated)}\n"
    )
    return line, created


Contacts = list[list[tuple[str, int]]]
"""Per organisation: (contact id, created offset) of each contact."""


def _contacts(plan: SeedPlan, people: _People, emit: Emit) -> Contacts:
    chunks, made = _Chunks(emit, "public.contacts"), []
    for org_index, org in enumerate(people.organisations):
        rng = plan.rng(f"contacts/{org_index}")
        chapters = org.chapter_ids
        by_chapter: dict[str | None, int] = dict.fromkeys([*chapters, None], 0)
        index = []
        for _ in range(plan.contacts[org_index]):
            contact_id = _uuid(rng)
            chapter = (
                chapters[int(rng.random() * len(chapters))]
                if chapters and rng.random() >= 0.1
                else None
            )
            by_chapter[chapter] += 1
            line, created = _contact_line(rng, contact_id, org.id, chapter)
            chunks.add(line)
            index.append((contact_id, created))
            chunks.flush_if_full()
        made.append(index)
        people.organisations[org_index] = SeededOrganisation(
            org.id,
            org.name,
            org.chapter_ids,
            org.chapter_names,
            plan.contacts[org_index],
            by_chapter,
        )
    chunks.flush()
    return made


def _notes(plan: SeedPlan, people: _People, contacts: Contacts, emit: Emit) -> int:
    chunks, sentences = _Chunks(emit, "public.notes"), fakedata.NOTE_SENTENCES
    for org_index, org in enumerate(people.organisations):
        rng = plan.rng(f"notes/{org_index}")
        rand = rng.random
        authors = people.member_ids[org_index]
        for contact_id, created in contacts[org_index]:
            for _ in range(plan.notes_per_contact):
                at = created + int(rand() * _NINETY_DAYS)
                body = sentences[int(rand() * len(sentences))]
                if rand() < 0.5:
                    body = f"{body} {sentences[int(rand() * len(sentences))]}"
                author = authors[int(rand() * len(authors))] if authors and rand() >= 0.1 else _NULL
                chunks.add(
                    f"{_uuid(rng)}\t{contact_id}\t{org.id}\t{author}\t{body}\t"
                    f"{_ts(at)}\t{_ts(at + int(rand() * 3600))}\n"
                )
            chunks.flush_if_full()
    chunks.flush()
    return chunks.count


def _assignments(plan: SeedPlan, people: _People, contacts: Contacts, emit: Emit) -> int:
    chunks = _Chunks(emit, "public.contact_assignments")
    for org_index, org in enumerate(people.organisations):
        rng = plan.rng(f"assignments/{org_index}")
        authors = people.member_ids[org_index]
        per_contact = min(plan.assignments_per_contact, len(authors))
        for contact_id, created in contacts[org_index]:
            for i, assignee in enumerate(rng.sample(authors, per_contact)):
                assigned = _ts(created + int(rng.random() * _NINETY_DAYS))
                chunks.add(
                    f"{_uuid(rng)}\t{contact_id}\t{org.id}\t{assignee}\t"
                    f"{'primary' if i == 0 else 'backup'}\t{assigned}\t{assigned}\n"
                )
            chunks.flush_if_full()
    chunks.flush()
    return chunks.count


def generate(plan: SeedPlan, emit: Emit) -> tuple[SeedResult, list[UserRow]]:
    """Generate every row, handing COPY text to ``emit`` table by table.

    Returns the result and the users' rows (``auth.users`` is not emitted: its passwords
    still need hashing).
    """
    people = _organisations(plan, emit)
    contacts = _contacts(plan, people, emit)
    notes = _notes(plan, people, contacts, emit)
    assignments = _assignments(plan, people, contacts, emit)
    result = SeedResult(
        plan.seed, people.organisations, people.users, sum(plan.contacts), notes, assignments
    )
    return result, people.user_rows
