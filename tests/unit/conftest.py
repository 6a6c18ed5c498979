"""Unit-test fixtures: an in-memory cache and a supabase-py client over `FakeSupabase`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from contactsync_kit import ContactCache, ContactCacheSyncRepository, ManualClock, sign_in
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


@pytest.fixture
async def repo(
    fake: FakeSupabase, cache: ContactCache, clock: ManualClock
) -> AsyncIterator[ContactCacheSyncRepository]:
    http = fake.http_client()
    client = await sign_in(fake.url, fake.anon_key, email=EMAIL, password=PASSWORD,
                           http_client=http)
    yield ContactCacheSyncRepository(client, cache, clock)
    await http.aclose()
