"""The advice per failure kind: one table, complete.

It is read alike by the Sync panel and the stale-cache diagnosis.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest

from contactsync_kit.advice import (
    ACCESS_REVOKED,
    ADVICE,
    TOKEN_EXPIRED,
    UNKNOWN_FAILURE,
    advise,
)
from contactsync_kit.diagnostics import OrgFacts, Verdict, verdict
from contactsync_kit.results import SyncError, SyncErrorKind, SyncFailure

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_every_error_kind_has_advice() -> None:
    assert set(ADVICE) == set(SyncErrorKind)
    for kind, advice in ADVICE.items():
        assert advice.cause and advice.problem and advice.action, kind
        assert advice.action == advice.action.strip() and not advice.action.endswith(".")
    causes = [
        advice.cause
        for advice in (*ADVICE.values(), TOKEN_EXPIRED, ACCESS_REVOKED, UNKNOWN_FAILURE)
    ]
    assert len(causes) == len(set(causes)), "a cause code names one situation"


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("PGRST301", 401, TOKEN_EXPIRED),
        ("PGRST303", 401, TOKEN_EXPIRED),
        ("token_expired", None, TOKEN_EXPIRED),
        ("42501", 403, ACCESS_REVOKED),
        (None, 403, ACCESS_REVOKED),
        (None, None, ADVICE[SyncErrorKind.AUTH]),
    ],
)
def test_auth_is_refined_by_the_servers_code(
    code: str | None, status: int | None, expected: object
) -> None:
    assert advise(SyncErrorKind.AUTH, code, status) is expected
    assert advise("auth", code, status) is expected, "the sync log stores plain strings"


def test_codes_refine_only_auth_and_unknown_kinds_get_generic_advice() -> None:
    assert advise(SyncErrorKind.REMOTE, "PGRST301", 401) is ADVICE[SyncErrorKind.REMOTE]
    assert advise("written_by_a_newer_kit") is UNKNOWN_FAILURE
    assert advise(None) is UNKNOWN_FAILURE


def test_a_sentence_is_the_action_capitalised() -> None:
    assert TOKEN_EXPIRED.sentence == "Sign in again: token expired."


@pytest.mark.parametrize("kind", list(SyncErrorKind))
def test_the_sync_panel_and_the_diagnosis_give_the_same_advice(kind: SyncErrorKind) -> None:
    from contactsync_kit.widgets.sync import SyncModel, SyncPanel

    advice = advise(kind)
    model = SyncModel()
    panel = SyncPanel(model)
    model.result = SyncFailure(organisation_id="o", error=SyncError(kind, "it failed"))
    assert html.escape(advice.sentence) in panel.readout.value

    synced = NOW - timedelta(hours=1)
    finding = verdict(
        OrgFacts(
            "o",
            last_synced_at=synced,
            last_attempt_at=NOW,
            last_attempt_outcome="failure",
            last_error_kind=kind.value,
        ),
        now=NOW,
    )
    assert (finding.verdict, finding.cause, finding.action) == (
        Verdict.FAILING,
        advice.cause,
        advice.action,
    )
    assert advice.problem in finding.summary
