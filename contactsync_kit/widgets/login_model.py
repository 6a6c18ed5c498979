"""The sign-in step's model: signing in and out, the session, and what to tell the person.

The view is `login.LoginPanel`; drive the model without clicks: ``await model.sign_in()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import ipywidgets as ipw
from traitlets import Unicode, observe

from ..bootstrap import UserSession, default_cache_path, start_session
from ..cache import CacheVersionError, ContactCache
from ..cache_files import CacheFileError, CorruptCacheError
from ..clock import Clock, SystemClock
from ..errors import SessionEndedError
from ..options import DEFAULT_OPTIONS, SyncOptions, resolve_options
from ..results import SyncErrorKind
from ..session import (
    BadCredentialsError,
    PrivilegedKeyError,
    ProjectRefusedError,
    SignInError,
    inspect_token,
)
from ..staleness import format_age
from ._base import PanelModel
from .settings import UrlProblem, check_url
from .table_words import listed, words_for

__all__ = ["LoginModel", "SessionFactory", "describe_removed", "on_enter"]

__io__ = "ui, network"

#: Seconds a request may wait for an answer (connecting gets 3 s).
_READ_TIMEOUT_S = 15.0

#: Builds a `UserSession`; `start_session` unless a test injects another.
SessionFactory = Callable[..., Awaitable[UserSession]]


def describe_removed(removed: Mapping[str, int]) -> str:
    """Rows removed per table, as a sentence fragment: ``"120 contacts, 360 notes, …"``."""
    parts = []
    for table, count in removed.items():
        one, many = words_for(table)
        parts.append(f"{count:,} {one if count == 1 else many}")
    return ", ".join(parts) if parts else "nothing"


def on_enter(field: ipw.Text, action: Callable[[], object]) -> None:
    """Run `action` when Enter is pressed in `field` (the field sends its value first)."""

    def handle(_widget: object, content: dict[str, Any], _buffers: object) -> None:
        if content.get("event") == "submit":
            action()

    field.on_msg(handle)


def _cache_problem(exc: CacheFileError | CacheVersionError) -> str:
    """A cache file that stopped sign-in, as one sentence starting with a capital."""
    message = str(getattr(exc, "message", None) or exc).rstrip(". ")
    return f"This computer's cache file cannot be used: {message}."


def _sign_in_problem(exc: SignInError, url: str) -> str:
    """A failed sign-in in words a support person can act on, by the error's type."""
    if isinstance(exc, BadCredentialsError):
        return (
            "The email or password is not right. Check both (passwords are "
            "case-sensitive) and try again."
        )
    if isinstance(exc, ProjectRefusedError):
        return (
            "The server did not accept the project key. Ask whoever set up the console "
            "for the project's publishable (anon) key."
        )
    if exc.kind is SyncErrorKind.NETWORK:
        return (
            f"Cannot reach the server at {url}. Check the project address and this "
            "computer's network connection, then try again."
        )
    return (
        f"The server refused the sign-in ({exc.message.rstrip('.')}). Check your email "
        "and password; if it keeps happening, ask an admin whether your account is "
        "active."
    )


def _missing(fields: dict[str, str]) -> str:
    """What is left to type, as a sentence; empty when everything is filled in."""
    missing = [name for name, value in fields.items() if not value.strip()]
    return f"Type {listed(missing)}, then press Sign in." if missing else ""


class LoginModel(PanelModel):
    """Signs a user in (publishable/anon key + email/password) and out.

    `sign_in` refuses service-role and secret keys (the kit must only ever see what Row Level
    Security lets the user see) and shows why a sign-in failed. `sign_out` wipes the cache
    before ending the session — the seed's logout rule — and reports what it removed.
    """

    url = Unicode("", help="The project's URL, e.g. https://xyz.supabase.co.")
    key = Unicode("", help="The project's publishable (anon) key. Never the service-role key.")
    email = Unicode("")
    password = Unicode("")
    user = Unicode("", help="Who is signed in (email), or empty.")
    token_text = Unicode("", help="How long the access token has left, for people.")
    key_problem = Unicode("", help="Why the key in `key` cannot be used, or empty.")
    demo_login = Unicode("", help="The demo's login, shown on the sign-in step (demo only).")
    ended = Unicode(
        "",
        help="Why the last session ended without signing out here (another window signed "
        "out, another person signed in), one sentence; empty otherwise.",
    )
    cache_problem = Unicode(
        "",
        help="The damaged or newer cache file that stopped sign-in "
        "and that `reset_cache` may erase, or empty.",
    )

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        cache_path: str | Path | None = None,
        http_client: httpx.AsyncClient | None = None,
        options: SyncOptions | None = None,
        max_rows: int | None = DEFAULT_OPTIONS.max_rows,
        page_size: int = DEFAULT_OPTIONS.page_size,
        session_factory: SessionFactory | None = None,
        **kwargs: Any,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.cache_path = cache_path
        self._http_client = http_client
        #: How the sessions this panel starts sync (`SyncOptions`).
        self.options = resolve_options(options, max_rows=max_rows, page_size=page_size)
        self._factory: SessionFactory = session_factory or start_session
        super().__init__(**kwargs)
        self._check_key({"new": self.key})
        #: True when the project came from configuration: its fields are then not shown.
        self.configured = bool(self.url and self.key)
        self._explain()

    def _explain(self) -> None:
        if not self.configured:
            self.say(
                "info",
                "Not signed in. Type the project's address and key (your admin "
                "has them), then your email and password, and press Enter.",
            )
        else:
            self.say("info", "Not signed in. Type your email and password, then press Enter.")

    @property
    def cache_location(self) -> str:
        """Where this console keeps its cache file (``CONTACTSYNC_CACHE`` or the default)."""
        return str(self.cache_path if self.cache_path is not None else default_cache_path())

    @property
    def signed_in(self) -> bool:
        """True while a session is open."""
        return self.session is not None

    @observe("key")
    def _check_key(self, change: dict[str, Any]) -> None:
        key = str(change["new"] or "")
        info = inspect_token(key) if key else None
        if info is not None and info.bypasses_rls:
            self.key_problem = (
                "This is a service-role / secret key: it bypasses Row Level "
                "Security and is refused. Use the publishable (anon) key."
            )
        else:
            self.key_problem = ""

    async def sign_in(self) -> bool:
        """Sign in with the fields' values; True on success. Failures end up in `status`."""
        if self.session is not None:
            self.say("info", f"Already signed in as {self.user}. Sign out first to switch.")
            return True
        if self.busy:
            return False  # a second Enter or click while signing in
        missing = _missing(
            {
                "the project address": self.url,
                "the project key": self.key,
                "your email address": self.email,
                "your password": self.password,
            }
        )
        if missing:
            self.say("error", missing)
            return False
        try:
            url = check_url(self.url)
        except UrlProblem as exc:
            self.say("error", str(exc))
            return False
        self.url = url
        session = await self._start(url)
        if session is None:
            return False
        # Not kept after use: the session holds the tokens it needs.
        self.password = ""
        self.ended = ""
        token = session.token()
        self.user = (token.email if token and token.email else None) or self.email.strip()
        self.session = session
        self.refresh_token_text()
        self.say("ok", f"Signed in as {self.user}.")
        return True

    async def _start(self, url: str) -> UserSession | None:
        """Start the session; None (and why, in `status`) when it could not start."""
        self.cache_problem = ""
        try:
            with self.busy_saying(f"Signing in as {self.email.strip()}…"):
                return await self._factory(
                    url,
                    self.key.strip(),
                    email=self.email.strip(),
                    password=self.password,
                    cache_path=self.cache_path,
                    clock=self.clock,
                    # A short connect timeout: a server that is down is known in seconds.
                    http_client=self._http_client
                    or httpx.AsyncClient(timeout=httpx.Timeout(_READ_TIMEOUT_S, connect=3.0)),
                    options=self.options,
                )
        except PrivilegedKeyError:
            self.say(
                "error",
                "Refused: this is a service-role / secret key, which bypasses Row "
                "Level Security. Use the project's publishable (anon) key.",
            )
        except SignInError as exc:
            self.say("error", _sign_in_problem(exc, url))
        except (CorruptCacheError, CacheVersionError) as exc:
            # The kit's own file, damaged or from a newer kit: erasing it is the way out.
            self.say(
                "error",
                _cache_problem(exc) + " Press \u201cReset the cache file\u201d "
                "below to erase it, then sign in again.",
            )
            self.cache_problem = self.cache_location
        except CacheFileError as exc:  # someone else's file, or locked: resetting cannot help
            self.say("error", _cache_problem(exc))
        return None

    async def sign_out(self) -> dict[str, int] | None:
        """Wipe the cache, end the session; return the rows removed per table (None if idle)."""
        session = self.session
        if session is None:
            self.say("info", "Not signed in.")
            return None
        try:
            with self.busy_saying("Signing out: wiping the local cache first…"):
                removed = await session.sign_out()
        except SessionEndedError as exc:  # signed out in another window meanwhile
            self.end_session(exc.message)
            return None
        session.close()
        who = self.user
        self.session = None
        self.user = ""
        self.token_text = ""
        self.say(
            "ok",
            f"Signed out {who}. This computer's copy of the contacts was "
            f"deleted: {describe_removed(removed)}.",
        )
        return removed

    def end_session(self, message: str) -> None:
        """The session ended elsewhere (`message` says how): turn to the signed-out state.

        The cache is not wiped here (whoever ended the session did that, or it belongs to
        the person now signed in); the session is released and every panel resets.
        """
        session = self.session
        if session is None:
            return
        with contextlib.suppress(Exception):
            session.close()
        with self.hold_trait_notifications():
            self.ended = message.rstrip(".")
            self.session = None
            self.user = ""
            self.token_text = ""
            self.say("warn", f"Signed out: {self.ended}.")

    async def reset_cache(self) -> list[Path] | None:
        """Securely erase the cache file that stopped sign-in; return the files erased.

        Uses `ContactCache.reset`, so a file the kit did not create is never removed (its
        refusal is shown instead). Signing in again is left to the person. None when there
        is nothing to reset or the reset was refused.
        """
        if self.session is not None:
            self.say("info", "Signed in: signing out erases this computer's cache file.")
            return None
        if self.busy or not self.cache_problem:
            return None
        path = Path(self.cache_problem)
        try:
            with self.busy_saying("Erasing this computer's cache file…"):
                erased = await asyncio.to_thread(ContactCache.reset, path)
        except CacheFileError as exc:
            self.cache_problem = ""
            self.say("error", _cache_problem(exc))
            return None
        except OSError as exc:
            self.say(
                "error",
                f"Could not erase the cache file {path}: {exc.strerror or exc}. "
                "Check that this account may write to its folder, then try again.",
            )
            return None
        self.cache_problem = ""
        self.say(
            "ok",
            f"The cache file was erased ({len(erased)} "
            f"{'file' if len(erased) == 1 else 'files'}). Press Sign in: your contacts "
            "will be synced again after you sign in.",
        )
        return erased

    def refresh_token_text(self) -> str:
        """Recompute `token_text` from the session's token and the clock."""
        session = self.session
        token = session.token() if session is not None else None
        if token is None or token.expires_at is None:
            self.token_text = "" if session is None else "token expiry unknown"
            return self.token_text
        left = (token.expires_at - self.clock.now()).total_seconds()
        until = token.expires_at.strftime("%H:%M UTC")
        if left > 0:
            self.token_text = f"access token valid for {format_age(left)} more (until {until})"
        else:
            self.token_text = (
                f"access token expired {format_age(-left)} ago (at {until}); sign out and in again"
            )
        return self.token_text

    def close(self) -> None:
        """Release the cache file without wiping it (the kernel is going away)."""
        if self.session is not None:
            self.session.close()
