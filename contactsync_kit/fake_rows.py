"""Fake rows shaped like the embedded select's output, made from the spec (fake personal data).

Shared by the fakes of `contactsync_kit.testing` and `FakeDeltaSource`.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from .schemas import EMBEDDED_TABLES, ROOT_TABLE, TABLES, Column, TableSpec

__all__ = ["add_fake_contacts", "fake_contact"]

__io__ = "none"


def fake_contact(
    organisation_id: str,
    *,
    rng: random.Random | None = None,
    when: datetime | None = None,
    **rows_per_contact: int,
) -> dict[str, Any]:
    """One contact row shaped like the embedded select's output (fake personal data).

    Each embedded table gets one row unless named by its plural with a count
    (``fake_contact(org, notes=3, assignments=0)``); the rows follow the spec's columns.
    """
    return _contact_row(
        organisation_id,
        rng or random.Random(),
        (when or datetime(2026, 1, 1, tzinfo=UTC)).isoformat(),
        rows_per_contact,
    )


def _contact_row(
    organisation_id: str, rng: random.Random, stamp: str, rows_per_contact: dict[str, int]
) -> dict[str, Any]:
    plurals = {TABLES[name].plural: name for name in EMBEDDED_TABLES}
    if unknown := set(rows_per_contact) - set(plurals):
        raise TypeError(f"no embedded table called {', '.join(sorted(unknown))}")
    counts = {plurals[plural]: n for plural, n in rows_per_contact.items()}
    contact_id = _fake_id(rng)
    contact = _fake_row(
        TABLES[ROOT_TABLE],
        {"id": contact_id, "organisation_id": organisation_id, "chapter_id": None}
        | {"full_name": f"Test Person {rng.randrange(10_000)}", **_FAKE_PERSON},
        rng,
        stamp,
    )
    for table in EMBEDDED_TABLES:
        spec = TABLES[table]
        parent_column = spec.parent[0] if spec.parent else spec.key
        known = {"organisation_id": organisation_id, parent_column: contact_id}
        contact[table] = [
            _fake_row(spec, known, rng, stamp, n) for n in range(counts.get(table, 1))
        ]
    return contact


_FAKE_PERSON: dict[str, Any] = {
    "phone": "+47 900 00 000",
    "email": "test.person@example.org",
    "address": "1 Example Street",
}


def _fake_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _fake_row(
    spec: TableSpec, known: dict[str, Any], rng: random.Random, stamp: str, n: int = 0
) -> dict[str, Any]:
    """A row of `spec` with the `known` values; the rest made up from each column's kind."""

    def made_up(column: Column) -> Any:
        if column.uuid:
            return _fake_id(rng) if column.required else None
        if column.timestamp:
            return stamp
        if column.values:
            return column.values[0]
        if column.sql_type == "INTEGER":
            return n
        return f"{spec.noun} {n}" if column.required else None

    return {c.name: known[c.name] if c.name in known else made_up(c) for c in spec.columns}


def add_fake_contacts(
    contacts: list[dict[str, Any]],
    organisation_id: str,
    count: int,
    seed: int,
    rows_per_contact: dict[str, int],
) -> list[dict[str, Any]]:
    """Append `count` generated contacts of `organisation_id` to `contacts`; return them."""
    rng = random.Random(f"{organisation_id}:{seed}:{len(contacts)}")
    stamp = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    made = [_contact_row(organisation_id, rng, stamp, rows_per_contact) for _ in range(count)]
    contacts.extend(made)
    return made
