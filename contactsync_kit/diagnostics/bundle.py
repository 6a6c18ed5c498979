"""The support bundle: one JSON file of facts for support, and no personal data.

It holds the diagnosis, the sync log, versions and settings.

How personal data is kept out — the bundle **redacts**, and refuses only as a last resort:

* every string of the bundle that contains a personal value of the cache (a name, phone,
  email, address or note body), or a word of four or more letters from a name, email or
  address, is replaced whole by ``[redacted]``. Matching is case- and accent-folded and
  finds a value where it stands on its own, not inside a longer word (see `privacy`). A
  word that is also one of the bundle's own field names is not matched alone, or every
  bundle would be refused; note bodies are matched whole, their words being everyday words;
* free-text fields also lose anything shaped like an email address or a phone number;
* the user id is replaced by a keyed hash (`pseudonymise`), and the raw id is redacted
  wherever else it appears;
* before `write_support_bundle` writes, the final text (``ensure_ascii=False``, so accented
  letters are scanned as written, not as ``\\u00e9`` escapes) is scanned again with the same
  rules; a hit, which redaction should make impossible, raises `ValueError` and nothing is
  written.

Disk I/O: `write_support_bundle` writes the one file; the cache is read through `ContactCache`.
"""

from __future__ import annotations

import json
import platform
import re
import secrets
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from .diagnosis import Diagnosis
from .privacy import PersonalData, personal_values, personal_words, pseudonymise, words_of

if TYPE_CHECKING:
    from ..cache import ContactCache

__all__ = ["support_bundle", "write_support_bundle"]

# Writes the support bundle file.
__io__ = "disk"

#: The bundle layout's version; 2: the user id is a keyed hash.
_FORMAT: Final = 2
_KEY_BYTES: Final = 32
_REDACTED: Final = "[redacted]"
_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE: Final = re.compile(r"\+?\d[\d ()-]{6,}\d")
#: Free-text fields of a bundle; everything else is ids, timestamps, counts and codes.
_FREE_TEXT: Final = ("summary", "action", "last_error_message", "message", "problem")
#: Words the bundle writes whatever the data: the redaction mark and JSON's literals.
_LITERAL_WORDS: Final = words_of(f"{_REDACTED} {json.dumps([None, True, False])}")
_VERSIONS_OF: Final = (
    "contactsync_kit",
    "supabase",
    "postgrest",
    "supabase_auth",
    "httpx",
    "polars",
    "sqlalchemy",
)


def support_bundle(
    diagnosis: Diagnosis,
    cache: ContactCache,
    *,
    key: bytes | None = None,
) -> dict[str, Any]:
    """The support bundle as a JSON-ready dict: diagnosis, sync log, versions and settings.

    Strings holding a personal value of the cache (folded; see the module docstring) are
    replaced whole by ``[redacted]``; free-text fields also lose anything shaped like an
    email or phone number; ids, timestamps, counts and codes pass unchanged. The session's
    user id is replaced by HMAC-SHA256 keyed with `key`: keyed, because a plain hash of a
    user id is reversed by hashing a list of candidate ids. `key` defaults to fresh random
    bytes per bundle that are never stored, so nobody can link the bundle to a user id;
    pass a key kept with the cache to make the same user read alike across bundles.
    """
    bundle, _ = _redacted_bundle(diagnosis, cache, key)
    return bundle


def write_support_bundle(
    diagnosis: Diagnosis, cache: ContactCache, path: str | Path, *, key: bytes | None = None
) -> Path:
    """Write `support_bundle` as one UTF-8 JSON file at `path` (a directory gets a dated name).

    The text as written is scanned again for every personal value of the cache, folded as
    `support_bundle` folds them; a hit (which redaction should make impossible) raises
    `ValueError` instead of writing personal data.
    """
    target = Path(path)
    if target.is_dir():
        stamp = diagnosis.generated_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = target / f"contactsync-support-{stamp}.json"
    bundle, guard = _redacted_bundle(diagnosis, cache, key)
    text = json.dumps(bundle, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    if guard.found(text):
        raise ValueError("the support bundle would contain personal data; not written")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def _redacted_bundle(
    diagnosis: Diagnosis,
    cache: ContactCache,
    key: bytes | None,
) -> tuple[dict[str, Any], PersonalData]:
    """The redacted bundle, and the guard it was redacted with (for the final scan)."""
    bundle = _assemble(
        diagnosis, cache, key if key is not None else secrets.token_bytes(_KEY_BYTES)
    )
    user_id = diagnosis.session.user_id
    guard = PersonalData(
        [*personal_values(cache), *([user_id] if user_id else [])],
        personal_words(cache),
        ignore=_field_words(bundle) | _LITERAL_WORDS,
    )
    strings = _strings(bundle)
    flagged = {text for text, hits in zip(strings, guard.found_in(strings), strict=True) if hits}
    redacted: dict[str, Any] = _scrub(bundle, flagged)
    return redacted, guard


def _assemble(diagnosis: Diagnosis, cache: ContactCache, key: bytes) -> dict[str, Any]:
    from ..cache import SCHEMA_VERSION

    orgs = diagnosis.organisations.get_column("organisation_id").to_list()
    session = asdict(diagnosis.session)
    if session["user_id"] is not None:
        session["user_id"] = pseudonymise(session["user_id"], key)
    return {
        "kind": "contactsync_kit support bundle",
        "format": _FORMAT,
        "generated_at": diagnosis.generated_at.isoformat(),
        "versions": _versions(),
        "settings": {
            "stale_threshold_hours": diagnosis.threshold.total_seconds() / 3600,
            "server_url": diagnosis.server_url,
            "cache_schema_version": cache.schema_version,
            "kit_schema_version": SCHEMA_VERSION,
            # Only the file's name: its directory may carry the person's account name.
            "cache_file": Path(cache.path).name,
            "in_memory_cache": cache.path == ":memory:",
        },
        "session": {
            name: (value.isoformat() if isinstance(value, datetime) else value)
            for name, value in session.items()
        },
        "diagnosis": {
            "organisations": _records(diagnosis.organisations),
            "tables": _records(diagnosis.tables),
            "differences": _records(diagnosis.differences),
        },
        "sync_log": _records(diagnosis.sync_log),
        "cache_overview": _records(cache.overview().filter(pl.col("organisation_id").is_in(orgs))),
    }


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            name: (value.isoformat() if isinstance(value, datetime) else value)
            for name, value in row.items()
        }
        for row in frame.iter_rows(named=True)
    ]


def _versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform(terse=True)}
    for package in _VERSIONS_OF:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _strings(value: Any) -> list[str]:
    """Every string value in a JSON-ready structure (keys excluded)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def _field_words(value: Any) -> set[str]:
    """The words of every key: the bundle's own vocabulary, never personal."""
    if isinstance(value, dict):
        return {
            word for name, item in value.items() for word in words_of(name) | _field_words(item)
        }
    if isinstance(value, list):
        return {word for item in value for word in _field_words(item)}
    return set()


def _scrub(value: Any, flagged: set[str], key: str | None = None) -> Any:
    if isinstance(value, str):
        if value in flagged:
            return _REDACTED
        if key in _FREE_TEXT:
            # Patterns only in free text: ids and timestamps look like phone numbers too.
            return _PHONE.sub(_REDACTED, _EMAIL.sub(_REDACTED, value))
        return value
    if isinstance(value, dict):
        return {name: _scrub(item, flagged, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, flagged, key) for item in value]
    return value
