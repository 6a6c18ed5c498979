"""Fixtures shared by every kind of test: ONE embedded local Supabase stack per session.

Unit tests of pure logic never ask for it, so they never start it. Tests that need their own
data seed it with their own seed number; fault injection and a stopped PostgREST are undone
after every test that used the stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contactsync_kit.devstack import DevStack


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    """The session's local stack, seeded with `seeded`'s data."""
    with DevStack.start(max_rows=1000) as started:
        started.seed(
            organisations=3,
            chapters_per_org=2,
            users_per_org=3,
            contacts_per_org=[60, 40, 20],
            notes_per_contact=3,
            assignments_per_contact=1,
            seed=42,
        )
        yield started


@pytest.fixture(autouse=True)
def _healthy_stack(request: pytest.FixtureRequest) -> Iterator[None]:
    # Only for tests that use the stack: never start one just to clean it up.
    yield
    if "stack" in request.fixturenames:
        current: DevStack = request.getfixturevalue("stack")
        current.faults.reset()
        if not current.postgrest_running:
            current.start_postgrest()
