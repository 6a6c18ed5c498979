"""Unit-test fixtures: an in-memory cache and a supabase-py client over `FakeSupabase`."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from contactsync_kit import Clock, ContactCache, ContactCacheSyncRepository, ManualClock, sign_in
from contactsync_kit.testing import FakeSupabase

EMAIL = "coordinator@example.org"
PASSWORD = "correct horse"


@pytest.fixture
def org() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def fake() -> FakeSupabase:
    return FakeSupabase(users={EMAIL: PASSWORD})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cache() -> ContactCache:
    return ContactCache.open(":memory:")


async def repository_for(
    fake: FakeSupabase, cache: ContactCache, clock: Clock, **options: Any
) -> ContactCacheSyncRepository:
    """A repository whose supabase-py client is signed in to `fake` as the test user."""
    client = await sign_in(
        fake.url, fake.anon_key, email=EMAIL, password=PASSWORD, http_client=fake.http_client()
    )
    return ContactCacheSyncRepository(client, cache, clock, **options)


@pytest.fixture
async def repo(
    fake: FakeSupabase, cache: ContactCache, clock: ManualClock
) -> ContactCacheSyncRepository:
    return await repository_for(fake, cache, clock)
