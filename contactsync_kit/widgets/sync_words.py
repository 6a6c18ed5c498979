"""A sync result in the words the Sync step shows: one sentence, and the details behind it."""

from __future__ import annotations

import re

from ..advice import advise
from ..results import SyncErrorKind, SyncFailure, SyncResult
from ..schemas import describe_rows
from ._base import CANCELLED_TEXT
from .connection import is_outage

__all__ = ["describe_result", "result_details"]

__io__ = "none"


def _took(ms: int) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else "under a second" if ms < 950 else "1 s"


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


def _plain_reason(reason: str) -> str:
    """A fallback reason for the sentence: without the server's technical wording in
    parentheses or the "ran a full sync" / "not verified" tails the sentence says itself.
    """
    plain, depth = [], 0
    for char in reason:  # drop " (…)", nested parentheses included
        depth += char == "("
        if not depth:
            plain.append(char)
        depth -= char == ")" and depth > 0
    text = re.sub(r" +", " ", "".join(plain)).replace(" ;", ";").replace(" :", ":").strip()
    for tail in ("; ran a full sync", ": the sync is not verified"):
        text = text.replace(tail, "")
    return text


def _what_ran(result: SyncResult) -> str:
    """What the mode did and whether the digest proved it, in plain words."""
    if result.mode == "delta":
        did = (
            f"Only changes were fetched: {_rows(result.rows_changed)} updated, "
            f"{result.rows_deleted:,} removed."
        )
        if result.reconciled:
            did += (
                " Some differences had not arrived as changes; the digest found them and "
                "they were repaired too."
            )
    else:
        why = (
            f" ({_plain_reason(result.fallback_reason)})"
            if result.fallback_reason and result.verified
            else ""
        )
        did = f"Fetched everything{why}."
    if result.verified:
        return f"{did} Verified ✓ — the cache equals what the server shows you."
    parts = _plain_reason(result.fallback_reason or "").split("; ")
    # Why it is not verified: the parts about the digest, when the reason has several.
    reason = "; ".join([p for p in parts if "digest" in p] or parts) or (
        "the server's digest was not checked"
    )
    return (
        f"{did} Not verified: {reason}; the cache holds what the server sent, but nothing "
        "proved it equal."
    )


def describe_result(result: SyncResult, organisation_name: str = "") -> str:
    """One plain-text paragraph about a sync result.

    It says what was synced and how (only the changes, or everything; verified against the
    server's digest or not, and why), or what went wrong and what to do. Timings split and
    codes are left to `result_details`. Counts and organisation name only: no personal data.
    """
    if isinstance(result, SyncFailure) and result.error is not None:
        error = result.error
        org = f" of {organisation_name}" if organisation_name else ""
        advice = advise(error.kind, error.code, error.status).sentence
        if error.kind is SyncErrorKind.CANCELLED:
            return f"The sync{org} was {CANCELLED_TEXT}. {advice}"
        if is_outage(error):
            return (
                f"The server does not answer ({error.message.rstrip('.')}), so the sync{org} "
                "could not run. Nothing was changed in this computer's copy: keep working "
                f"from it. {advice}"
            )
        return (
            f"The sync{org} did not work: {error.message.rstrip('.')}. Nothing was "
            f"changed in this computer's copy. "
            f"{advise(error.kind, error.code, error.status).sentence}"
        ).rstrip()
    org = f" {organisation_name}" if organisation_name else ""
    return (
        f"Synced{org}: {describe_rows(result.rows_synced)}, in {_took(result.duration_ms)}. "
        f"{_what_ran(result)}"
    )


def result_details(result: SyncResult) -> list[tuple[str, str]]:
    """The technical side of a sync result, as label → plain-text rows for a disclosure."""
    t = result.timings
    rows = [
        ("Total time", f"{result.duration_ms:,} ms"),
        ("Split", f"fetch {t.fetch_ms:,} ms · map {t.map_ms:,} ms · write {t.write_ms:,} ms"),
        ("Pages", f"{result.pages:,}"),
        ("Organisation id", result.organisation_id),
        ("Mode", "delta: only changes" if result.mode == "delta" else "full: everything"),
    ]
    if result.error is None:
        rows.append(
            ("Verified", "yes ✓ (the server's digest matched)" if result.verified else "no")
        )
        rows.append(("Rows changed", f"{result.rows_changed:,}"))
        rows.append(("Rows deleted", f"{result.rows_deleted:,}"))
        if result.reconciled:
            rows.append(("Reconciled", "yes: the digest located differences by id bucket"))
    if result.fallback_reason:
        label = (
            "Why not verified"
            if result.fallback_reason.endswith("not verified")
            else "Why a full sync ran"
        )
        rows.append((label, result.fallback_reason))
    if result.error is not None:
        rows.insert(
            0,
            (
                "Error",
                f"{result.error.kind.value}"
                f"{f' [{result.error.code}]' if result.error.code else ''}",
            ),
        )
    return rows
