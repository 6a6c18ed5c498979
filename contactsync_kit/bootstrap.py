"""The one place that wires the kit together: client, cache, clock, repository.

The cache belongs to the person signed in: `start_session` opens it as that person's
(project URL and user id), which erases anyone else's content first, and `sign_out` erases
its files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import httpx
from supabase import AsyncClient

from .cache import ContactCache
from .cache_files import CacheOwner, erase_cache_files, is_kit_cache_file, private_folder
from .clock import Clock, SystemClock
from .repository import ConcurrentPolicy, ContactCacheSyncRepository
from .session import SignInError, TokenInfo, bearer_token, inspect_token, sign_in

__all__ = ["UserSession", "default_cache_path", "start_session"]

# Wires the parts; its own I/O is ending the server session at sign-out (network).
__io__ = "network"


def default_cache_path() -> Path:
    """``$CONTACTSYNC_CACHE`` or ``~/.cache/contactsync_kit/private/cache.sqlite3``.

    The default folder holds nothing but the cache and is kept 0700.
    """
    override = os.environ.get("CONTACTSYNC_CACHE")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "contactsync_kit" / "private" / "cache.sqlite3"


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
        """Erase the cache (the seed's logout rule), then end the server session.

        Logout is erasure: the rows are securely deleted, then the cache is closed and its
        files (main, ``-wal``, ``-shm``, ``-journal``) are overwritten and removed. Returns
        the rows removed per table.
        """
        removed = await self.repository.clear_cache()
        await asyncio.to_thread(self.cache.erase)
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
        await _close_client(self.client)


def _erase_legacy_default_cache() -> None:
    # Earlier versions kept an ownerless, world-readable cache one folder up; whoever it
    # belonged to, it must not outlive the move to the private folder.
    legacy = Path.home() / ".cache" / "contactsync_kit" / "cache.sqlite3"
    if legacy.exists() and is_kit_cache_file(legacy):
        erase_cache_files(legacy)


async def _close_client(client: AsyncClient) -> None:
    http = client.options.httpx_client
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
    cache_key: str | None = None,
    clock: Clock | None = None,
    http_client: httpx.AsyncClient | None = None,
    page_size: int = 1000,
    max_rows: int | None = 1000,
    on_concurrent: ConcurrentPolicy = "join",
) -> UserSession:
    """Sign in and build the repository over the cache at `cache_path`.

    `max_rows` is the server's PostgREST ``db-max-rows`` (1,000 on Supabase); an embedded
    array that reaches it fails the sync as incomplete instead of caching a cut list.
    The cache at `cache_path` (default: `default_cache_path()`) is opened as this user's on
    this project: content left by anyone else is securely erased first. With `cache_key` it
    is encrypted at rest with SQLCipher (the ``encrypted`` extra).
    Raises `PrivilegedKeyError` for RLS-bypassing keys, `SignInError` when sign-in fails, and
    a typed cache error (`CorruptCacheError`, `ForeignCacheFileError`, `CacheVersionError`…)
    whose message says how to reset the cache.
    """
    clock = clock or SystemClock()
    client = await sign_in(
        url, key, email=email, password=password, access_token=access_token, http_client=http_client
    )
    token = bearer_token(client)
    info = inspect_token(token) if token else None
    if info is None or not info.is_user or not info.subject:
        raise SignInError("the server did not return a user access token")
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    if path == default_cache_path():
        private_folder(path.parent, tighten=True)  # the kit's own folder
        await asyncio.to_thread(_erase_legacy_default_cache)
    owner = CacheOwner.of(url, info.subject)
    try:
        cache = await asyncio.to_thread(ContactCache.open, path, owner=owner, key=cache_key)
    except BaseException:
        if http_client is None:  # the client made for this session; the caller's stays open
            await _close_client(client)
        raise
    repository = ContactCacheSyncRepository(
        client, cache, clock, page_size=page_size, max_rows=max_rows, on_concurrent=on_concurrent
    )
    return UserSession(client=client, cache=cache, repository=repository, clock=clock)
