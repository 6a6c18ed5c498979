"""The verdict half of the diagnosis: one organisation's facts in, a plain-language finding out.

Pure: `now` is given, never read. Imports neither supabase nor SQLAlchemy, and touches neither
network nor disk. The advice per failure kind comes from `contactsync_kit.advice`, the age
wording from `contactsync_kit.staleness.format_age`, and the default threshold from
`contactsync_kit.staleness.DEFAULT_STALE_AFTER`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Final

import polars as pl

from ..advice import ACCESS_REVOKED, SYNC_NOW, advise
from ..schemas import DATA_TABLES
from ..staleness import DEFAULT_STALE_AFTER, format_age
from .frames import UTC_TS

__all__ = [
    "DIAGNOSIS_SCHEMA",
    "FACT_COLUMNS",
    "Finding",
    "OrgFacts",
    "Verdict",
    "assess",
    "server_unreachable",
    "verdict",
]

__io__ = "none"


class Verdict(enum.StrEnum):
    """A cache's state, in the words a support person uses: the kit's one verdict type.

    A diagnosis (`verdict`) says one of `FRESH`, `STALE`, `DRIFTED`, `FAILING`,
    `NEVER_SYNCED` and `UNREACHABLE` of an organisation. A digest check
    (`contactsync_kit.verify`) says one of `EQUAL` (every table's count and digest agree with
    the server's), `DRIFTED` (at least one differs) and `UNAVAILABLE` (the server offers no
    digest or could not be asked).
    """

    FRESH = "fresh"
    STALE = "stale"
    DRIFTED = "drifted"
    FAILING = "failing"
    NEVER_SYNCED = "never_synced"
    UNREACHABLE = "unreachable"
    EQUAL = "equal"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class OrgFacts:
    """What is known about one organisation's cache; the input of `verdict`.

    Server fields are None when the server was not (or could not be) asked; in that case
    `server_error_kind` / `server_error_code` say why (a session problem is reported there too,
    e.g. kind ``auth`` with code ``token_expired``). `server_digest` is ``"equal"`` when the
    server's digest proved the cache equal to what it shows the user (no id diff was run),
    ``"drifted"`` when it differs, None when the server offers no digest or was not asked.
    `local_counts` and `server_counts` hold the rows per synced table (a table missing from
    `local_counts` holds none; from `server_counts`, unknown); in a facts frame they are
    the columns ``local_<table>`` and ``server_<table>``. Each other field's type gives its
    `FACT_COLUMNS` dtype.
    """

    organisation_id: str
    last_synced_at: datetime | None = None
    last_success_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_attempt_outcome: str | None = None
    attempts: int | None = 0
    failures_since_success: int | None = 0
    last_error_kind: str | None = None
    last_error_code: str | None = None
    last_error_status: int | None = None
    last_error_message: str | None = None
    server_checked: bool | None = False
    server_error_kind: str | None = None
    server_error_code: str | None = None
    member: bool | None = None
    server_digest: str | None = None
    local_counts: Mapping[str, int | None] = field(default_factory=dict)
    server_counts: Mapping[str, int | None] = field(default_factory=dict)
    local_newest_updated_at: datetime | None = None
    server_newest_updated_at: datetime | None = None
    missing_locally: int | None = 0
    gone_from_server: int | None = 0
    newer_on_server: int | None = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OrgFacts:
        """Build from a facts-frame row, ignoring columns that are not facts.

        The ``local_<table>`` / ``server_<table>`` columns become `local_counts` and
        `server_counts`.
        """
        names = cls.__dataclass_fields__.keys() - _COUNTS.keys()
        facts: dict[str, Any] = {key: value for key, value in row.items() if key in names}
        for field_name, side in _COUNTS.items():
            facts[field_name] = {
                table: row[f"{side}_{table}"] for table in DATA_TABLES if f"{side}_{table}" in row
            }
        return cls(**facts)

    @property
    def local_rows(self) -> int:
        """Cached rows of the organisation over all tables."""
        return sum(self.local_counts.get(table) or 0 for table in DATA_TABLES)

    @property
    def server_rows(self) -> int | None:
        """Rows the server shows this user, over all tables (None when unknown)."""
        counts = [self.server_counts.get(table) for table in DATA_TABLES]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    @property
    def differing_rows(self) -> int:
        """Rows in the diff, of any status."""
        return sum(
            v or 0 for v in (self.missing_locally, self.gone_from_server, self.newer_on_server)
        )

    @property
    def synced_at(self) -> datetime | None:
        """When the cache last took a successful sync (None: never)."""
        return self.last_synced_at or self.last_success_at


#: Python types of the `OrgFacts` fields -> their frame dtypes.
_FACT_DTYPES: Final[Mapping[str, pl.DataType]] = {
    "str": pl.String(),
    "int": pl.Int64(),
    "bool": pl.Boolean(),
    "datetime": UTC_TS,
}

#: The per-table count fields of `OrgFacts` -> the prefix of their frame columns.
_COUNTS: Final = {"local_counts": "local", "server_counts": "server"}


def _fact_columns() -> dict[str, pl.DataType]:
    columns: dict[str, pl.DataType] = {}
    for fact in fields(OrgFacts):
        if fact.name == "local_counts":  # both sides' counts, table by table, in spec order
            columns.update(
                {
                    f"{side}_{table}": pl.Int64()
                    for table in DATA_TABLES
                    for side in _COUNTS.values()
                }
            )
        elif fact.name not in _COUNTS:
            columns[fact.name] = _FACT_DTYPES[str(fact.type).partition(" ")[0]]
    return columns


#: The facts known about one organisation: `OrgFacts` as frame columns, derived from its
#: fields (each fact is declared once, there) and the spec's tables.
FACT_COLUMNS: Final[Mapping[str, pl.DataType]] = _fact_columns()

#: The per-organisation diagnosis frame: the facts plus age, verdict, cause and action.
DIAGNOSIS_SCHEMA: Final = pl.Schema(
    {
        "organisation_id": pl.String(),
        "verdict": pl.String(),
        "cause": pl.String(),
        "summary": pl.String(),
        "action": pl.String(),
        "cache_age_hours": pl.Float64(),
        "stale": pl.Boolean(),
        **{name: dtype for name, dtype in FACT_COLUMNS.items() if name != "organisation_id"},
    }
)


@dataclass(frozen=True)
class Finding:
    """A verdict with its likely cause (a short code), a sentence and the action to take."""

    verdict: Verdict
    cause: str
    summary: str
    action: str


def verdict(
    facts: OrgFacts,
    *,
    now: datetime,
    threshold: timedelta = DEFAULT_STALE_AFTER,
) -> Finding:
    """The plain-language verdict for one organisation. Pure: `now` is given, not read.

    Precedence, first match wins: a server that does not answer (``unreachable``: the cache
    is what there is, and the outage is nobody's sync's fault; see `server_unreachable`); a
    session problem or a failed last attempt (``failing``;
    the action fixes the failure, which would also fix any staleness); no successful sync
    (``never_synced``); rows, counts or the server's digest that differ (``drifted``; the cause is
    ``access_revoked`` when the server no longer shows the organisation at all); a cache older
    than `threshold` (``stale``); otherwise ``fresh``.
    """
    synced_at = facts.synced_at
    if server_unreachable(facts):
        return _unreachable(facts, None if synced_at is None else now - synced_at)
    if synced_at is None:
        return _failing(facts) or _never_synced(facts)
    age = now - synced_at
    return (
        _failing(facts)
        or _revoked(facts, age, threshold)
        or _drifted(facts, age)
        or _by_age(facts, age, threshold)
    )


#: Server error codes that mean "no answer": a gateway whose upstream is down or timed out.
_NO_ANSWER_CODES: Final = frozenset({"502", "504"})


def server_unreachable(facts: OrgFacts) -> bool:
    """True when checking the server got no answer: no connection, no answer in time, or a
    gateway saying the server behind it is down (502 / 504).
    """
    kind = facts.server_error_kind
    return kind in ("network", "timeout") or (
        kind == "remote" and (facts.server_error_code or "") in _NO_ANSWER_CODES
    )


def _unreachable(facts: OrgFacts, age: timedelta | None) -> Finding:
    if age is None:
        copy = "nothing of this organisation has been synced to this computer yet"
    else:
        copy = (
            f"you are looking at this computer's copy from {_ago(age)} "
            f"({facts.local_rows:,} row(s))"
        )
    earlier = (
        "; the last sync attempt did not work either"
        if facts.last_attempt_outcome not in (None, "success")
        else ""
    )
    return Finding(
        Verdict.UNREACHABLE,
        "server_unreachable",
        f"the server does not answer; {copy}{earlier}",
        "keep working from this copy and sync again when the server answers; "
        "nothing needs deleting",
    )


def _failure(kind: str | None, code: str | None, status: int | None, during: str) -> Finding:
    advice = advise(kind, code, status)
    code_text = f" [{code}]" if code else ""
    return Finding(
        Verdict.FAILING,
        advice.cause,
        f"{during} failed: {advice.problem}{code_text}",
        advice.action,
    )


def _failing(facts: OrgFacts) -> Finding | None:
    # A session problem first: no sync can succeed until it is fixed.
    if facts.server_error_kind == "auth":
        return _failure(
            facts.server_error_kind, facts.server_error_code, None, "checking the server"
        )
    synced_at = facts.synced_at
    last_failed = facts.last_attempt_outcome not in (None, "success") and (
        synced_at is None or facts.last_attempt_at is None or facts.last_attempt_at > synced_at
    )
    if last_failed:
        finding = _failure(
            facts.last_error_kind, facts.last_error_code, facts.last_error_status, "the last sync"
        )
        failures = facts.failures_since_success or 1
        if failures > 1:
            return Finding(
                finding.verdict,
                finding.cause,
                f"{finding.summary} ({failures} failed attempts in a row)",
                finding.action,
            )
        return finding
    if facts.server_error_kind is not None:
        return _failure(
            facts.server_error_kind, facts.server_error_code, None, "checking the server"
        )
    return None


def _never_synced(facts: OrgFacts) -> Finding:
    if facts.member is False:
        return Finding(
            Verdict.NEVER_SYNCED,
            "not_a_member",
            "never synced, and the server does not show this user the organisation",
            "ask an organisation admin to add the user",
        )
    return Finding(
        Verdict.NEVER_SYNCED,
        "never_synced",
        "this organisation has never been synced on this device",
        SYNC_NOW,
    )


def _counts_differ(facts: OrgFacts) -> bool:
    server_rows = facts.server_rows
    return (
        facts.differing_rows > 0
        or (server_rows is not None and server_rows != facts.local_rows)
        or facts.server_digest == "drifted"
    )


def _ago(age: timedelta) -> str:
    return f"{format_age(age.total_seconds())} ago"


def _revoked(facts: OrgFacts, age: timedelta, threshold: timedelta) -> Finding | None:
    if facts.member is not False:
        return None
    state = (
        Verdict.DRIFTED
        if _counts_differ(facts)
        else Verdict.STALE
        if age > threshold
        else Verdict.FRESH
    )
    return Finding(
        state,
        ACCESS_REVOKED.cause,
        f"the server no longer shows this user the organisation; the cache still "
        f"holds {facts.local_rows} row(s) from a sync {_ago(age)}",
        ACCESS_REVOKED.action,
    )


def _drifted(facts: OrgFacts, age: timedelta) -> Finding | None:
    if not _counts_differ(facts):
        return None
    parts = [
        f"{count} row{'' if count == 1 else 's'} {label}"
        for count, label in (
            (facts.missing_locally, "on the server but not cached"),
            (facts.gone_from_server, "cached but gone from the server"),
            (facts.newer_on_server, "newer on the server"),
        )
        if count
    ]
    server_rows = facts.server_rows
    if parts:
        detail = ", ".join(parts)
    elif server_rows is not None and server_rows != facts.local_rows:
        detail = f"the server counts {server_rows} row(s), the cache holds {facts.local_rows}"
    else:
        detail = "the server's digest differs from the cache's, with the same row counts"
    return Finding(
        Verdict.DRIFTED,
        "server_changed",
        f"the server changed since the last sync {_ago(age)}: {detail}",
        SYNC_NOW,
    )


def _by_age(facts: OrgFacts, age: timedelta, threshold: timedelta) -> Finding:
    checked = "" if facts.server_checked else " (server not checked)"
    proven = "equals the server (verified by digest)"
    if age > threshold:
        still = f"; the cache still {proven}" if facts.server_digest == "equal" else ""
        return Finding(
            Verdict.STALE,
            "older_than_threshold",
            f"last synced {_ago(age)}, over the "
            f"{format_age(threshold.total_seconds())} threshold{still}{checked}",
            SYNC_NOW,
        )
    matches = (
        f"; the cache {proven}"
        if facts.server_digest == "equal"
        else "; the cache matches the server"
        if facts.server_checked
        else ""
    )
    return Finding(
        Verdict.FRESH, "up_to_date", f"last synced {_ago(age)}{matches}{checked}", "nothing to do"
    )


def assess(
    facts: pl.DataFrame,
    *,
    now: datetime,
    threshold: timedelta = DEFAULT_STALE_AFTER,
) -> pl.DataFrame:
    """Add age, staleness and the verdict to a facts frame; returns `DIAGNOSIS_SCHEMA`.

    `facts` holds one row per organisation with (a subset of) the `OrgFacts` fields; missing
    columns are taken as unknown.
    """
    facts = facts.select(
        [
            (pl.col(name) if name in facts.columns else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in FACT_COLUMNS.items()
        ]
    )
    findings = [
        verdict(OrgFacts.from_row(row), now=now, threshold=threshold)
        for row in facts.iter_rows(named=True)
    ]
    synced = pl.coalesce(pl.col("last_synced_at"), pl.col("last_success_at"))
    age_hours = (pl.lit(now).cast(UTC_TS) - synced).dt.total_microseconds() / 3.6e9
    return (
        facts.with_columns(
            pl.Series("verdict", [f.verdict.value for f in findings], dtype=pl.String()),
            pl.Series("cause", [f.cause for f in findings], dtype=pl.String()),
            pl.Series("summary", [f.summary for f in findings], dtype=pl.String()),
            pl.Series("action", [f.action for f in findings], dtype=pl.String()),
            age_hours.alias("cache_age_hours"),
            (age_hours > threshold.total_seconds() / 3600).alias("stale"),
        )
        .select(list(DIAGNOSIS_SCHEMA))
        .cast(DIAGNOSIS_SCHEMA)
        .sort("organisation_id")
    )
