"""Gathering a diagnosis: local facts, server facts, then verdicts over both.

The local facts come through `ContactCache`, the server facts through the user's own
session, then the pure frames and verdicts are computed over both. For each organisation the
server's digest is asked first (`contactsync_kit.verify`): when it proves the cache equal,
no ids are listed; when it differs, or the server offers no digest, the id diff says what
differs.

Network I/O goes through `contactsync_kit.remote` (`RemoteReader`, `SupabaseContactSource`)
and disk through `ContactCache`; this module only sequences them. Only ids, timestamps,
counts and error codes are gathered: no personal value ever reaches a `Diagnosis`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

import polars as pl

from ..clock import Clock, SystemClock
from ..schemas import DATA_TABLES
from ..staleness import DEFAULT_STALE_AFTER, format_age
from .findings import FACT_COLUMNS, Finding, Verdict, assess
from .frames import compare_rows, normalise_log, per_organisation, summarise_log, table_facts

if TYPE_CHECKING:  # the frames and verdicts never need the network stack at run time
    from supabase import AsyncClient

    from ..bootstrap import UserSession
    from ..cache import ContactCache
    from ..remote import DigestSource, Filter

__all__ = ["Diagnosis", "ServerReader", "SessionFacts", "diagnose"]

# Sequences `remote` (network) and `ContactCache` (disk); does neither itself.
__io__ = "none"


@dataclass(frozen=True)
class SessionFacts:
    """The session the diagnosis ran with: who (an id, never an email) and until when."""

    role: str | None = None
    user_id: str | None = None
    expires_at: datetime | None = None
    problem_kind: str | None = None
    problem_code: str | None = None
    problem: str | None = None
    #: How far this computer's clock is from the server's, in words, when it matters
    #: ("this computer's clock is 2 h ahead of the server"); None otherwise.
    clock_note: str | None = None


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
            "organisation_id",
            "verdict",
            "cause",
            "action",
            "cache_age_hours",
            "last_success_at",
            "last_error_kind",
            "last_error_code",
            "missing_locally",
            "gone_from_server",
            "newer_on_server",
        )

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
        lines = [
            f"diagnosis at {self.generated_at.isoformat(timespec='seconds')} "
            f"(threshold {format_age(self.threshold.total_seconds())})"
        ]
        if self.session.clock_note:
            lines.append(f"clock: {self.session.clock_note}")
        for row in self.organisations.iter_rows(named=True):
            org = names.get(row["organisation_id"], row["organisation_id"])
            lines.append(
                f"{org}: {row['verdict'].upper()} ({row['cause']}) — "
                f"{row['summary']} → {row['action']}"
            )
        return "\n".join(lines)

    def verdict_lines(self, names: Mapping[str, str] | None = None) -> str:
        """One line per organisation with only verdict, cause and action.

        No times or ages, so the text is stable from run to run.
        """
        names = names or {}
        return "\n".join(
            f"{names.get(row['organisation_id'], row['organisation_id'])}: {row['verdict']} "
            f"({row['cause']}) → {row['action']}"
            for row in self.organisations.iter_rows(named=True)
        )


class ServerReader(Protocol):
    """What `diagnose` needs from the server; `RemoteReader` is the real one.

    A reader that is also a `DigestSource` is asked for the server's digest first.
    """

    async def count(self, table: str, filters: list[Filter] | tuple[Filter, ...] = ()) -> int:
        """How many rows of `table` matching `filters` the user may see."""
        ...

    async def rows(
        self, table: str, columns: str = "id", filters: list[Filter] | tuple[Filter, ...] = ()
    ) -> list[dict[str, Any]]:
        """The `columns` of the rows of `table` matching `filters` the user may see."""
        ...


_ROW_FRAME: Final = pl.Schema(
    {
        "organisation_id": pl.String(),
        "table": pl.String(),
        "id": pl.String(),
        "updated_at": pl.String(),
    }
)
_COUNT_FRAME: Final = pl.Schema(
    {"organisation_id": pl.String(), "table": pl.String(), "server_rows": pl.Int64()}
)
#: What the server check says per organisation, before the per-table facts are added.
_CHECK_FRAME: Final = pl.Schema(
    {
        name: FACT_COLUMNS[name]
        for name in (
            "organisation_id",
            "last_synced_at",
            "server_checked",
            "member",
            "server_digest",
            "server_error_kind",
            "server_error_code",
        )
    }
)


@dataclass
class _ServerOrg:
    organisation_id: str
    member: bool | None = None
    counts: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    digest: Verdict | None = None  # EQUAL / DRIFTED; None: no digest
    error_kind: str | None = None
    error_code: str | None = None


async def diagnose(
    target: UserSession | tuple[AsyncClient | None, ContactCache],
    organisation_ids: str | Sequence[str] | None = None,
    *,
    clock: Clock | None = None,
    threshold: timedelta = DEFAULT_STALE_AFTER,
    reader: ServerReader | None = None,
    check_server: bool = True,
    unreachable: str | None = None,
) -> Diagnosis:
    """Diagnose the cache of one, several or all organisations against the server.

    `target` is a `UserSession` or a ``(client, cache)`` pair; the client must be signed in
    as the user whose cache this is (the server facts are read with that session, so RLS
    shows exactly what a sync would see). With `organisation_ids` None, every organisation
    in the cache, its sync log, or (when the server is checked) the user's memberships is
    diagnosed. `reader` replaces the `RemoteReader` built on the client (for tests);
    `check_server=False` diagnoses from the local facts only. `unreachable` (a short reason,
    e.g. "no answer within 3 s") says a quick probe already found the server silent: it is not
    asked again, and every organisation's verdict is ``unreachable`` (the copy is what there
    is; nothing is blamed on a sync).

    Never raises for server failures: they become the verdict (e.g. ``failing`` /
    ``token_expired``).
    """
    client, cache, session_clock = _resolve(target)
    clock = clock or session_clock or SystemClock()
    now = clock.now()
    if unreachable is not None:
        session = SessionFacts(
            problem_kind="network", problem_code="unreachable", problem=unreachable
        )
        reader, digests = None, None
    else:
        session, reader, digests = await _check_session(
            client, clock, reader, check_server=check_server
        )
    if note := _clock_note(target):
        session = replace(session, clock_note=note)
    log = await asyncio.to_thread(cache.read_table, "sync_log")
    orgs = await _organisations(organisation_ids, cache, log, reader)
    local_rows, synced = await _local_side(cache, orgs)
    checks = await _server_side(reader, digests, cache, orgs)
    return replace(
        _assembled(now, threshold, session, orgs, synced, local_rows, checks, log),
        server_url=str(client.supabase_url) if client is not None else None,
    )


def _assembled(
    now: datetime,
    threshold: timedelta,
    session: SessionFacts,
    orgs: list[str],
    synced: Mapping[str, datetime | None],
    local_rows: pl.DataFrame,
    checks: list[_ServerOrg],
    log: pl.DataFrame,
) -> Diagnosis:
    """The diagnosis of the facts gathered: the frames, then a verdict per organisation."""
    answered = [check.organisation_id for check in checks if check.error_kind is None]
    equal = [check.organisation_id for check in checks if check.digest == Verdict.EQUAL]
    listed = [org for org in answered if org not in equal]
    server_rows, server_counts = _server_frames(checks)
    tables = table_facts(local_rows, server_rows, server_counts, equal=equal)
    log = log.filter(pl.col("organisation_id").cast(pl.String()).is_in(orgs))
    facts = (
        _check_frame(orgs, synced, checks, session)
        .join(per_organisation(tables, answered), on="organisation_id", how="left")
        .join(summarise_log(log), on="organisation_id", how="left")
    )
    return Diagnosis(
        generated_at=now,
        threshold=threshold,
        organisations=assess(facts, now=now, threshold=threshold),
        tables=tables,
        differences=compare_rows(
            local_rows.filter(pl.col("organisation_id").is_in(listed)), server_rows
        ),
        sync_log=normalise_log(log),
        session=session,
    )


def _clock_note(target: object) -> str | None:
    """The session's clock note (`UserSession.clock_note()`), when it offers one."""
    note = getattr(target, "clock_note", None)
    text = note() if callable(note) else None
    return str(text) if text else None


def _resolve(
    target: UserSession | tuple[AsyncClient | None, ContactCache],
) -> tuple[AsyncClient | None, ContactCache, Clock | None]:
    if isinstance(target, tuple):
        client, cache = target
        return client, cache, None
    return target.client, target.cache, target.clock


async def _check_session(
    client: AsyncClient | None, clock: Clock, reader: ServerReader | None, *, check_server: bool
) -> tuple[SessionFacts, ServerReader | None, DigestSource | None]:
    """Who the session is, the reader to ask the server with (None: do not ask), and where
    to read the server's digest (None: the server is not asked, or the reader has none).
    """
    from ..remote import DigestSource, RemoteReader, SupabaseContactSource, SupabaseDeltaSource
    from ..session import bearer_token, inspect_token

    # A given reader is the server: its digest if it has one, never the client's.
    given = reader if isinstance(reader, DigestSource) else None
    if not check_server:
        return SessionFacts(), None, None
    if client is None:
        return SessionFacts(), reader, given
    problem = await SupabaseContactSource(client, clock).check_session()
    token = bearer_token(client)
    info = inspect_token(token) if token else None
    session = SessionFacts(
        role=info.role if info else None,
        user_id=info.subject if info else None,
        expires_at=info.expires_at if info else None,
        problem_kind=problem.kind.value if problem else None,
        problem_code=(problem.code or ("not_signed_in" if problem.kind == "auth" else None))
        if problem
        else None,
        problem=problem.message if problem else None,
    )
    if problem is not None:
        # Every server question would fail the same way; the session problem is the verdict.
        return session, None, None
    if reader is not None:
        return session, reader, given
    return session, RemoteReader(client), SupabaseDeltaSource(client, clock)


async def _organisations(
    wanted: str | Sequence[str] | None,
    cache: ContactCache,
    log: pl.DataFrame,
    reader: ServerReader | None,
) -> list[str]:
    """The organisations to diagnose.

    The wanted ones, or all that are cached, logged or (when the server is asked) the
    user's memberships.
    """
    from ..remote import RemoteFailure

    if isinstance(wanted, str):
        found = {wanted}
    elif wanted is not None:
        found = set(wanted)
    else:
        overview = await asyncio.to_thread(cache.overview)
        found = set(overview.get_column("organisation_id").to_list())
        found.update(log.get_column("organisation_id").cast(pl.String()).to_list())
        if reader is not None:
            # On failure each organisation's own check reports it.
            with contextlib.suppress(RemoteFailure):
                found.update(str(r["id"]) for r in await reader.rows("organisations", "id"))
    return sorted({org.lower() for org in found if org is not None})


async def _local_side(
    cache: ContactCache,
    orgs: list[str],
) -> tuple[pl.DataFrame, dict[str, datetime | None]]:
    """Ids and timestamps of every cached row of `orgs`, and when each last synced.

    The rows come as `_ROW_FRAME`. Personal columns are never loaded.
    """

    def read() -> tuple[pl.DataFrame, dict[str, datetime | None]]:
        frames = [
            cache.read_table(table, org, columns=("id", "updated_at"))
            .cast(pl.String())
            .select(
                pl.lit(org, dtype=pl.String()).alias("organisation_id"),
                pl.lit(table, dtype=pl.String()).alias("table"),
                "id",
                "updated_at",
            )
            for org in orgs
            for table in DATA_TABLES
        ]
        rows = pl.concat(frames) if frames else pl.DataFrame(schema=_ROW_FRAME)
        return rows, {org: cache.last_synced_at(org) for org in orgs}

    return await asyncio.to_thread(read)


async def _server_side(
    reader: ServerReader | None,
    digests: DigestSource | None,
    cache: ContactCache,
    orgs: list[str],
) -> list[_ServerOrg]:
    """What the server shows for each organisation (nothing when it is not to be asked)."""
    if reader is None:
        return []
    return list(await asyncio.gather(*[_server_org(reader, digests, cache, org) for org in orgs]))


async def _server_org(
    reader: ServerReader, digests: DigestSource | None, cache: ContactCache, org: str
) -> _ServerOrg:
    from ..remote import RemoteFailure
    from ..verify import verify_against

    result = _ServerOrg(org)
    # The digest first: one request says "equal" or "drifted"; "unavailable" (no digest
    # function, or the request failed) falls back to the id diff, which reports a failure.
    verification = await verify_against(digests, cache, org) if digests is not None else None
    if verification is not None and verification.verdict != Verdict.UNAVAILABLE:
        result.digest = verification.verdict
    try:
        result.member = await reader.count("organisations", [("id", "eq", org)]) > 0
        if verification is not None and verification.equal:
            # Proven equal: the counts are the digest's, and no ids are listed.
            result.counts = {t.table: t.server_rows for t in verification.tables.values()}
            return result
        for table in DATA_TABLES:
            org_filter: list[Filter] = [("organisation_id", "eq", org)]
            # count=exact is the server's own number; the rows are ids and timestamps only.
            result.counts[table] = await reader.count(table, org_filter)
            for row in await reader.rows(table, "id, updated_at", org_filter):
                result.rows.append((org, table, str(row.get("id")), str(row.get("updated_at"))))
    except RemoteFailure as exc:
        result.error_kind = exc.error.kind.value
        result.error_code = exc.error.code or (str(exc.error.status) if exc.error.status else None)
        result.counts.clear()
        result.rows.clear()
        result.digest = None
    return result


def _server_frames(checks: list[_ServerOrg]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The answered organisations' rows (`_ROW_FRAME`) and exact counts (`_COUNT_FRAME`)."""
    answered = [check for check in checks if check.error_kind is None]
    rows = pl.DataFrame(
        [row for check in answered for row in check.rows], schema=_ROW_FRAME, orient="row"
    )
    counts = pl.DataFrame(
        [
            (check.organisation_id, table, n)
            for check in answered
            for table, n in check.counts.items()
        ],
        schema=_COUNT_FRAME,
        orient="row",
    )
    return rows, counts


def _check_frame(
    orgs: list[str],
    synced: Mapping[str, datetime | None],
    checks: list[_ServerOrg],
    session: SessionFacts,
) -> pl.DataFrame:
    """One row per organisation: last sync and what the server check said (`_CHECK_FRAME`).

    Columns stay null where nothing is known: the server was not asked.
    """
    by_org = {check.organisation_id: check for check in checks}
    records: list[dict[str, Any]] = []
    for org in orgs:
        check = by_org.get(org)
        record: dict[str, Any] = {"organisation_id": org, "last_synced_at": synced[org]}
        if check is not None:
            record.update(
                server_checked=check.error_kind is None,
                member=check.member,
                server_digest=check.digest,
                server_error_kind=check.error_kind,
                server_error_code=check.error_code,
            )
        if session.problem_kind is not None:
            record.update(
                server_checked=False,
                server_digest=None,
                server_error_kind=session.problem_kind,
                server_error_code=session.problem_code,
            )
        records.append(record)
    return pl.DataFrame(records, schema=_CHECK_FRAME)
