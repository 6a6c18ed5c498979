"""Login panel: who is signed in, with which key, and the sign-out that wipes the cache."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import ipywidgets as ipw
from traitlets import Unicode, link, observe

from ..bootstrap import UserSession, start_session
from ..clock import Clock, SystemClock
from ..session import PrivilegedKeyError, SignInError, inspect_token
from ..staleness import format_age
from . import _view
from ._base import PanelModel

__all__ = ["LoginModel", "LoginPanel", "SessionFactory", "describe_removed"]

#: Builds a `UserSession`; `start_session` unless a test injects another.
SessionFactory = Callable[..., Awaitable[UserSession]]

_TABLE_WORDS = {
    "contacts": ("contact", "contacts"),
    "notes": ("note", "notes"),
    "contact_assignments": ("assignment", "assignments"),
    "sync_state": ("sync timestamp", "sync timestamps"),
    "sync_log": ("sync log entry", "sync log entries"),
}


def describe_removed(removed: dict[str, int]) -> str:
    """Rows removed per table, as a sentence fragment: ``"120 contacts, 360 notes, …"``."""
    parts = []
    for table, count in removed.items():
        one, many = _TABLE_WORDS.get(table, (table, table))
        parts.append(f"{count:,} {one if count == 1 else many}")
    return ", ".join(parts) if parts else "nothing"


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

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        cache_path: str | Path | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_rows: int | None = 1000,
        page_size: int = 1000,
        session_factory: SessionFactory | None = None,
        **kwargs: Any,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.cache_path = cache_path
        self._http_client = http_client
        self._max_rows = max_rows
        self._page_size = page_size
        self._factory: SessionFactory = session_factory or start_session
        super().__init__(**kwargs)
        self._check_key({"new": self.key})
        if not (self.url and self.key):
            self.say("info", "Not signed in. Enter the project URL and its anon key (or set "
                     "SUPABASE_URL and SUPABASE_ANON_KEY), your email and password, then "
                     "Sign in.")
        else:
            self.say("info", "Not signed in. Enter your email and password, then Sign in.")

    @property
    def signed_in(self) -> bool:
        """True while a session is open."""
        return self.session is not None

    @observe("key")
    def _check_key(self, change: dict[str, Any]) -> None:
        key = str(change["new"] or "")
        info = inspect_token(key) if key else None
        if info is not None and info.bypasses_rls:
            self.key_problem = ("This is a service-role / secret key: it bypasses Row Level "
                                "Security and is refused. Use the publishable (anon) key.")
        else:
            self.key_problem = ""

    async def sign_in(self) -> bool:
        """Sign in with the fields' values; True on success. Failures end up in `status`."""
        if self.session is not None:
            self.say("info", f"Already signed in as {self.user}. Sign out first to switch.")
            return True
        missing = [name for name, value in (("URL", self.url), ("key", self.key),
                                            ("email", self.email), ("password", self.password))
                   if not value.strip()]
        if missing:
            self.say("error", f"Fill in the {', '.join(missing)} first.")
            return False
        self.busy = True
        self.say("busy", f"Signing in as {self.email}…")
        try:
            session = await self._factory(
                self.url.strip(), self.key.strip(), email=self.email.strip(),
                password=self.password, cache_path=self.cache_path, clock=self.clock,
                http_client=self._http_client, max_rows=self._max_rows,
                page_size=self._page_size)
        except PrivilegedKeyError:
            self.say("error", "Refused: this is a service-role / secret key, which bypasses Row "
                     "Level Security. Use the project's publishable (anon) key.")
            return False
        except SignInError as exc:
            reason = exc.message.rstrip(".")
            if reason.lower().startswith("sign-in failed"):
                reason = reason[len("sign-in failed"):].lstrip(": ")
            self.say("error", f"Sign-in failed: {reason}.")
            return False
        finally:
            self.busy = False
        # Not kept after use: the session holds the tokens it needs.
        self.password = ""
        token = session.token()
        self.user = (token.email if token and token.email else None) or self.email.strip()
        self.session = session
        self.refresh_token_text()
        self.say("ok", f"Signed in as {self.user}.")
        return True

    async def sign_out(self) -> dict[str, int] | None:
        """Wipe the cache, end the session; return the rows removed per table (None if idle)."""
        session = self.session
        if session is None:
            self.say("info", "Not signed in.")
            return None
        self.busy = True
        self.say("busy", "Signing out: wiping the local cache first…")
        try:
            removed = await session.sign_out()
        finally:
            self.busy = False
        session.close()
        who = self.user
        self.session = None
        self.user = ""
        self.token_text = ""
        self.say("ok", f"Signed out {who}. The local cache was wiped: removed "
                 f"{describe_removed(removed)}.")
        return removed

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
            self.token_text = (f"access token expired {format_age(-left)} ago (at {until}); "
                               "sign out and in again")
        return self.token_text

    def close(self) -> None:
        """Release the cache file without wiping it (the kernel is going away)."""
        if self.session is not None:
            self.session.close()


class LoginPanel(ipw.VBox):  # type: ignore[misc]
    """The view of a `LoginModel`: fields, Sign in / Sign out, who is signed in."""

    def __init__(self, model: LoginModel, **kwargs: Any) -> None:
        self.model = model
        wide = ipw.Layout(width="34em")
        style = {"description_width": "7em"}
        self.url = ipw.Text(description="Project URL", placeholder="https://<project>.supabase.co",
                            layout=wide, style=style)
        self.key = ipw.Password(description="Anon key", placeholder="publishable / anon key",
                                layout=wide, style=style)
        self.email = ipw.Text(description="Email", placeholder="you@example.org", layout=wide,
                              style=style)
        self.password = ipw.Password(description="Password", layout=wide, style=style)
        for name in ("url", "key", "email", "password"):
            link((model, name), (getattr(self, name), "value"))
        self.sign_in_button = ipw.Button(description="Sign in", button_style="primary",
                                         icon="sign-in")
        self.sign_out_button = ipw.Button(
            description="Sign out", button_style="warning", icon="sign-out",
            tooltip="Wipes the local cache, then ends the session")
        self.sign_in_button.on_click(lambda _: model.schedule(model.sign_in(), what="Sign-in"))
        self.sign_out_button.on_click(lambda _: model.schedule(model.sign_out(),
                                                               what="Sign-out"))
        _view.tag(self.url, "csk-url")
        _view.tag(self.key, "csk-key")
        _view.tag(self.email, "csk-email")
        _view.tag(self.password, "csk-password")
        _view.tag(self.sign_in_button, "csk-sign-in")
        _view.tag(self.sign_out_button, "csk-sign-out")
        self.key_warning = ipw.HTML()
        self.who = ipw.HTML()
        self.status = _view.tag(ipw.HTML(), "csk-login-status")
        super().__init__(children=[_view.card(
            "1 · Sign in",
            "Use your own account. The project's anon key is fine to share; a service-role "
            "key is refused.",
            self.url, self.key, self.key_warning, self.email, self.password,
            ipw.HBox([self.sign_in_button, self.sign_out_button]),
            self.who, self.status)], **kwargs)
        model.observe(self._render, names=["session", "busy", "status", "tone", "user",
                                           "token_text", "key_problem"])
        self._render()

    def _render(self, _change: object = None) -> None:
        model = self.model
        signed_in = model.session is not None
        for field in (self.url, self.key, self.email, self.password):
            field.disabled = signed_in or model.busy
        self.sign_in_button.disabled = signed_in or model.busy or bool(model.key_problem)
        self.sign_out_button.disabled = not signed_in or model.busy
        self.key_warning.value = (_view.status_html("error", model.key_problem)
                                  if model.key_problem else "")
        if signed_in:
            self.who.value = _view.facts_html([
                ("Signed in as", _view.esc(model.user)),
                ("Session", _view.esc(model.token_text)),
            ])
        else:
            self.who.value = _view.facts_html([("Signed in as", "<i>nobody</i>")])
        self.status.value = _view.status_html(model.tone, model.status)
