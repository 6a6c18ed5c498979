"""Fixtures for the integration tests.

The session's one local stack, ``stack``, lives in ``tests/conftest.py`` and is shared with
the panel and browser tests.

The ``stack`` is started once (``max_rows=1000``, like Supabase) and seeded small with seed 42
(three organisations x two chapters, users of every role; see ``contactsync_kit.devstack.seed``).
Tests that need their own data should seed with another seed number or insert through
``stack.sql``, and must undo fault injection (``stack.faults.reset()``) and restart PostgREST
if they stopped it: the autouse ``_healthy_stack`` fixture does both after every test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from contactsync_kit.devstack import DevStack, SeededUser, SeedResult

SignIn = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture(scope="session")
def seeded(stack: DevStack) -> SeedResult:
    """What the session stack was seeded with (seed 42)."""
    return stack.seeds[0]


@pytest.fixture
async def sign_in(stack: DevStack) -> AsyncIterator[SignIn]:
    """``await sign_in(user_or_email, password=None, **client_options) -> AsyncClient``.

    Returns an unmodified supabase-py ``AsyncClient`` on the stack's anon key, signed in with
    email+password. Clients are signed out (locally) at teardown.
    """
    clients: list[AsyncClient] = []

    async def _sign_in(
        user: SeededUser | str, password: str | None = None, **options: object
    ) -> AsyncClient:
        email = user.email if isinstance(user, SeededUser) else user
        secret = (
            password
            if password is not None
            else (user.password if isinstance(user, SeededUser) else None)
        )
        if secret is None:
            raise ValueError("a password is needed when signing in by email")
        client = await acreate_client(
            stack.url,
            stack.anon_key,
            options=AsyncClientOptions(**options),  # type: ignore[arg-type]
        )
        clients.append(client)
        await client.auth.sign_in_with_password({"email": email, "password": secret})
        return client

    yield _sign_in
    for client in clients:
        with contextlib.suppress(Exception):
            await client.auth.sign_out({"scope": "local"})
