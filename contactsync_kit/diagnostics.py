"""Stale-cache diagnostics: why does a user's cache disagree with the server, and what to do.

The module has two halves:

* **pure functions** over polars frames with declared schemas — `compare_rows` (the row
  diff), `summarise_log` (the sync log per organisation), `verdict` (one organisation's
  plain-language verdict) and `assess` (verdicts for a whole facts frame) — which import
  neither supabase nor SQLAlchemy and are unit-tested on fixed frames;
* **gatherers** — `diagnose` reads the local facts through `ContactCache` and the server
  facts through `RemoteReader` with the user's own session (RLS applies: the diagnosis sees
  exactly what a sync would see), and `write_support_bundle` writes one JSON file for support.

Only ids, timestamps, counts and error codes are gathered: no names, phones, emails,
addresses or note bodies ever reach a `Diagnosis` or a bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import polars as pl

from .clock import Clock, SystemClock
from .schemas import DATA_TABLES

if TYPE_CHECKING:  # the pure half never needs the network stack at run time
    from supabase import AsyncClient

    from .bootstrap import UserSession
    from .cache import ContactCache
    from .remote import Filter

__all__ = [
    "DIAGNOSIS_SCHEMA",
    "DIFF_SCHEMA",
    "LOG_SUMMARY_SCHEMA",
    "TABLE_FACTS_SCHEMA",
    "Diagnosis",
    "DiffStatus",
    "Finding",
    "OrgFacts",
    "ServerReader",
    "SessionFacts",
    "Verdict",
    "assess",
    "compare_rows",
    "diagnose",
    "find_personal_values",
    "personal_values",
    "summarise_log",
    "support_bundle",
    "table_facts",
    "verdict",
    "write_support_bundle",
]

_UTC_TS: Final = pl.Datetime("us", "UTC")


class DiffStatus(enum.StrEnum):
    """How one row differs between the cache and the server."""

    MISSING_LOCALLY = "missing_locally"  # on the server, not in the cache
    GONE_FROM_SERVER = "gone_from_server"  # in the cache, no longer visible on the server
    NEWER_ON_SERVER = "newer_on_server"  # both, but the server's updated_at is later


class Verdict(enum.StrEnum):
    """One organisation's cache state, in the words a support person uses."""

    FRESH = "fresh"
    STALE = "stale"
    DRIFTED = "drifted"
    FAILING = "failing"
    NEVER_SYNCED = "never_synced"


#: The row diff: ids and timestamps only.
DIFF_SCHEMA: Final = pl.Schema({
    "organisation_id": pl.String(),
    "table": pl.String(),
    "id": pl.String(),
    "status": pl.String(),
    "local_updated_at": _UTC_TS,
    "server_updated_at": _UTC_TS,
})

#: `summarise_log`'s output: one row per organisation in the sync log.
LOG_SUMMARY_SCHEMA: Final = pl.Schema({
    "organisation_id": pl.String(),
    "attempts": pl.Int64(),
    "last_attempt_at": _UTC_TS,
    "last_attempt_outcome": pl.String(),
    "last_success_at": _UTC_TS,
    "failures_since_success": pl.Int64(),
    "last_error_at": _UTC_TS,
    "last_error_kind": pl.String(),
    "last_error_code": pl.String(),
    "last_error_status": pl.Int64(),
    "last_error_message": pl.String(),
})

#: Per organisation and table: counts, newest `updated_at` on each side, diff counts.
TABLE_FACTS_SCHEMA: Final = pl.Schema({
    "organisation_id": pl.String(),
    "table": pl.String(),
    "local_rows": pl.Int64(),
    "server_rows": pl.Int64(),
    "local_newest_updated_at": _UTC_TS,
    "server_newest_updated_at": _UTC_TS,
    "missing_locally": pl.Int64(),
    "gone_from_server": pl.Int64(),
    "newer_on_server": pl.Int64(),
})

_FACT_COLUMNS: Final[dict[str, pl.DataType]] = {
    "organisation_id": pl.String(),
    "last_synced_at": _UTC_TS,
    "last_success_at": _UTC_TS,
    "last_attempt_at": _UTC_TS,
    "last_attempt_outcome": pl.String(),
    "attempts": pl.Int64(),
    "failures_since_success": pl.Int64(),
    "last_error_kind": pl.String(),
    "last_error_code": pl.String(),
    "last_error_status": pl.Int64(),
    "last_error_message": pl.String(),
    "server_checked": pl.Boolean(),
    "server_error_kind": pl.String(),
    "server_error_code": pl.String(),
    "member": pl.Boolean(),
    **{f"{side}_{table}": pl.Int64() for table in DATA_TABLES for side in ("local", "server")},
    "local_newest_updated_at": _UTC_TS,
    "server_newest_updated_at": _UTC_TS,
    "missing_locally": pl.Int64(),
    "gone_from_server": pl.Int64(),
    "newer_on_server": pl.Int64(),
}

#: The per-organisation diagnosis frame: the facts plus age, verdict, cause and action.
DIAGNOSIS_SCHEMA: Final = pl.Schema({
    "organisation_id": pl.String(),
    "verdict": pl.String(),
    "cause": pl.String(),
    "summary": pl.String(),
    "action": pl.String(),
    "cache_age_hours": pl.Float64(),
    "stale": pl.Boolean(),
    **{name: dtype for name, dtype in _FACT_COLUMNS.items() if name != "organisation_id"},
})

_SYNC_LOG_SCHEMA: Final = pl.Schema({
    "id": pl.Int64(),
    "organisation_id": pl.String(),
    "started_at": pl.String(),
    "duration_ms": pl.Int64(),
    "outcome": pl.String(),
    "error_kind": pl.String(),
    "error_code": pl.String(),
    "http_status": pl.Int64(),
    "message": pl.String(),
    "contacts": pl.Int64(),
    "notes": pl.Int64(),
    "contact_assignments": pl.Int64(),
    "pages": pl.Int64(),
})


# -- pure: the row diff ---------------------------------------------------------------------


def _normalise_rows(frame: pl.DataFrame, keys: list[str], side: str) -> pl.DataFrame:
    updated = frame.schema.get("updated_at")
    if updated is None:
        stamp = pl.lit(None, dtype=_UTC_TS)
    elif updated == pl.String():
        # The cache writes ...Z, PostgREST ...+00:00: parse both into one instant type.
        stamp = pl.col("updated_at").str.to_datetime(time_zone="UTC", time_unit="us",
                                                     strict=False)
    elif isinstance(updated, pl.Datetime):
        stamp = (pl.col("updated_at").dt.replace_time_zone("UTC") if updated.time_zone is None
                 else pl.col("updated_at").dt.convert_time_zone("UTC")).dt.cast_time_unit("us")
    else:
        stamp = pl.col("updated_at").cast(_UTC_TS)
    return frame.select(
        *[pl.col(key).cast(pl.String()) for key in keys],
        pl.col("id").cast(pl.String()).str.to_lowercase(),
        stamp.alias(f"{side}_updated_at"),
        pl.lit(True).alias(f"_{side}"),
    ).unique(subset=[*keys, "id"], keep="last", maintain_order=True)


def compare_rows(local: pl.DataFrame, server: pl.DataFrame) -> pl.DataFrame:
    """The rows that differ between the cache (`local`) and the server (`server`).

    Both frames need ``id`` and ``updated_at`` (ISO-8601 text in either the cache's ``…Z`` or
    PostgREST's ``…+00:00`` form, or datetimes). When both also carry ``organisation_id``
    and/or ``table`` those are part of the key. Returns `DIFF_SCHEMA`: one row per differing
    id with status ``missing_locally`` (only on the server), ``gone_from_server`` (only in the
    cache) or ``newer_on_server`` (the server's ``updated_at`` is later or the cache's is
    unreadable). Rows that agree, and rows newer in the cache, are left out.
    """
    keys: list[str] = [key for key in ("organisation_id", "table")
                       if key in local.columns and key in server.columns]
    joined = _normalise_rows(local, keys, "local").join(
        _normalise_rows(server, keys, "server"), on=[*keys, "id"], how="full", coalesce=True,
    )
    local_ts, server_ts = pl.col("local_updated_at"), pl.col("server_updated_at")
    status = (
        pl.when(pl.col("_local").is_null()).then(pl.lit(DiffStatus.MISSING_LOCALLY.value))
        .when(pl.col("_server").is_null()).then(pl.lit(DiffStatus.GONE_FROM_SERVER.value))
        .when(server_ts.is_not_null() & (local_ts.is_null() | (server_ts > local_ts)))
        .then(pl.lit(DiffStatus.NEWER_ON_SERVER.value))
        .otherwise(pl.lit(None, dtype=pl.String()))
    )
    missing_keys = [pl.lit(None, dtype=pl.String()).alias(key)
                    for key in ("organisation_id", "table") if key not in keys]
    return (
        joined.with_columns(status.alias("status"), *missing_keys)
        .filter(pl.col("status").is_not_null())
        .select(list(DIFF_SCHEMA))
        .cast(DIFF_SCHEMA)
        .sort(["organisation_id", "table", "status", "id"], nulls_last=True)
    )


# -- pure: the sync log ---------------------------------------------------------------------


def _normalise_log(log: pl.DataFrame) -> pl.DataFrame:
    columns = [
        (pl.col(name) if name in log.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in _SYNC_LOG_SCHEMA.items()
    ]
    return log.select(columns)


def summarise_log(sync_log: pl.DataFrame) -> pl.DataFrame:
    """One row per organisation of the sync log (`LOG_SUMMARY_SCHEMA`).

    `sync_log` is the cache's ``sync_log`` table as `ContactCache.read_table` returns it.
    ``failures_since_success`` counts failed attempts after the last success (all of them
    when there was none).
    """
    log = _normalise_log(sync_log).with_columns(
        pl.col("started_at").str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    ).sort(["organisation_id", "started_at", "id"], nulls_last=True)
    failure = pl.col("outcome") != "success"
    success = pl.col("outcome") == "success"
    last_success = pl.col("started_at").filter(success).max()
    return (
        log.group_by("organisation_id", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64()).alias("attempts"),
            pl.col("started_at").last().alias("last_attempt_at"),
            pl.col("outcome").last().alias("last_attempt_outcome"),
            last_success.alias("last_success_at"),
            (failure & (pl.col("started_at") > last_success).fill_null(True))
            .sum().cast(pl.Int64()).alias("failures_since_success"),
            pl.col("started_at").filter(failure).last().alias("last_error_at"),
            pl.col("error_kind").filter(failure).last().alias("last_error_kind"),
            pl.col("error_code").filter(failure).last().alias("last_error_code"),
            pl.col("http_status").filter(failure).last().alias("last_error_status"),
            pl.col("message").filter(failure).last().alias("last_error_message"),
        )
        .select(list(LOG_SUMMARY_SCHEMA))
        .cast(LOG_SUMMARY_SCHEMA)
        .sort("organisation_id")
    )


# -- pure: per-table facts ------------------------------------------------------------------


def table_facts(
    local_rows: pl.DataFrame, server_rows: pl.DataFrame, server_counts: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Counts, newest ``updated_at`` and diff counts per organisation and table.

    `local_rows` and `server_rows` hold ``organisation_id``, ``table``, ``id``, ``updated_at``.
    `server_counts` (``organisation_id``, ``table``, ``server_rows``), when given, is the
    server's ``count=exact`` and wins over counting `server_rows`; it also says which
    organisations and tables the server was asked about: the others get null server and diff
    columns (unknown, not zero).
    """
    keys = ["organisation_id", "table"]
    local = _normalise_rows(local_rows, keys, "local")
    server = _normalise_rows(server_rows, keys, "server")
    compared = local_rows.select([*keys, "id", "updated_at"])
    if server_counts is not None:
        compared = compared.join(server_counts.select(keys).cast(pl.String()), on=keys,
                                 how="semi")
    diff = compare_rows(compared, server_rows.select([*keys, "id", "updated_at"]))
    local_stats = local.group_by(keys).agg(
        pl.len().cast(pl.Int64()).alias("local_rows"),
        pl.col("local_updated_at").max().alias("local_newest_updated_at"))
    server_stats = server.group_by(keys).agg(
        pl.len().cast(pl.Int64()).alias("server_rows"),
        pl.col("server_updated_at").max().alias("server_newest_updated_at"))
    if server_counts is not None:
        server_stats = server_counts.select(
            pl.col("organisation_id").cast(pl.String()), pl.col("table").cast(pl.String()),
            pl.col("server_rows").cast(pl.Int64()),
        ).join(server_stats.drop("server_rows"), on=keys, how="left")
    diff_counts = diff.group_by(keys).agg(
        *[(pl.col("status") == status.value).sum().cast(pl.Int64()).alias(status.value)
          for status in DiffStatus])
    universe = pl.concat([local_stats.select(keys), server_stats.select(keys)]).unique()
    checked = (pl.lit(True) if server_counts is None
               else pl.col("server_rows").is_not_null())
    return (
        universe.join(local_stats, on=keys, how="left")
        .join(server_stats, on=keys, how="left")
        .join(diff_counts, on=keys, how="left")
        .with_columns(
            pl.col("local_rows").fill_null(0),
            *[pl.when(checked).then(pl.col(status.value).fill_null(0))
              .otherwise(None).alias(status.value) for status in DiffStatus],
        )
        .select(list(TABLE_FACTS_SCHEMA))
        .cast(TABLE_FACTS_SCHEMA)
        .sort(keys)
    )


# -- pure: verdicts -------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgFacts:
    """What is known about one organisation's cache; the input of `verdict`.

    Server fields are None when the server was not (or could not be) asked; in that case
    `server_error_kind` / `server_error_code` say why (a session problem is reported there too,
    e.g. kind ``auth`` with code ``token_expired``).
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
    local_contacts: int | None = 0
    server_contacts: int | None = None
    local_notes: int | None = 0
    server_notes: int | None = None
    local_contact_assignments: int | None = 0
    server_contact_assignments: int | None = None
    local_newest_updated_at: datetime | None = None
    server_newest_updated_at: datetime | None = None
    missing_locally: int | None = 0
    gone_from_server: int | None = 0
    newer_on_server: int | None = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OrgFacts:
        """Build from a facts-frame row, ignoring columns that are not facts."""
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in row.items() if key in names})

    @property
    def local_rows(self) -> int:
        """Cached rows of the organisation over all tables."""
        return sum(v or 0 for v in self._side("local"))

    @property
    def server_rows(self) -> int | None:
        """Rows the server shows this user, over all tables (None when unknown)."""
        counts = self._side("server")
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    def _side(self, side: str) -> list[int | None]:
        values: list[int | None] = [getattr(self, f"{side}_{table}") for table in DATA_TABLES]
        return [0 if v is None and side == "local" else v for v in values]

    @property
    def differing_rows(self) -> int:
        """Rows in the diff, of any status."""
        return sum(v or 0 for v in (self.missing_locally, self.gone_from_server,
                                    self.newer_on_server))


@dataclass(frozen=True)
class Finding:
    """A verdict with its likely cause (a short code), a sentence and the action to take."""

    verdict: Verdict
    cause: str
    summary: str
    action: str


_SIGN_IN_AGAIN_EXPIRED: Final = "sign in again: token expired"
_SIGN_IN_AGAIN: Final = "sign in again"
_ACCESS_REVOKED: Final = ("access revoked: ask an organisation admin to restore the membership; "
                          "a sync will then remove the rows this user may no longer see")
_SYNC_NOW: Final = "sync now"

_EXPIRED_CODES: Final = frozenset({"token_expired", "PGRST301", "PGRST303"})


def _failure_finding(kind: str | None, code: str | None, status: int | None,
                     during: str) -> tuple[str, str, str]:
    """(cause, summary, action) for a failed sync or a failed server check."""
    code_text = f" [{code}]" if code else ""
    if kind == "auth":
        if code in _EXPIRED_CODES:
            return ("token_expired", f"{during} failed: the session token has expired{code_text}",
                    _SIGN_IN_AGAIN_EXPIRED)
        if code == "42501" or status == 403:
            return ("access_revoked", f"{during} failed: the server denied access{code_text}",
                    _ACCESS_REVOKED)
        return ("not_signed_in", f"{during} failed: no valid user session{code_text}",
                _SIGN_IN_AGAIN)
    table: dict[str | None, tuple[str, str, str]] = {
        "network": ("server_unreachable", "the server could not be reached",
                    "check the network connection, then sync now"),
        "timeout": ("server_timeout", "the server did not answer in time",
                    "sync again in a few minutes; if it keeps timing out, send the support "
                    "bundle"),
        "remote": ("server_error", "the server answered with an error",
                   "sync again later; if it persists, send the support bundle to the server "
                   "team"),
        "incomplete": ("incomplete_answer",
                       "the server's answer did not add up (row cap or count mismatch)",
                       "send the support bundle: the server's row cap (db-max-rows) may cut "
                       "the answer; syncing again will not help until it is raised"),
        "invalid_data": ("invalid_server_data", "the server sent rows the kit refuses",
                         "send the support bundle; the cache keeps its previous content"),
        "invalid_input": ("invalid_organisation", "the organisation id is not valid",
                          "pick the organisation from the list instead of typing its id"),
        "local_write": ("local_write_failed", "writing the local cache failed",
                        "check free disk space, then sync now; if it persists clear the cache "
                        "and sync again"),
        "cancelled": ("interrupted", "the last sync was interrupted", _SYNC_NOW),
        "in_progress": ("sync_running", "a sync was already running",
                        "wait for the running sync to finish, then diagnose again"),
    }
    cause, what, action = table.get(
        kind, ("unknown_failure", "an unexpected failure", "send the support bundle"))
    return cause, f"{during} failed: {what}{code_text}", action


def _age_text(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def verdict(facts: OrgFacts, *, now: datetime, threshold: timedelta = timedelta(hours=24),
            ) -> Finding:
    """The plain-language verdict for one organisation. Pure: `now` is given, not read.

    Precedence, first match wins: a session problem or a failed last attempt (``failing``;
    the action fixes the failure, which would also fix any staleness); no successful sync
    (``never_synced``); rows that differ or counts that disagree (``drifted``; the cause is
    ``access_revoked`` when the server no longer shows the organisation at all); a cache older
    than `threshold` (``stale``); otherwise ``fresh``.
    """
    synced_at = facts.last_synced_at or facts.last_success_at
    age = now - synced_at if synced_at is not None else None
    stale = age is not None and age > threshold

    if facts.server_error_kind == "auth":
        cause, summary, action = _failure_finding(
            facts.server_error_kind, facts.server_error_code, None, "checking the server")
        return Finding(Verdict.FAILING, cause, summary, action)
    last_failed = facts.last_attempt_outcome not in (None, "success") and (
        synced_at is None or facts.last_attempt_at is None or facts.last_attempt_at > synced_at)
    if last_failed:
        cause, summary, action = _failure_finding(
            facts.last_error_kind, facts.last_error_code, facts.last_error_status,
            "the last sync")
        failures = facts.failures_since_success or 1
        if failures > 1:
            summary += f" ({failures} failed attempts in a row)"
        return Finding(Verdict.FAILING, cause, summary, action)
    if facts.server_error_kind is not None:
        cause, summary, action = _failure_finding(
            facts.server_error_kind, facts.server_error_code, None, "checking the server")
        return Finding(Verdict.FAILING, cause, summary, action)

    if synced_at is None:
        if facts.member is False:
            return Finding(Verdict.NEVER_SYNCED, "not_a_member",
                           "never synced, and the server does not show this user the "
                           "organisation", "ask an organisation admin to add the user")
        return Finding(Verdict.NEVER_SYNCED, "never_synced",
                       "this organisation has never been synced on this device", _SYNC_NOW)

    server_rows = facts.server_rows
    counts_differ = server_rows is not None and server_rows != facts.local_rows
    drifted = facts.differing_rows > 0 or counts_differ
    if facts.member is False:
        return Finding(
            Verdict.DRIFTED if drifted else (Verdict.STALE if stale else Verdict.FRESH),
            "access_revoked",
            f"the server no longer shows this user the organisation; the cache still holds "
            f"{facts.local_rows} row(s) from a sync {_age_text(age or timedelta())} ago",
            _ACCESS_REVOKED)
    if drifted:
        parts = [f"{count} {label}" for count, label in (
            (facts.missing_locally, "on the server but not cached"),
            (facts.gone_from_server, "cached but gone from the server"),
            (facts.newer_on_server, "newer on the server"),
        ) if count]
        detail = ", ".join(parts) if parts else (
            f"the server counts {server_rows} row(s), the cache holds {facts.local_rows}")
        return Finding(Verdict.DRIFTED, "server_changed",
                       f"the server changed since the last sync {_age_text(age or timedelta())}"
                       f" ago: {detail}", _SYNC_NOW)
    checked = "" if facts.server_checked else " (server not checked)"
    if stale:
        return Finding(Verdict.STALE, "older_than_threshold",
                       f"last synced {_age_text(age or timedelta())} ago, over the "
                       f"{_age_text(threshold)} threshold{checked}", _SYNC_NOW)
    return Finding(Verdict.FRESH, "up_to_date",
                   f"last synced {_age_text(age or timedelta())} ago; the cache matches the "
                   f"server{checked}" if facts.server_checked else
                   f"last synced {_age_text(age or timedelta())} ago{checked}",
                   "nothing to do")


def assess(facts: pl.DataFrame, *, now: datetime, threshold: timedelta = timedelta(hours=24),
           ) -> pl.DataFrame:
    """Add age, staleness and the verdict to a facts frame; returns `DIAGNOSIS_SCHEMA`.

    `facts` holds one row per organisation with (a subset of) the `OrgFacts` fields; missing
    columns are taken as unknown.
    """
    facts = facts.select([
        (pl.col(name) if name in facts.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in _FACT_COLUMNS.items()
    ])
    findings = [verdict(OrgFacts.from_row(row), now=now, threshold=threshold)
                for row in facts.iter_rows(named=True)]
    synced = pl.coalesce(pl.col("last_synced_at"), pl.col("last_success_at"))
    age_hours = (pl.lit(now).cast(_UTC_TS) - synced).dt.total_microseconds() / 3.6e9
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


# -- the diagnosis --------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionFacts:
    """The session the diagnosis ran with: who (an id, never an email) and until when."""

    role: str | None = None
    user_id: str | None = None
    expires_at: datetime | None = None
    problem_kind: str | None = None
    problem_code: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Diagnosis:
    """Everything `diagnose` found. Frames hold ids, timestamps, counts and codes only.

    * `organisations` — `DIAGNOSIS_SCHEMA`, one row per organisation with the verdict;
    * `tables` — `TABLE_FACTS_SCHEMA`, counts and newest ``updated_at`` per table;
    * `differences` — `DIFF_SCHEMA`, the rows that differ;
    * `sync_log` — the cache's sync log for these organisations.
    """

    generated_at: datetime
    threshold: timedelta
    organisations: pl.DataFrame
    tables: pl.DataFrame
    differences: pl.DataFrame
    sync_log: pl.DataFrame
    session: SessionFacts = field(default_factory=SessionFacts)
    server_url: str | None = None

    def verdicts(self) -> pl.DataFrame:
        """The short table a support person reads first."""
        return self.organisations.select(
            "organisation_id", "verdict", "cause", "action", "cache_age_hours",
            "last_success_at", "last_error_kind", "last_error_code", "missing_locally",
            "gone_from_server", "newer_on_server")

    def verdict_for(self, organisation_id: str) -> Finding:
        """The finding for one organisation (KeyError when it was not diagnosed)."""
        rows = self.organisations.filter(pl.col("organisation_id") == organisation_id.lower())
        if rows.is_empty():
            raise KeyError(organisation_id)
        row = rows.row(0, named=True)
        return Finding(Verdict(row["verdict"]), row["cause"], row["summary"], row["action"])

    def summary(self, names: Mapping[str, str] | None = None) -> str:
        """A heading, then one line per organisation: verdict, cause, finding and action.

        `names` maps organisation ids to names for the lines.
        """
        names = names or {}
        lines = [f"diagnosis at {self.generated_at.isoformat(timespec='seconds')} "
                 f"(threshold {_age_text(self.threshold)})"]
        for row in self.organisations.iter_rows(named=True):
            org = names.get(row["organisation_id"], row["organisation_id"])
            lines.append(f"{org}: {row['verdict'].upper()} ({row['cause']}) — "
                         f"{row['summary']} → {row['action']}")
        return "\n".join(lines)

    def verdict_lines(self, names: Mapping[str, str] | None = None) -> str:
        """One line per organisation with only verdict, cause and action (no times or ages,
        so the text is stable from run to run)."""
        names = names or {}
        return "\n".join(
            f"{names.get(row['organisation_id'], row['organisation_id'])}: {row['verdict']} "
            f"({row['cause']}) → {row['action']}"
            for row in self.organisations.iter_rows(named=True))


class ServerReader(Protocol):
    """What `diagnose` needs from the server; `RemoteReader` is the real one."""

    async def count(self, table: str,
                    filters: list[Filter] | tuple[Filter, ...] = ()) -> int: ...

    async def rows(self, table: str, columns: str = "id",
                   filters: list[Filter] | tuple[Filter, ...] = ()) -> list[dict[str, Any]]: ...


_ROW_FRAME: Final = pl.Schema({"organisation_id": pl.String(), "table": pl.String(),
                               "id": pl.String(), "updated_at": pl.String()})
_COUNT_FRAME: Final = pl.Schema({"organisation_id": pl.String(), "table": pl.String(),
                                 "server_rows": pl.Int64()})


@dataclass
class _ServerOrg:
    organisation_id: str
    member: bool | None = None
    counts: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    error_kind: str | None = None
    error_code: str | None = None


async def _server_org(reader: ServerReader, org: str) -> _ServerOrg:
    from .remote import RemoteFailure

    result = _ServerOrg(org)
    try:
        result.member = await reader.count("organisations", [("id", "eq", org)]) > 0
        for table in DATA_TABLES:
            org_filter: list[Filter] = [("organisation_id", "eq", org)]
            # count=exact is the server's own number; the rows are ids and timestamps only.
            result.counts[table] = await reader.count(table, org_filter)
            for row in await reader.rows(table, "id, updated_at", org_filter):
                result.rows.append((org, table, str(row.get("id")), str(row.get("updated_at"))))
    except RemoteFailure as exc:
        result.error_kind = exc.error.kind.value
        result.error_code = exc.error.code or (str(exc.error.status) if exc.error.status
                                               else None)
        result.counts.clear()
        result.rows.clear()
    return result


def _local_org(cache: ContactCache, org: str) -> tuple[datetime | None,
                                                       list[pl.DataFrame]]:
    frames = []
    for table in DATA_TABLES:
        # Ids and timestamps only: personal columns are never loaded.
        frame = cache.read_table(table, org, columns=("id", "updated_at"))
        frames.append(frame.cast(pl.String()).select(
            pl.lit(org, dtype=pl.String()).alias("organisation_id"),
            pl.lit(table, dtype=pl.String()).alias("table"), "id", "updated_at"))
    return cache.last_synced_at(org), frames


def _resolve(target: UserSession | tuple[AsyncClient | None, ContactCache],
             ) -> tuple[AsyncClient | None, ContactCache, Clock | None]:
    if isinstance(target, tuple):
        client, cache = target
        return client, cache, None
    return target.client, target.cache, target.clock


async def diagnose(
    target: UserSession | tuple[AsyncClient | None, ContactCache],
    organisation_ids: str | Sequence[str] | None = None,
    *,
    clock: Clock | None = None,
    threshold: timedelta = timedelta(hours=24),
    reader: ServerReader | None = None,
    check_server: bool = True,
) -> Diagnosis:
    """Diagnose the cache of one, several or all organisations against the server.

    `target` is a `UserSession` or a ``(client, cache)`` pair; the client must be signed in
    as the user whose cache this is (the server facts are read with that session, so RLS
    shows exactly what a sync would see). With `organisation_ids` None, every organisation
    in the cache, its sync log, or (when the server is checked) the user's memberships is
    diagnosed. `reader` replaces the `RemoteReader` built on the client (for tests);
    `check_server=False` diagnoses from the local facts only.

    Never raises for server failures: they become the verdict (e.g. ``failing`` /
    ``token_expired``).
    """
    from .remote import RemoteFailure, RemoteReader, SupabaseContactSource
    from .session import bearer_token, inspect_token

    client, cache, session_clock = _resolve(target)
    clock = clock or session_clock or SystemClock()
    now = clock.now()

    session = SessionFacts()
    if check_server and client is not None:
        problem = await SupabaseContactSource(client, clock).check_session()
        token = bearer_token(client)
        info = inspect_token(token) if token else None
        session = SessionFacts(
            role=info.role if info else None, user_id=info.subject if info else None,
            expires_at=info.expires_at if info else None,
            problem_kind=problem.kind.value if problem else None,
            problem_code=(problem.code or ("not_signed_in" if problem.kind == "auth" else None))
            if problem else None,
            problem=problem.message if problem else None)
        if reader is None and problem is None:
            reader = RemoteReader(client)
    elif not check_server:
        reader = None

    log = await asyncio.to_thread(cache.read_table, "sync_log")
    if isinstance(organisation_ids, str):
        orgs = [organisation_ids]
    elif organisation_ids is not None:
        orgs = list(organisation_ids)
    else:
        overview = await asyncio.to_thread(cache.overview)
        found = set(overview.get_column("organisation_id").to_list())
        if log.height:
            found.update(log.get_column("organisation_id").cast(pl.String()).to_list())
        if reader is not None and session.problem_kind is None:
            # On failure each organisation's own check below reports it.
            with contextlib.suppress(RemoteFailure):
                found.update(str(r["id"]) for r in await reader.rows("organisations", "id"))
        orgs = sorted(found)
    orgs = sorted({org.lower() for org in orgs})

    local_frames: list[pl.DataFrame] = []
    facts: dict[str, dict[str, Any]] = {}
    for org in orgs:
        synced_at, frames = await asyncio.to_thread(_local_org, cache, org)
        local_frames.extend(frames)
        facts[org] = {"organisation_id": org, "last_synced_at": synced_at}

    server_results: list[_ServerOrg] = []
    if reader is not None and session.problem_kind is None:
        server_results = list(await asyncio.gather(*[_server_org(reader, o) for o in orgs]))
    for result in server_results:
        facts[result.organisation_id].update(
            server_checked=result.error_kind is None, member=result.member,
            server_error_kind=result.error_kind, server_error_code=result.error_code)
    if session.problem_kind is not None:
        for org_facts in facts.values():
            org_facts.update(server_checked=False, server_error_kind=session.problem_kind,
                             server_error_code=session.problem_code)

    local_rows = (pl.concat(local_frames) if local_frames else pl.DataFrame(schema=_ROW_FRAME))
    checked = [r for r in server_results if r.error_kind is None]
    server_rows = pl.DataFrame([row for r in checked for row in r.rows], schema=_ROW_FRAME,
                               orient="row")
    server_counts = pl.DataFrame(
        [(r.organisation_id, t, n) for r in checked for t, n in r.counts.items()],
        schema=_COUNT_FRAME, orient="row")
    checked_orgs = [r.organisation_id for r in checked]
    in_checked = pl.col("organisation_id").is_in(checked_orgs)
    differences = compare_rows(local_rows.filter(in_checked), server_rows)
    tables = table_facts(local_rows, server_rows, server_counts)

    for row in tables.iter_rows(named=True):
        org_facts = facts[row["organisation_id"]]
        org_facts[f"local_{row['table']}"] = row["local_rows"]
        org_facts[f"server_{row['table']}"] = row["server_rows"]
        for status in DiffStatus:
            if row[status.value] is not None:  # None: the server was not asked
                org_facts[status.value] = org_facts.get(status.value, 0) + row[status.value]
        for side in ("local", "server"):
            newest = row[f"{side}_newest_updated_at"]
            key = f"{side}_newest_updated_at"
            if newest is not None and (org_facts.get(key) is None or newest > org_facts[key]):
                org_facts[key] = newest
    for org in checked_orgs:  # an organisation the server shows nothing of: zero, not unknown
        for table in DATA_TABLES:
            facts[org].setdefault(f"server_{table}", 0)

    summary = summarise_log(log.filter(pl.col("organisation_id").cast(pl.String()).is_in(orgs))
                            if log.height else log)
    facts_frame = pl.DataFrame(
        [facts[org] for org in orgs],
        schema={name: dtype for name, dtype in _FACT_COLUMNS.items()
                if name not in LOG_SUMMARY_SCHEMA or name == "organisation_id"},
    ).join(summary, on="organisation_id", how="left")
    organisations = assess(facts_frame, now=now, threshold=threshold)
    return Diagnosis(
        generated_at=now, threshold=threshold, organisations=organisations, tables=tables,
        differences=differences,
        sync_log=_normalise_log(log).filter(pl.col("organisation_id").is_in(orgs)),
        session=session,
        server_url=str(client.supabase_url) if client is not None else None,
    )


# -- the support bundle ---------------------------------------------------------------------

_PERSONAL_COLUMNS: Final = {"contacts": ("full_name", "phone", "email", "address"),
                            "notes": ("body",)}
# Shorter values (initials, "Li") would match ordinary words; they cannot identify anyone
# on their own either.
_MIN_PERSONAL_LENGTH: Final = 4
_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE: Final = re.compile(r"\+?\d[\d ()-]{6,}\d")
_REDACTED: Final = "[redacted]"


def personal_values(cache: ContactCache, organisation_ids: Sequence[str] | None = None,
                    ) -> list[str]:
    """Every distinct personal value in the cache (names, phones, emails, addresses, notes).

    Used to prove a bundle holds none of them; the values themselves never leave memory.
    """
    values: set[str] = set()
    orgs: list[str | None] = list(organisation_ids) if organisation_ids else [None]
    for table, columns in _PERSONAL_COLUMNS.items():
        for org in orgs:
            frame = cache.read_table(table, org, columns=columns)
            for column in columns:
                if column in frame.columns:
                    values.update(v for v in frame.get_column(column).cast(pl.String()).to_list()
                                  if v is not None and len(v.strip()) >= _MIN_PERSONAL_LENGTH)
    return sorted(values)


def find_personal_values(text: str, values: Sequence[str]) -> list[str]:
    """The distinct `values` that occur in `text` (exact, case-sensitive substrings)."""
    if not values:
        return []
    # Aho-Corasick in polars: one pass over the text whatever the number of values.
    found = pl.Series([text]).str.extract_many(list(values), overlapping=True).item()
    return sorted(set(found.to_list()))


def _strings(value: Any, into: list[str]) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, into)
    elif isinstance(value, list):
        for item in value:
            _strings(item, into)


def _scrub(value: Any, flagged: set[str], key: str | None = None) -> Any:
    if isinstance(value, str):
        if value in flagged:
            return _REDACTED
        if key in _FREE_TEXT:
            # Patterns only in free text: ids and timestamps look like phone numbers too.
            return _PHONE.sub(_REDACTED, _EMAIL.sub(_REDACTED, value))
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, flagged, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, flagged, key) for v in value]
    return value


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {key: (value.isoformat() if isinstance(value, datetime) else value)
         for key, value in row.items()}
        for row in frame.iter_rows(named=True)
    ]


def _versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform(terse=True)}
    for package in ("contactsync_kit", "supabase", "postgrest", "supabase_auth", "httpx",
                    "polars", "sqlalchemy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


#: Free-text fields of a bundle; everything else is ids, timestamps, counts and codes.
_FREE_TEXT: Final = ("summary", "action", "last_error_message", "message", "problem")


def support_bundle(diagnosis: Diagnosis, cache: ContactCache) -> dict[str, Any]:
    """The support bundle as a JSON-ready dict: diagnosis, sync log, versions and settings.

    Free-text fields are scrubbed of anything shaped like an email or phone number and of any
    personal value the cache holds; ids, timestamps, counts and codes pass unchanged.
    """
    from .cache import SCHEMA_VERSION

    orgs = diagnosis.organisations.get_column("organisation_id").to_list()
    bundle: dict[str, Any] = {
        "kind": "contactsync_kit support bundle",
        "format": 1,
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
        "session": {key: (value.isoformat() if isinstance(value, datetime) else value)
                    for key, value in asdict(diagnosis.session).items()},
        "diagnosis": {
            "organisations": _records(diagnosis.organisations),
            "tables": _records(diagnosis.tables),
            "differences": _records(diagnosis.differences),
        },
        "sync_log": _records(diagnosis.sync_log),
        "cache_overview": _records(cache.overview().filter(
            pl.col("organisation_id").is_in(orgs))),
    }
    strings: list[str] = []
    _strings(bundle, strings)
    personal = personal_values(cache)
    flagged: set[str] = set()
    if personal and strings:
        texts = pl.Series(strings, dtype=pl.String())
        flagged = set(texts.filter(texts.str.contains_any(personal)).to_list())
    scrubbed: dict[str, Any] = _scrub(bundle, flagged)
    return scrubbed


def write_support_bundle(diagnosis: Diagnosis, cache: ContactCache, path: str | Path) -> Path:
    """Write `support_bundle` as one JSON file at `path` (a directory gets a dated name).

    Before writing, the text is scanned for every personal value in the cache; a hit (which
    scrubbing should make impossible) raises `ValueError` instead of writing personal data.
    """
    target = Path(path)
    if target.is_dir():
        stamp = diagnosis.generated_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = target / f"contactsync-support-{stamp}.json"
    text = json.dumps(support_bundle(diagnosis, cache), indent=2, sort_keys=True, default=str)
    if find_personal_values(text, personal_values(cache)):
        raise ValueError("the support bundle would contain personal data; not written")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
