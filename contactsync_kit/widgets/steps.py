"""The console's steps in words: a state per tab, the banner and the outage sentence.

Pure functions of the step models, so `ContactSyncApp` only asks them and shows the answer.
"""

from __future__ import annotations

from typing import Final

from ..bootstrap import UserSession
from ..results import SyncErrorKind
from .connection import is_outage
from .diagnostics_model import DiagnosticsModel
from .freshness import FreshnessModel
from .login_model import LoginModel
from .organisation import OrganisationModel
from .sync import SyncModel

__all__ = [
    "STEPS",
    "banner_text",
    "clock_note",
    "diagnostics_state",
    "freshness_state",
    "outage_sentence",
    "sync_state",
    "tone_state",
]

__io__ = "none"

#: The console's steps, in order: (tab title, model and `AppPanels` field).
STEPS: Final = (
    ("Sign in", "login"),
    ("Organisation", "organisation"),
    ("Sync", "sync"),
    ("Freshness", "freshness"),
    ("Diagnose", "diagnostics"),
    ("Cached data", "data"),
    ("Export", "export"),
    ("Clear", "clearing"),
)

#: Verdicts that make the Diagnose tab read "problem".
_PROBLEMS: Final = frozenset({"failing", "drifted", "stale", "unreachable"})


def sync_state(sync: SyncModel) -> str:
    """The Sync tab's word: running, done, cancelled, no answer or failed."""
    result = sync.result
    if sync.running:
        return "running"
    if result is None or result.error is None:
        return "" if result is None else "done"
    if result.error.kind is SyncErrorKind.CANCELLED:
        return "cancelled"
    return "no answer" if is_outage(result.error) else "failed"


def freshness_state(freshness: FreshnessModel, *, offline: bool) -> str:
    """The Freshness tab's word: offline, "2 stale" or fresh."""
    if offline:
        return "offline"
    if freshness.stale_count:
        return f"{freshness.stale_count} stale"
    return "fresh" if freshness.rows else ""


def diagnostics_state(diagnostics: DiagnosticsModel) -> str:
    """The Diagnose tab's word: running, offline, problem or fine."""
    if diagnostics.working:
        return "running"
    verdicts = {r["verdict"] for r in diagnostics.rows}
    if verdicts == {"unreachable"}:
        return "offline"
    return "problem" if verdicts & _PROBLEMS else "fine" if verdicts else ""


def tone_state(tone: str) -> str:
    """Any other tab's word, from its status line's tone: failed or working."""
    return {"error": "failed", "busy": "working"}.get(tone, "")


def clock_note(session: UserSession | None) -> str:
    """The session's note on this computer's clock (`UserSession.clock_note()`), or ""."""
    note = getattr(session, "clock_note", None)
    text = note() if callable(note) else None
    return str(text) if text else ""


def banner_text(login: LoginModel, organisation: OrganisationModel) -> str:
    """Who is signed in, to which organisation; or why nobody is."""
    who = login.user if login.session is not None else ""
    if who:
        org = organisation.name_of(organisation.organisation_id)
        return f"Signed in as {who}" + (f" · organisation: {org}" if org else "")
    return f"Signed out: {login.ended}." if login.ended else "Not signed in"


def outage_sentence(age: str) -> str:
    """The one sentence stating an outage, with the age of the copy shown (may be empty)."""
    copy = (
        f"you are looking at this computer's copy from {age} ago"
        if age
        else "you are looking at what this computer has cached"
    )
    return (
        f"The server does not answer; {copy}. Everything cached stays readable, nothing "
        "is deleted, and the console refreshes the copy as soon as the server answers."
    )
