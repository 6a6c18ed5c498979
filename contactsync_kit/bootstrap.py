"""The one place that wires the kit together: client, cache, clock, repository."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import httpx
from supabase import AsyncClient

from .cache import ContactCache
from .clock import Clock, SystemClock
from .repository import ConcurrentPolicy, ContactCacheSyncRepository
from .session import TokenInfo, bearer_token, inspect_token, sign_in

__all__ = ["UserSession", "default_cache_path", "start_session"]

# Wires the parts; its own I/O is ending the server session at sign-out (network).
__io__ = "network"


def default_cache_path() -> Path:
    """``$CONTACTSYNC_CACHE`` or ``~/.cache/contactsync_kit/cache.sqlite3``."""
    override = os.environ.get("CONTACTSYNC_CACHE")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "contactsync_kit" / "cache.sqlite3"


@dataclass
class UserSession:
    """A signed-in user with their repository and cache; `sign_out` is the logout path."""

    client: AsyncClient
    cache: ContactCache
    repository: ContactCacheSyncRepository
    clock: Clock

    def token(self) -> TokenInfo | None:
        """What the current access token says (role, user, expiry), or None."""
        token = bearer_token(self.client)
        return inspect_token(token) if token else None

    async def sign_out(self) -> dict[str, int]:
        """Wipe the cache (the seed's logout rule), then end the server session.

        Returns the rows removed per table.
        """
        removed = await self.repository.clear_cache()
        # The local wipe is what matters; the server may be unreachable at logout.
        with contextlib.suppress(Exception):
            await self.client.auth.sign_out()
        return removed

    def close(self) -> None:
        """Release the cache file."""
        self.cache.close()

    async def aclose(self) -> None:
        """Release the cache file and the client's HTTP connections."""
        self.cache.close()
        http = self.client.options.httpx_client
        if http is not None:
            await http.aclose()


async def start_session(
    url: str,
    key: str,
    *,
    email: str | None = None,
    password: str | None = None,
    access_token: str | None = None,
    cache_path: str | Path | None = None,
    clock: Clock | None = None,
    http_client: httpx.AsyncClient | None = None,
    page_size: int = 1000,
    max_rows: int | None = 1000,
    on_concurrent: ConcurrentPolicy = "join",
) -> UserSession:
    """Sign in and build the repository over the cache at `cache_path`.

    `max_rows` is the server's PostgREST ``db-max-rows`` (1,000 on Supabase); an embedded
    array that reaches it fails the sync as incomplete instead of caching a cut list.
    Raises `PrivilegedKeyError` for RLS-bypassing keys and `SignInError` when sign-in fails.
    """
    clock = clock or SystemClock()
    client = await sign_in(url, key, email=email, password=password,
                           access_token=access_token, http_client=http_client)
    cache = ContactCache.open(cache_path if cache_path is not None else default_cache_path())
    repository = ContactCacheSyncRepository(
        client, cache, clock, page_size=page_size, max_rows=max_rows,
        on_concurrent=on_concurrent)
    return UserSession(client=client, cache=cache, repository=repository, clock=clock)
