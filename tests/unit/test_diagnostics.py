"""Stale-cache diagnostics, without a server.

The pure functions on fixed frames, the gatherer over an in-memory cache and a fake server
reader, the support bundle's PII scan, and the panel's model.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from contactsync_kit import ContactCache, ManualClock, SyncLogEntry, UserSession, start_session
from contactsync_kit.diagnostics import (
    DIAGNOSIS_SCHEMA,
    DIFF_SCHEMA,
    LOG_SUMMARY_SCHEMA,
    OrgFacts,
    Verdict,
    assess,
    compare_rows,
    diagnose,
    find_personal_values,
    fold,
    personal_values,
    personal_words,
    pseudonymise,
    summarise_log,
    support_bundle,
    table_facts,
    verdict,
    write_support_bundle,
)
from contactsync_kit.mappers import MappedPage, map_contacts_page
from contactsync_kit.remote import Filter, RemoteFailure
from contactsync_kit.results import SyncError, SyncErrorKind
from contactsync_kit.staleness import DEFAULT_STALE_AFTER, format_age
from contactsync_kit.testing import FakeSupabase, fake_contact

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ORG = "2b563c23-1921-4b20-962d-7f04058b12e4"
OTHER = "cfee49cc-0d45-408b-b378-507eb9ba13f4"


def rows(*items: tuple[str, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        list(items), schema={"id": pl.String, "updated_at": pl.String}, orient="row"
    )


# -- compare_rows ---------------------------------------------------------------------------


def test_compare_rows_names_each_kind_of_difference() -> None:
    local = rows(
        ("a", "2026-01-01T00:00:00.000000Z"),
        ("b", "2026-01-01T00:00:00.000000Z"),
        ("c", "2026-01-01T00:00:00.000000Z"),
    )
    server = rows(
        ("b", "2026-01-01T00:00:00+00:00"),  # same instant, other spelling
        ("c", "2026-01-02T08:30:00.5+00:00"),
        ("d", "2026-01-01T00:00:00+00:00"),
    )
    diff = compare_rows(local, server)
    assert diff.schema == DIFF_SCHEMA
    assert dict(zip(diff["id"], diff["status"], strict=True)) == {
        "a": "gone_from_server",
        "c": "newer_on_server",
        "d": "missing_locally",
    }
    newer = diff.filter(pl.col("id") == "c").row(0, named=True)
    assert newer["server_updated_at"] == datetime(2026, 1, 2, 8, 30, 0, 500000, tzinfo=UTC)
    assert newer["local_updated_at"] == datetime(2026, 1, 1, tzinfo=UTC)


def test_rows_newer_in_the_cache_or_equal_are_not_differences() -> None:
    local = rows(("a", "2026-01-03T00:00:00Z"), ("b", "2026-01-01T02:00:00+02:00"))
    server = rows(("a", "2026-01-01T00:00:00Z"), ("b", "2026-01-01T00:00:00Z"))
    assert compare_rows(local, server).is_empty()


def test_an_unreadable_cached_timestamp_counts_as_newer_on_server() -> None:
    diff = compare_rows(rows(("a", "not a time")), rows(("a", "2026-01-01T00:00:00Z")))
    assert diff["status"].to_list() == ["newer_on_server"]


def test_ids_compare_case_insensitively_and_datetimes_are_accepted() -> None:
    local = pl.DataFrame({"id": ["ABC"], "updated_at": [datetime(2026, 1, 1)]})
    server = pl.DataFrame({"id": ["abc"], "updated_at": [datetime(2026, 1, 1, tzinfo=UTC)]})
    assert compare_rows(local, server).is_empty()


def test_organisation_and_table_are_part_of_the_key_when_both_sides_have_them() -> None:
    local = pl.DataFrame(
        {
            "organisation_id": [ORG, ORG],
            "table": ["contacts", "notes"],
            "id": ["x", "x"],
            "updated_at": ["2026-01-01T00:00:00Z"] * 2,
        }
    )
    server = local.filter(pl.col("table") == "contacts")
    diff = compare_rows(local, server)
    assert diff.select("organisation_id", "table", "id", "status").rows() == [
        (ORG, "notes", "x", "gone_from_server")
    ]


def test_empty_sides() -> None:
    empty = rows()
    assert compare_rows(empty, empty).is_empty()
    assert compare_rows(empty, rows(("a", None)))["status"].to_list() == ["missing_locally"]
    assert compare_rows(rows(("a", None)), empty)["status"].to_list() == ["gone_from_server"]


# -- the sync log -------------------------------------------------------------------------


def log(*entries: tuple[str, str, str | None, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (i + 1, org, started, "success" if kind is None else "failure", kind, code)
            for i, (org, started, kind, code) in enumerate(entries)
        ],
        schema={
            "id": pl.Int64,
            "organisation_id": pl.String,
            "started_at": pl.String,
            "outcome": pl.String,
            "error_kind": pl.String,
            "error_code": pl.String,
        },
        orient="row",
    )


def test_summarise_log_finds_last_attempt_last_success_and_failures_since() -> None:
    summary = summarise_log(
        log(
            (ORG, "2026-03-01T08:00:00.000000+00:00", None, None),
            (ORG, "2026-03-01T09:00:00.000000+00:00", "network", None),
            (ORG, "2026-03-01T10:00:00.000000+00:00", "auth", "PGRST301"),
            (OTHER, "2026-03-01T07:00:00.000000+00:00", "auth", "token_expired"),
        )
    )
    assert summary.schema == LOG_SUMMARY_SCHEMA
    org, other = summary.sort("organisation_id").iter_rows(named=True)
    assert org["attempts"] == 3
    assert org["last_success_at"] == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert org["last_attempt_at"] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert (org["last_attempt_outcome"], org["last_error_kind"], org["last_error_code"]) == (
        "failure",
        "auth",
        "PGRST301",
    )
    assert org["failures_since_success"] == 2
    assert other["last_success_at"] is None and other["failures_since_success"] == 1


def test_summarise_log_of_an_empty_cache_log() -> None:
    empty = ContactCache.open(":memory:").read_table("sync_log")
    assert summarise_log(empty).is_empty()
    assert summarise_log(empty).schema == LOG_SUMMARY_SCHEMA


# -- verdicts -----------------------------------------------------------------------------

SYNCED = NOW - timedelta(hours=1)


def facts(**overrides: Any) -> OrgFacts:
    base: dict[str, Any] = dict(
        organisation_id=ORG,
        last_synced_at=SYNCED,
        last_success_at=SYNCED,
        last_attempt_at=SYNCED,
        last_attempt_outcome="success",
        attempts=1,
        server_checked=True,
        member=True,
        local_contacts=10,
        server_contacts=10,
        local_notes=30,
        server_notes=30,
        local_contact_assignments=10,
        server_contact_assignments=10,
    )
    base.update(overrides)
    return OrgFacts.from_row(base)  # the per-table counts as a facts frame's columns


LATER = SYNCED + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("overrides", "expected", "cause", "action_part"),
    [
        ({}, Verdict.FRESH, "up_to_date", "nothing to do"),
        (
            {"last_synced_at": NOW - timedelta(hours=25), "last_success_at": None},
            Verdict.STALE,
            "older_than_threshold",
            "sync now",
        ),
        ({"newer_on_server": 1}, Verdict.DRIFTED, "server_changed", "sync now"),
        (
            {"server_contacts": 9, "gone_from_server": 1},
            Verdict.DRIFTED,
            "server_changed",
            "sync now",
        ),
        ({"server_contacts": 11}, Verdict.DRIFTED, "server_changed", "sync now"),
        (
            {
                "member": False,
                "server_contacts": 0,
                "server_notes": 0,
                "server_contact_assignments": 0,
                "gone_from_server": 50,
            },
            Verdict.DRIFTED,
            "access_revoked",
            "access revoked",
        ),
        (
            {
                "last_attempt_at": LATER,
                "last_attempt_outcome": "failure",
                "last_error_kind": "auth",
                "last_error_code": "token_expired",
            },
            Verdict.FAILING,
            "token_expired",
            "sign in again: token expired",
        ),
        (
            {
                "last_attempt_at": LATER,
                "last_attempt_outcome": "failure",
                "last_error_kind": "auth",
                "last_error_code": "PGRST301",
                "last_error_status": 401,
            },
            Verdict.FAILING,
            "token_expired",
            "sign in again: token expired",
        ),
        (
            {
                "last_attempt_at": LATER,
                "last_attempt_outcome": "failure",
                "last_error_kind": "auth",
                "last_error_code": "42501",
                "last_error_status": 403,
            },
            Verdict.FAILING,
            "access_revoked",
            "access revoked",
        ),
        (
            {
                "last_attempt_at": LATER,
                "last_attempt_outcome": "failure",
                "last_error_kind": "network",
            },
            Verdict.FAILING,
            "server_unreachable",
            "network",
        ),
        (
            {
                "last_attempt_at": LATER,
                "last_attempt_outcome": "failure",
                "last_error_kind": "incomplete",
            },
            Verdict.FAILING,
            "incomplete_answer",
            "db-max-rows",
        ),
        (
            {
                "last_attempt_at": LATER,
                "last_attempt_outcome": "failure",
                "last_error_kind": "local_write",
            },
            Verdict.FAILING,
            "local_write_failed",
            "disk",
        ),
        (
            {
                "server_checked": False,
                "server_error_kind": "auth",
                "server_error_code": "token_expired",
                "server_contacts": None,
            },
            Verdict.FAILING,
            "token_expired",
            "sign in again: token expired",
        ),
        (
            {
                "server_checked": False,
                "server_error_kind": "auth",
                "server_error_code": "not_signed_in",
                "server_contacts": None,
            },
            Verdict.FAILING,
            "not_signed_in",
            "sign in again",
        ),
        (
            # The server not answering is its own verdict, never blamed on a sync (issue 18).
            {"server_checked": False, "server_error_kind": "network", "server_contacts": None},
            Verdict.UNREACHABLE,
            "server_unreachable",
            "nothing needs deleting",
        ),
        (
            {
                "last_synced_at": None,
                "last_success_at": None,
                "last_attempt_at": None,
                "last_attempt_outcome": None,
                "local_contacts": 0,
                "local_notes": 0,
                "local_contact_assignments": 0,
            },
            Verdict.NEVER_SYNCED,
            "never_synced",
            "sync now",
        ),
        (
            {
                "last_synced_at": None,
                "last_success_at": None,
                "last_attempt_at": None,
                "last_attempt_outcome": None,
                "member": False,
            },
            Verdict.NEVER_SYNCED,
            "not_a_member",
            "admin",
        ),
        (
            {
                "last_synced_at": None,
                "last_success_at": None,
                "last_attempt_at": SYNCED,
                "last_attempt_outcome": "failure",
                "last_error_kind": "timeout",
            },
            Verdict.FAILING,
            "server_timeout",
            "again",
        ),
    ],
)
def test_verdicts(
    overrides: dict[str, Any], expected: Verdict, cause: str, action_part: str
) -> None:
    finding = verdict(facts(**overrides), now=NOW)
    assert (finding.verdict, finding.cause) == (expected, cause), finding
    assert action_part in finding.action
    assert finding.summary


def test_a_success_after_a_failure_is_not_failing() -> None:
    finding = verdict(
        facts(last_attempt_at=SYNCED, last_attempt_outcome="success", last_error_kind="network"),
        now=NOW,
    )
    assert finding.verdict is Verdict.FRESH


def test_failing_wins_over_drift_and_counts_repeated_failures() -> None:
    finding = verdict(
        facts(
            last_attempt_at=LATER,
            last_attempt_outcome="failure",
            last_error_kind="remote",
            failures_since_success=3,
            newer_on_server=4,
        ),
        now=NOW,
    )
    assert finding.verdict is Verdict.FAILING
    assert "3 failed attempts in a row" in finding.summary


def test_staleness_follows_the_injected_clock_and_threshold() -> None:
    clock = ManualClock(SYNCED)
    clock.advance(timedelta(hours=24))
    assert verdict(facts(), now=clock.now()).verdict is Verdict.FRESH  # exactly 24 h: not yet
    clock.advance(timedelta(seconds=1))
    assert verdict(facts(), now=clock.now()).verdict is Verdict.STALE
    assert verdict(facts(), now=clock.now(), threshold=timedelta(hours=48)).verdict is Verdict.FRESH


def test_ages_read_as_the_staleness_panel_writes_them() -> None:
    finding = verdict(facts(last_synced_at=NOW - timedelta(hours=25, minutes=30)), now=NOW)
    assert finding.summary == (
        f"last synced {format_age(25.5 * 3600)} ago, over the "
        f"{format_age(DEFAULT_STALE_AFTER.total_seconds())} threshold"
    )
    assert finding.summary == "last synced 1 d 1 h ago, over the 1 d 0 h threshold"


def test_assess_adds_age_staleness_and_verdicts_with_the_declared_schema() -> None:
    frame = pl.DataFrame(
        [
            {
                "organisation_id": ORG,
                "last_synced_at": NOW - timedelta(hours=30),
                "local_contacts": 1,
            },
            {"organisation_id": OTHER},
        ],
        schema={
            "organisation_id": pl.String,
            "last_synced_at": pl.Datetime("us", "UTC"),
            "local_contacts": pl.Int64,
        },
    )
    report = assess(frame, now=NOW)
    assert report.schema == DIAGNOSIS_SCHEMA
    stale, never = report.iter_rows(named=True)
    assert (stale["verdict"], stale["stale"], stale["cache_age_hours"]) == ("stale", True, 30.0)
    assert (never["verdict"], never["cache_age_hours"]) == ("never_synced", None)


def test_table_facts_counts_newest_and_diff_per_table() -> None:
    local = pl.DataFrame(
        {
            "organisation_id": [ORG] * 3,
            "table": ["contacts", "contacts", "notes"],
            "id": ["a", "b", "n"],
            "updated_at": ["2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z", "2026-01-01T00:00:00Z"],
        }
    )
    server = pl.DataFrame(
        {
            "organisation_id": [ORG] * 2,
            "table": ["contacts", "contacts"],
            "id": ["a", "c"],
            "updated_at": ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
        }
    )
    counts = pl.DataFrame(
        {"organisation_id": [ORG, ORG], "table": ["contacts", "notes"], "server_rows": [2, 0]}
    )
    result = {r["table"]: r for r in table_facts(local, server, counts).iter_rows(named=True)}
    contacts, notes = result["contacts"], result["notes"]
    assert (contacts["local_rows"], contacts["server_rows"]) == (2, 2)
    assert contacts["local_newest_updated_at"] == datetime(2026, 1, 5, tzinfo=UTC)
    assert contacts["server_newest_updated_at"] == datetime(2026, 1, 3, tzinfo=UTC)
    assert (
        contacts["missing_locally"],
        contacts["gone_from_server"],
        contacts["newer_on_server"],
    ) == (1, 1, 1)
    assert (notes["local_rows"], notes["server_rows"], notes["gone_from_server"]) == (1, 0, 1)


# -- the gatherer, with a fake server reader ---------------------------------------------


class FakeReader:
    """Implements `ServerReader` over in-memory rows; filters support eq only."""

    def __init__(
        self, tables: dict[str, list[dict[str, Any]]], fail: SyncError | None = None
    ) -> None:
        self.tables = tables
        self.fail = fail
        self.calls: list[tuple[str, str]] = []

    def _match(
        self,
        table: str,
        filters: list[Filter] | tuple[Filter, ...],
    ) -> list[dict[str, Any]]:
        if self.fail is not None:
            raise RemoteFailure(self.fail)
        found = self.tables.get(table, [])
        for column, operator, value in filters:
            assert operator == "eq"
            found = [r for r in found if str(r.get(column)) == value]
        return found

    async def count(self, table: str, filters: list[Filter] | tuple[Filter, ...] = ()) -> int:
        self.calls.append(("count", table))
        return len(self._match(table, filters))

    async def rows(
        self, table: str, columns: str = "id", filters: list[Filter] | tuple[Filter, ...] = ()
    ) -> list[dict[str, Any]]:
        self.calls.append(("rows", columns))
        wanted = [c.strip() for c in columns.split(",")]
        return [{c: r.get(c) for c in wanted} for r in self._match(table, filters)]


def seeded_page(org: str, count: int, *, seed: int = 1) -> tuple[list[dict[str, Any]], MappedPage]:
    rng = random.Random(seed)
    raw = [
        fake_contact(org, rng=rng, notes=3, when=datetime(2026, 1, 1, tzinfo=UTC))
        for _ in range(count)
    ]
    page = map_contacts_page(raw, org)
    assert isinstance(page, MappedPage)
    return raw, page


def server_tables(org: str, raw: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {
        "organisations": [{"id": org}],
        "contacts": [],
        "notes": [],
        "contact_assignments": [],
    }
    for contact in raw:
        tables["contacts"].append(
            {k: v for k, v in contact.items() if k not in ("notes", "contact_assignments")}
        )
        tables["notes"].extend(contact["notes"])
        tables["contact_assignments"].extend(contact["contact_assignments"])
    return tables


@pytest.fixture
def cache() -> ContactCache:
    return ContactCache.open(":memory:")


def synced_cache(cache: ContactCache, org: str, page: MappedPage, when: datetime) -> None:
    cache.apply_sync(org, page, when)
    cache.record_attempt(SyncLogEntry(org, when, 40, "success", rows=page.counts()))


async def test_diagnose_reports_fresh_then_drift_after_server_edits(cache: ContactCache) -> None:
    raw, page = seeded_page(ORG, 5)
    clock = ManualClock(NOW)
    synced_cache(cache, ORG, page, NOW - timedelta(minutes=10))
    tables = server_tables(ORG, raw)
    reader = FakeReader(tables)

    fresh = await diagnose((None, cache), ORG, clock=clock, reader=reader)
    assert fresh.verdict_for(ORG).verdict is Verdict.FRESH
    assert fresh.differences.is_empty()
    assert {c for c in reader.calls if c[0] == "rows"} == {("rows", "id, updated_at")}, (
        "the server is asked for ids and timestamps only"
    )

    edited, deleted = tables["contacts"][0], tables["contacts"][1]
    edited["updated_at"] = "2026-02-01T00:00:00+00:00"
    tables["contacts"].remove(deleted)
    tables["notes"] = [n for n in tables["notes"] if n["contact_id"] != deleted["id"]]
    added = dict(edited, id=str(uuid.uuid4()))
    tables["contacts"].append(added)

    drifted = await diagnose((None, cache), [ORG], clock=clock, reader=FakeReader(tables))
    row = drifted.organisations.row(0, named=True)
    assert (row["verdict"], row["cause"], row["action"]) == (
        "drifted",
        "server_changed",
        "sync now",
    )
    statuses = {
        (r["table"], r["id"]): r["status"] for r in drifted.differences.iter_rows(named=True)
    }
    assert statuses[("contacts", edited["id"])] == "newer_on_server"
    assert statuses[("contacts", deleted["id"])] == "gone_from_server"
    assert statuses[("contacts", added["id"])] == "missing_locally"
    assert (row["local_contacts"], row["server_contacts"]) == (5, 5)
    assert (row["local_notes"], row["server_notes"]) == (15, 12)
    assert row["gone_from_server"] == 4  # the contact and its three notes
    assert row["server_newest_updated_at"] == datetime(2026, 2, 1, tzinfo=UTC)


async def test_diagnose_sees_staleness_by_the_injected_clock(cache: ContactCache) -> None:
    raw, page = seeded_page(ORG, 2)
    clock = ManualClock(NOW)
    synced_cache(cache, ORG, page, NOW)
    reader = FakeReader(server_tables(ORG, raw))
    clock.advance(timedelta(hours=25))
    diagnosis = await diagnose((None, cache), ORG, clock=clock, reader=reader)
    row = diagnosis.organisations.row(0, named=True)
    assert (row["verdict"], row["stale"], row["cache_age_hours"]) == ("stale", True, 25.0)
    relaxed = await diagnose(
        (None, cache), ORG, clock=clock, reader=reader, threshold=timedelta(hours=48)
    )
    assert relaxed.verdict_for(ORG).verdict is Verdict.FRESH


async def test_diagnose_all_covers_cached_logged_and_membership_organisations(
    cache: ContactCache,
) -> None:
    raw, page = seeded_page(ORG, 2)
    synced_cache(cache, ORG, page, NOW)
    third = str(uuid.uuid4())
    cache.record_attempt(
        SyncLogEntry(
            third,
            NOW,
            3,
            "failure",
            error_kind="auth",
            error_code="PGRST301",
            http_status=401,
            message="the server refused the session: JWT expired",
        )
    )
    tables = server_tables(ORG, raw)
    tables["organisations"].append({"id": OTHER})
    diagnosis = await diagnose((None, cache), clock=ManualClock(NOW), reader=FakeReader(tables))
    verdicts = dict(
        zip(
            diagnosis.organisations["organisation_id"],
            diagnosis.organisations["verdict"],
            strict=True,
        )
    )
    assert verdicts == {ORG: "fresh", OTHER: "never_synced", third: "failing"}
    assert diagnosis.verdict_for(third).action == "sign in again: token expired"
    assert "FAILING" in diagnosis.summary()


async def test_access_revoked_when_the_server_no_longer_shows_the_organisation(
    cache: ContactCache,
) -> None:
    _, page = seeded_page(ORG, 3)
    synced_cache(cache, ORG, page, NOW)
    empty: dict[str, list[dict[str, Any]]] = {
        "organisations": [],
        "contacts": [],
        "notes": [],
        "contact_assignments": [],
    }
    diagnosis = await diagnose((None, cache), ORG, clock=ManualClock(NOW), reader=FakeReader(empty))
    finding = diagnosis.verdict_for(ORG)
    assert (finding.verdict, finding.cause) == (Verdict.DRIFTED, "access_revoked")
    assert finding.action.startswith("access revoked")
    row = diagnosis.organisations.row(0, named=True)
    assert (row["member"], row["server_contacts"], row["gone_from_server"]) == (False, 0, 15)


async def test_a_server_failure_becomes_the_verdict_not_an_exception(cache: ContactCache) -> None:
    _, page = seeded_page(ORG, 1)
    synced_cache(cache, ORG, page, NOW)
    reader = FakeReader(
        {}, fail=SyncError(SyncErrorKind.AUTH, "expired", code="PGRST301", status=401)
    )
    diagnosis = await diagnose((None, cache), ORG, clock=ManualClock(NOW), reader=reader)
    row = diagnosis.organisations.row(0, named=True)
    assert (row["verdict"], row["cause"], row["server_checked"]) == (
        "failing",
        "token_expired",
        False,
    )
    assert row["server_contacts"] is None and row["local_contacts"] == 1


async def test_local_only_diagnosis(cache: ContactCache) -> None:
    _, page = seeded_page(ORG, 1)
    synced_cache(cache, ORG, page, NOW)
    diagnosis = await diagnose((None, cache), ORG, clock=ManualClock(NOW), check_server=False)
    assert diagnosis.verdict_for(ORG).verdict is Verdict.FRESH
    assert "server not checked" in diagnosis.verdict_for(ORG).summary


# -- the support bundle ------------------------------------------------------------------


async def test_the_support_bundle_holds_no_personal_value_from_the_cache(
    cache: ContactCache, tmp_path: Path
) -> None:
    raw, page = seeded_page(ORG, 6, seed=7)
    synced_cache(cache, ORG, page, NOW)
    name = raw[0]["full_name"]
    # A message that (against the rules) quotes personal data must not reach the bundle.
    cache.record_attempt(
        SyncLogEntry(
            ORG,
            NOW + timedelta(minutes=1),
            5,
            "failure",
            error_kind="invalid_data",
            message=f"bad row for {name} <someone@example.org>, call +47 912 34 567",
        )
    )
    tables = server_tables(ORG, raw)
    tables["contacts"][0]["updated_at"] = "2026-02-01T00:00:00+00:00"
    diagnosis = await diagnose(
        (None, cache), ORG, clock=ManualClock(NOW), reader=FakeReader(tables)
    )

    path = write_support_bundle(diagnosis, cache, tmp_path)
    text = path.read_text()
    secrets = [
        raw_value
        for contact in raw
        for raw_value in (
            contact["full_name"],
            contact["phone"],
            contact["email"],
            contact["address"],
            *[n["body"] for n in contact["notes"]],
        )
    ]
    assert [s for s in secrets if s in text] == []
    assert "someone@example.org" not in text and "912 34 567" not in text
    assert find_personal_values(text, personal_values(cache)) == []

    bundle = json.loads(text)
    assert bundle["versions"]["polars"] == pl.__version__
    assert {"python", "contactsync_kit", "supabase", "sqlalchemy"} <= set(bundle["versions"])
    assert bundle["settings"]["stale_threshold_hours"] == 24.0
    assert [r["status"] for r in bundle["diagnosis"]["differences"]] == ["newer_on_server"]
    assert len(bundle["sync_log"]) == 2
    assert bundle["sync_log"][1]["message"] == "[redacted]"
    assert bundle["diagnosis"]["organisations"][0]["verdict"] == "failing"


def test_find_personal_values_lists_each_value_found_once() -> None:
    text = "x Ada Lovelace y Ada Lovelace z +47 900"
    assert find_personal_values(text, ["Ada Lovelace", "+47 900", "Grace"]) == [
        "+47 900",
        "Ada Lovelace",
    ]
    assert find_personal_values(text, []) == []


async def test_support_bundle_dict_keeps_ids_and_timestamps(cache: ContactCache) -> None:
    raw, page = seeded_page(ORG, 1)
    synced_cache(cache, ORG, page, NOW)
    diagnosis = await diagnose(
        (None, cache), ORG, clock=ManualClock(NOW), reader=FakeReader(server_tables(ORG, raw))
    )
    bundle = support_bundle(diagnosis, cache)
    assert bundle["diagnosis"]["organisations"][0]["organisation_id"] == ORG
    assert bundle["diagnosis"]["organisations"][0]["last_synced_at"].startswith("2026-03-01")
    assert bundle["settings"]["in_memory_cache"] is True


# -- the support bundle's personal-data scan: folded, word-wise, on the text as written ----

NAME, EMAIL_ADDRESS, ADDRESS = "José Núñez", "jose.nunez@example.org", "Storgata 12, 0150 Oslo"


def test_fold_ignores_case_accents_and_compatibility_forms() -> None:
    decomposed = "Jose\u0301 Nu\u0301n\u0303ez"  # the same name as combining marks
    assert {fold(v) for v in ("JOSÉ NÚÑEZ", NAME, decomposed, "jose\u00a0nunez")} == {"jose nunez"}
    assert fold("STRASSE") == fold("Straße")


def test_words_of_a_personal_value_are_found_inside_a_sentence_whatever_the_case() -> None:
    words = ["jose", "nunez", "storgata", "oslo"]
    assert find_personal_values("row of NÚÑEZ refused", [NAME], words) == ["nunez"]
    assert find_personal_values("JOSÉ NÚÑEZ moved", [NAME], words) == [NAME, "jose", "nunez"]
    # Whole words only: a name inside a longer word is another word.
    assert find_personal_values("Oslofjord nunezes", [NAME], words) == []
    assert find_personal_values("row of Núñez", [NAME], words, ignore=["nunez"]) == []


def accented_cache(cache: ContactCache) -> tuple[list[dict[str, Any]], MappedPage]:
    rng = random.Random(3)
    raw = [
        fake_contact(ORG, rng=rng, notes=3, when=datetime(2026, 1, 1, tzinfo=UTC)) for _ in range(3)
    ]
    raw[0].update(full_name=NAME, email=EMAIL_ADDRESS, address=ADDRESS)
    page = map_contacts_page(raw, ORG)
    assert isinstance(page, MappedPage)
    synced_cache(cache, ORG, page, NOW - timedelta(minutes=5))
    return raw, page


def test_personal_words_are_folded_words_of_names_emails_and_addresses(cache: ContactCache) -> None:
    accented_cache(cache)
    words = personal_words(cache)
    assert {"jose", "nunez", "storgata", "oslo", "example"} <= set(words)
    assert "note" not in words, "a note body is matched whole, never word by word"
    assert NAME in personal_values(cache)


PLANTED = (
    "bad row for JOSÉ NÚÑEZ",  # mixed case and accents
    "could not map the contact núñez in this page",  # one word inside a sentence
    "refused: Jose Nunez",  # accents dropped
    "refused: Jose\u0301 Nu\u0301n\u0303ez",  # combining marks
    "the address STORGATA was rejected",  # a word of the address
    "bad email JOSE.NUNEZ@EXAMPLE.ORG",  # an email in capitals
)


async def test_the_bundle_redacts_folded_and_embedded_personal_values(
    cache: ContactCache, tmp_path: Path
) -> None:
    raw, _ = accented_cache(cache)
    for minute, message in enumerate(PLANTED, start=1):
        cache.record_attempt(
            SyncLogEntry(
                ORG,
                NOW + timedelta(minutes=minute),
                5,
                "failure",
                error_kind="invalid_data",
                message=message,
            )
        )
    diagnosis = await diagnose(
        (None, cache), ORG, clock=ManualClock(NOW), reader=FakeReader(server_tables(ORG, raw))
    )
    assert diagnosis.sync_log.get_column("message").drop_nulls().to_list() == list(PLANTED)

    text = write_support_bundle(diagnosis, cache, tmp_path).read_text(encoding="utf-8")
    bundle = json.loads(text)
    assert [entry["message"] for entry in bundle["sync_log"][1:]] == ["[redacted]"] * len(PLANTED)
    assert bundle["diagnosis"]["organisations"][0]["last_error_message"] == "[redacted]"
    folded = fold(text)
    for word in ("jose", "nunez", "storgata"):
        assert word not in folded, word
    assert find_personal_values(text, personal_values(cache), personal_words(cache)) == []
    assert bundle["diagnosis"]["organisations"][0]["verdict"] == "failing"


async def test_the_bundle_carries_a_keyed_hash_of_the_user_id_never_the_id(
    session: UserSession, tmp_path: Path
) -> None:
    raw, page = seeded_page(ORG, 2)
    synced_cache(session.cache, ORG, page, NOW)
    diagnosis = await diagnose(session, ORG, reader=FakeReader(server_tables(ORG, raw)))
    user_id = diagnosis.session.user_id
    assert user_id is not None and diagnosis.session.problem_kind is None
    session.cache.record_attempt(
        SyncLogEntry(
            ORG, NOW, 1, "failure", error_kind="auth", message=f"no access for user {user_id}"
        )
    )
    diagnosis = await diagnose(session, ORG, reader=FakeReader(server_tables(ORG, raw)))

    key = b"k" * 32
    text = write_support_bundle(diagnosis, session.cache, tmp_path / "a.json", key=key).read_text(
        encoding="utf-8"
    )
    assert user_id not in text and user_id.upper() not in text.upper()
    bundle = json.loads(text)
    assert bundle["session"]["user_id"] == pseudonymise(user_id, key)
    assert bundle["sync_log"][-1]["message"] == "[redacted]"
    assert bundle["format"] == 2
    # Without a key each bundle gets its own: two bundles cannot be linked to each other.
    first, second = (
        support_bundle(diagnosis, session.cache)["session"]["user_id"] for _ in range(2)
    )
    assert first != second and first.startswith("hmac-sha256:")


async def test_a_personal_value_the_bundle_cannot_redact_refuses_the_write(
    cache: ContactCache, tmp_path: Path
) -> None:
    raw = [fake_contact(ORG, rng=random.Random(5))]
    # A value that is one of the bundle's own field names cannot be redacted out of it.
    raw[0]["full_name"] = "Last_Error_Message"
    page = map_contacts_page(raw, ORG)
    assert isinstance(page, MappedPage)
    synced_cache(cache, ORG, page, NOW)
    diagnosis = await diagnose((None, cache), ORG, clock=ManualClock(NOW), check_server=False)
    with pytest.raises(ValueError, match="personal data"):
        write_support_bundle(diagnosis, cache, tmp_path)
    assert os.listdir(tmp_path) == [], "nothing is written"


async def test_junk_values_that_are_the_bundles_own_words_do_not_block_it(
    cache: ContactCache, tmp_path: Path
) -> None:
    raw = [fake_contact(ORG, rng=random.Random(9))]
    raw[0]["address"] = "NULL"  # JSON's literal, as real data sometimes holds it
    raw[0]["notes"][0]["body"] = "Note"  # a field-name word ("notes")
    page = map_contacts_page(raw, ORG)
    assert isinstance(page, MappedPage)
    synced_cache(cache, ORG, page, NOW)
    assert {"NULL", "Note"} <= set(personal_values(cache))
    diagnosis = await diagnose((None, cache), ORG, clock=ManualClock(NOW), check_server=False)
    bundle = json.loads(write_support_bundle(diagnosis, cache, tmp_path).read_text())
    assert bundle["diagnosis"]["organisations"][0]["verdict"] == "fresh"
    assert find_personal_values('"local_notes": 3', ["Note"]) == [], "not inside a word"


# -- the panel's model, on a real supabase-py client over FakeSupabase --------------------

EMAIL, PASSWORD = "support@example.org", "pw"


@pytest.fixture
async def session(cache: ContactCache) -> AsyncIterator[UserSession]:
    fake = FakeSupabase(users={EMAIL: PASSWORD})
    http = fake.http_client()
    signed_in = await start_session(
        fake.url,
        fake.anon_key,
        email=EMAIL,
        password=PASSWORD,
        cache_path=":memory:",
        http_client=http,
        clock=ManualClock(NOW),
    )
    yield signed_in
    signed_in.close()
    await http.aclose()


async def test_panel_model_diagnoses_and_exports(session: UserSession, tmp_path: Path) -> None:
    from contactsync_kit.widgets.diagnostics_panel import DiagnosticsModel, DiagnosticsPanel

    raw, page = seeded_page(ORG, 3)
    synced_cache(session.cache, ORG, page, NOW - timedelta(hours=30))

    async def lister(_: UserSession) -> list[dict[str, Any]]:
        return [{"id": ORG, "name": "Elvebredd Outreach"}]

    model = DiagnosticsModel(
        clock=ManualClock(NOW),
        reader=FakeReader(server_tables(ORG, raw)),
        lister=lister,
        bundle_dir=tmp_path,
    )
    panel = DiagnosticsPanel(model)
    assert panel.diagnose_button.disabled
    model.session = session
    await model.wait()
    assert model.organisations == [("Elvebredd Outreach", ORG)]
    assert panel.picker.options[1] == ("Elvebredd Outreach", ORG)
    assert not panel.diagnose_button.disabled

    panel.diagnose_button.click()
    await model.wait()
    assert [r["verdict"] for r in model.rows] == ["stale"]
    assert model.rows[0]["label"] == "Elvebredd Outreach"
    assert "Elvebredd Outreach" in panel.table.value and "sync now" in panel.table.value
    assert model.tone == "warn"

    written = await model.export_bundle()
    assert written is not None and written.parent == tmp_path
    assert model.bundle_path == str(written)
    assert raw[0]["full_name"] not in written.read_text()

    model.threshold_hours = 0
    assert model.threshold_hours == 24.0 and model.tone == "error"


async def test_panel_model_without_a_session_says_what_to_do() -> None:
    from contactsync_kit.widgets.diagnostics_panel import DiagnosticsModel

    model = DiagnosticsModel()
    assert await model.diagnose() is None
    assert model.tone == "warn" and "Sign in" in model.status
    assert await model.export_bundle() is None


# -- the package's surface ----------------------------------------------------------------

#: The names `contactsync_kit.diagnostics` offered as a single module; they stay importable.
FORMER_NAMES = [
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


@pytest.mark.parametrize("module", ["frames", "findings", "diagnosis", "privacy", "bundle"])
def test_every_diagnostics_module_declares_all(module: str) -> None:
    import importlib

    mod = importlib.import_module(f"contactsync_kit.diagnostics.{module}")
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_the_package_keeps_every_former_name() -> None:
    import contactsync_kit.diagnostics as package

    assert set(FORMER_NAMES) <= set(package.__all__)
    assert len(package.__all__) == len(set(package.__all__))
    for name in package.__all__:
        assert hasattr(package, name), name
