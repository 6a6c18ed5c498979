"""Where the console finds its project: environment variables, else a settings file.

Support staff should never have to type a project URL or key: an admin sets them once, in
the environment (``SUPABASE_URL``, ``SUPABASE_ANON_KEY`` or ``SUPABASE_PUBLISHABLE_KEY``) or
in the settings file (``$CONTACTSYNC_SETTINGS``, default
``~/.config/contactsync_kit/settings.json``)::

    {"url": "https://xyz.supabase.co", "key": "sb_publishable_…", "auto_refresh": true}

The console shows the URL and key fields only when neither names a project. `check_url`
checks and completes a typed URL before any request is made.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ContactSyncError

__all__ = ["ConsoleSettings", "UrlProblem", "check_url", "settings_path"]

__io__ = "disk"


class UrlProblem(ContactSyncError, ValueError):
    """A project URL that cannot be used; the message says what to type instead."""


def settings_path() -> Path:
    """``$CONTACTSYNC_SETTINGS`` or ``~/.config/contactsync_kit/settings.json``."""
    override = os.environ.get("CONTACTSYNC_SETTINGS")
    if override:
        return Path(override)
    return Path.home() / ".config" / "contactsync_kit" / "settings.json"


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(text: str) -> str:
    """The project URL people typed, checked and completed.

    ``https://`` is added when missing (``http://`` for this machine), and trailing slashes
    are removed.

    Raises `UrlProblem` with a sentence a support person can act on.
    """
    raw = text.strip()
    example = "It looks like https://your-project.supabase.co."
    if not raw:
        raise UrlProblem(f"Type the project's web address. {example}")
    if any(c.isspace() for c in raw):
        raise UrlProblem(f"The project address cannot contain spaces. {example}")
    if "://" not in raw:
        host = urlsplit(f"//{raw}").hostname or ""
        raw = f"{'http' if _is_local(host) else 'https'}://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise UrlProblem(f"The project address must start with https://. {example}")
    host = parts.hostname or ""
    if not host or (host != "localhost" and "." not in host and not _is_local(host)):
        raise UrlProblem(f"'{text.strip()}' is not a web address. {example}")
    try:
        _ = parts.port
    except ValueError:
        raise UrlProblem(f"The port in '{text.strip()}' is not a number. {example}") from None
    if parts.query or parts.fragment:
        raise UrlProblem(f"Use the project's address without '?' or '#' parts. {example}")
    return raw.rstrip("/")


@dataclass(frozen=True)
class ConsoleSettings:
    """The project the console talks to, and how it behaves.

    `source` says where `url` and `key` came from ("environment", the settings file's path,
    or "" when nothing is configured and the console must ask).
    """

    url: str = ""
    key: str = ""
    email: str = ""
    password: str = ""
    cache_path: str | None = None
    auto_refresh: bool = True
    source: str = ""

    @property
    def configured(self) -> bool:
        """True when the project URL and key are known without asking."""
        return bool(self.url and self.key)

    @classmethod
    def load(
        cls,
        environ: dict[str, str] | None = None,
        path: Path | None = None,
    ) -> ConsoleSettings:
        """Settings from the environment, then the settings file (environment wins)."""
        env = dict(os.environ if environ is None else environ)
        file = path or settings_path()
        stored: dict[str, Any] = {}
        if file.is_file():
            try:
                loaded = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = {}
            stored = loaded if isinstance(loaded, dict) else {}
        url = env.get("SUPABASE_URL") or ""
        key = env.get("SUPABASE_ANON_KEY") or env.get("SUPABASE_PUBLISHABLE_KEY") or ""
        source = "environment" if url and key else ""
        if not source and stored.get("url") and stored.get("key"):
            url, key, source = str(stored["url"]), str(stored["key"]), str(file)
        auto = env.get("CONTACTSYNC_AUTO_REFRESH")
        return cls(
            url=url,
            key=key,
            source=source,
            email=env.get("SUPABASE_EMAIL", ""),
            password=env.get("SUPABASE_PASSWORD", ""),
            cache_path=env.get("CONTACTSYNC_CACHE") or stored.get("cache_path") or None,
            auto_refresh=(
                auto not in ("0", "false", "no")
                if auto is not None
                else bool(stored.get("auto_refresh", True))
            ),
        )
