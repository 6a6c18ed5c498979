"""The one place that wires the kit together: client, cache, clock, repository.

The cache belongs to the person signed in: `start_session` has the server confirm who that
is, then opens that person's cache (their own file in the default folder, or the file the
caller names, taken over from anyone else), and `sign_out` erases its files. See the README's
"Several sessions on one machine".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from supabase import AsyncClient

from .cache import ContactCache
from .cache_files import CacheOwner, erase_cache_files, is_kit_cache_file, private_folder
from .cache_paths import default_cache_folder, person_cache_path
from .clock import Clock, SystemClock, describe_clock_offset
from .errors import SessionEndedError, SessionEndReason
from .lease import folder_mutex, sweep_unheld_caches
from .options import DEFAULT_OPTIONS, SyncOptions, resolve_options
from .repository import ConcurrentPolicy, ContactCacheSyncRepository
from .session import SignInError, TokenInfo, bearer_token, confirm_user, inspect_token, sign_in

__all__ = ["UserSession", "default_cache_folder", "default_cache_path", "start_session"]

# Wires the parts; its own I/O is ending the server session at sign-out (network).
__io__ = "network"


def default_cache_path(project_url: str | None = None, user_id: str | None = None) -> Path:
    """Where `start_session` keeps a person's cache when no `cache_path` is given.

    ``$CONTACTSYNC_CACHE`` when set, else `default_cache_folder()`. A folder holds one file
    per person (``cache-<keyed hash>.sqlite3``): given `project_url` and `user_id`, this
    returns that person's file in it. A file path means one file, one owner at a time.
    """
    override = os.environ.get("CONTACTSYNC_CACHE")
    location = Path(override) if override else default_cache_folder()
    if project_url is None or user_id is None or (override and not location.is_dir()):
        return location
    return person_cache_path(location, CacheOwner.of(project_url, user_id))


@dataclass
class UserSession:
    """A signed-in user with their repository and cache; `sign_out` is the logout path.

    Every method is safe to call in any state: after `sign_out`, `close`, or another
    session's sign-out or sign-in on the same file, cache reads raise `SessionEndedError`
    and syncs return a `SyncFailure` of kind ``signed_out``; `ended` says why.
    `clock_offset` is the server's time minus this computer's, measured at sign-in.
    """

    client: AsyncClient
    cache: ContactCache
    repository: ContactCacheSyncRepository
    clock: Clock
    clock_offset: timedelta = field(default=timedelta(0))

    def token(self) -> TokenInfo | None:
        """What the current access token says (role, user, expiry), or None."""
        token = bearer_token(self.client)
        return inspect_token(token) if token else None

    @property
    def ended(self) -> SessionEndReason | None:
        """Why this session can no longer use its cache, or None while it can."""
        return self.cache.ended()

    def clock_note(self) -> str | None:
        """ "this computer's clock is 2 h ahead of the server", or None when they agree."""
        return describe_clock_offset(self.clock_offset)

    async def sign_out(self) -> dict[str, int]:
        """Erase the cache (the seed's logout rule), then end the server session.

        Logout is erasure: the rows are securely deleted, then the cache is closed and its
        files (main, ``-wal``, ``-shm``, ``-journal``) are overwritten and removed; the same
        person's other sessions on the file are told on their next call. Returns the rows
        removed per table. Idempotent: once signed out (here or in another window), it
        removes nothing and returns ``{}``.
        """
        removed: dict[str, int] = {}
        with contextlib.suppress(SessionEndedError):  # signed out already, here or elsewhere
            removed = await self.repository.clear_cache()
        await asyncio.to_thread(self.cache.erase)
        # The local wipe is what matters; the server may be unreachable at logout.
        with contextlib.suppress(Exception):
            await self.client.auth.sign_out()
        return removed

    def close(self) -> None:
        """Release the cache file (idempotent)."""
        self.cache.close()

    async def aclose(self) -> None:
        """Release the cache file and the client's HTTP connections (idempotent)."""
        self.cache.close()
        await _close_client(self.client)


def _erase_legacy_default_cache() -> None:
    # Earlier versions kept an ownerless, world-readable cache one folder up; whoever it
    # belonged to, it must not outlive the move to the private folder.
    legacy = default_cache_folder().parent / "cache.sqlite3"
    if legacy.exists() and is_kit_cache_file(legacy):
        erase_cache_files(legacy)


def _personal_cache(folder: Path, owner: CacheOwner) -> Path:
    """This person's file in `folder`, after erasing everyone else's unheld ones there."""
    path = person_cache_path(folder, owner)
    if folder == default_cache_folder():
        _erase_legacy_default_cache()
    with folder_mutex(folder, wait_s=30.0):
        sweep_unheld_caches(folder, keep=path)
    return path


async def _close_client(client: AsyncClient) -> None:
    http = client.options.httpx_client
    if http is not None:
        await http.aclose()


async def _open_cache(
    cache_path: str | Path | None, owner: CacheOwner, key: str | None, busy_timeout_s: float
) -> ContactCache:
    """The person's cache: their own file when `cache_path` is a folder (the default)."""
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    if path == default_cache_folder():
        private_folder(path, tighten=True)  # the kit's own folder
    if path.is_dir() and not path.is_symlink():
        path = await asyncio.to_thread(_personal_cache, path, owner)
    return await asyncio.to_thread(
        ContactCache.open, path, owner=owner, key=key, busy_timeout_s=busy_timeout_s
    )


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
    options: SyncOptions | None = None,
    page_size: int = DEFAULT_OPTIONS.page_size,
    max_rows: int | None = DEFAULT_OPTIONS.max_rows,
    delta_window: timedelta = DEFAULT_OPTIONS.delta_window,
    on_concurrent: ConcurrentPolicy = "join",
) -> UserSession:
    """Sign in and build the repository over the cache at `cache_path`.

    `options` (`SyncOptions`) sets the page size, the server's row cap, the delta window and
    the timeouts; `page_size`, `max_rows` and `delta_window` may also be given singly, and
    override `options`. `max_rows` is the server's PostgREST ``db-max-rows`` (1,000 on
    Supabase); an embedded array that reaches it fails the sync as incomplete instead of
    caching a cut list. Bad values raise `InvalidOptionsError` before anything is opened.
    The server first confirms whose the access token is (a forged or revoked token opens
    and erases nothing). Then the cache is opened as this user's on this project. When
    `cache_path` (default: `default_cache_path()`) is a folder, the person gets their own
    file in it, and every other person's file there that no live session holds is erased.
    When it is a file, content of anyone else is securely erased first, and a live session
    of another person on it is told on its next call. With `cache_key` it is encrypted at
    rest with SQLCipher (the ``encrypted`` extra).
    Raises `PrivilegedKeyError` for RLS-bypassing keys, `SignInError` when sign-in fails, and
    a typed cache error (`UnsafeCachePathError`, `CorruptCacheError`,
    `ForeignCacheFileError`, `CacheVersionError`…) whose message says what to do.
    """
    chosen = resolve_options(
        options, page_size=page_size, max_rows=max_rows, delta_window=delta_window
    )
    local_clock = clock or SystemClock()
    client = await sign_in(
        url,
        key,
        email=email,
        password=password,
        access_token=access_token,
        http_client=http_client,
        timeout_s=chosen.request_timeout_s,
    )
    try:
        token = bearer_token(client)
        info = inspect_token(token) if token else None
        if info is None or not info.is_user or not info.subject:
            raise SignInError("the server did not return a user access token")
        # Nothing is opened or erased as a person until the server vouches for the token.
        confirmed = await confirm_user(client, url, key, local_clock)
        cache = await _open_cache(
            cache_path, CacheOwner.of(url, confirmed.user_id), cache_key, chosen.busy_timeout_s
        )
    except BaseException:
        if http_client is None:  # the client made for this session; the caller's stays open
            await _close_client(client)
        raise
    repository = ContactCacheSyncRepository(
        client,
        cache,
        local_clock,
        options=chosen,
        on_concurrent=on_concurrent,
        clock_offset=confirmed.clock_offset,
    )
    return UserSession(
        client=client,
        cache=cache,
        repository=repository,
        clock=local_clock,
        clock_offset=confirmed.clock_offset,
    )
