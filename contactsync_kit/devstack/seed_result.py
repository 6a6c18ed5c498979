"""What a seed made: organisations, users with their memberships and passwords, row counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Membership", "SeedResult", "SeededOrganisation", "SeededUser"]

__io__ = "none"


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
    """What `DevStack.seed` made: ids, names, credentials and row counts."""

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
