"""The diagnosis asks the server's digest first, without a server.

A fake reader that also answers the digest (computed from its rows with the kit's own twin
of the server's function) stands in for a server with `contactsync_digest`; the plain fake
reader stands in for one without it, where the diagnosis falls back to the id diff.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl

from contactsync_kit import ContactCache, ManualClock
from contactsync_kit.diagnostics import DIAGNOSIS_SCHEMA, Verdict, diagnose
from contactsync_kit.diagnostics.findings import FACT_COLUMNS, OrgFacts
from contactsync_kit.digest import bucket_sums, total
from contactsync_kit.remote import DigestRow, DigestSource
from contactsync_kit.schemas import DATA_TABLES

from .test_diagnostics import NOW, ORG, FakeReader, seeded_page, server_tables, synced_cache


class FakeDigestReader(FakeReader):
    """`FakeReader` plus the server's digest of its rows (one call per organisation)."""

    async def digest(self, organisation_id: str, prefix_length: int = 0) -> list[DigestRow]:
        assert prefix_length == 0
        self.calls.append(("digest", organisation_id))
        rows = []
        for table in DATA_TABLES:
            found = self._match(table, [("organisation_id", "eq", organisation_id)])
            frame = pl.DataFrame(
                [(r["id"], r["updated_at"]) for r in found],
                schema={"id": pl.String, "updated_at": pl.String},
                orient="row",
            ).with_columns(pl.col("updated_at").str.to_datetime(time_zone="UTC", time_unit="us"))
            digest = total(bucket_sums(frame))
            rows.append(DigestRow(table, "", digest.count, digest.value))
        return rows


def listings(reader: FakeReader) -> list[tuple[str, str]]:
    return [call for call in reader.calls if call[0] == "rows"]


def test_the_fact_columns_are_derived_from_org_facts_and_the_spec() -> None:
    scalars = [name for name in OrgFacts.__dataclass_fields__ if not name.endswith("_counts")]
    per_table = [f"{side}_{table}" for table in DATA_TABLES for side in ("local", "server")]
    assert sorted(FACT_COLUMNS) == sorted(scalars + per_table)
    assert all(FACT_COLUMNS[name] == pl.Int64() for name in per_table)
    assert FACT_COLUMNS["server_digest"] == pl.String()
    assert DIAGNOSIS_SCHEMA["server_digest"] == pl.String()


async def test_an_equal_digest_means_no_id_listing(cache: ContactCache) -> None:
    raw, page = seeded_page(ORG, 4)
    synced_cache(cache, ORG, page, NOW - timedelta(minutes=5))
    reader = FakeDigestReader(server_tables(ORG, raw))
    assert isinstance(reader, DigestSource)

    diagnosis = await diagnose((None, cache), ORG, clock=ManualClock(NOW), reader=reader)

    assert listings(reader) == [], "the digest proved the cache equal: no ids are listed"
    assert reader.calls[0] == ("digest", ORG), "the digest is asked first"
    assert [c for c in reader.calls if c[0] == "digest"] == [("digest", ORG)]
    row = diagnosis.organisations.row(0, named=True)
    assert (row["verdict"], row["server_digest"], row["server_checked"]) == (
        "fresh",
        "equal",
        True,
    )
    assert (row["server_contacts"], row["server_notes"], row["server_contact_assignments"]) == (
        4,
        12,
        4,
    )
    assert (row["missing_locally"], row["gone_from_server"], row["newer_on_server"]) == (0, 0, 0)
    assert "equals the server (verified by digest)" in row["summary"]
    assert diagnosis.differences.is_empty()
    per_table = diagnosis.tables.filter(pl.col("organisation_id") == ORG)
    assert per_table["gone_from_server"].to_list() == [0, 0, 0]
    assert per_table["server_rows"].sum() == per_table["local_rows"].sum() == 20


async def test_a_stale_but_equal_cache_says_it_still_equals_the_server(
    cache: ContactCache,
) -> None:
    raw, page = seeded_page(ORG, 2)
    synced_cache(cache, ORG, page, NOW - timedelta(hours=30))
    reader = FakeDigestReader(server_tables(ORG, raw))
    finding = (
        await diagnose((None, cache), ORG, clock=ManualClock(NOW), reader=reader)
    ).verdict_for(ORG)
    assert finding.verdict is Verdict.STALE
    assert "the cache still equals the server (verified by digest)" in finding.summary


async def test_a_drifted_digest_runs_the_id_diff_to_say_what_differs(cache: ContactCache) -> None:
    raw, page = seeded_page(ORG, 4)
    synced_cache(cache, ORG, page, NOW - timedelta(minutes=5))
    tables = server_tables(ORG, raw)
    deleted = tables["contacts"].pop(0)
    tables["notes"] = [n for n in tables["notes"] if n["contact_id"] != deleted["id"]]
    tables["contact_assignments"] = [
        a for a in tables["contact_assignments"] if a["contact_id"] != deleted["id"]
    ]
    reader = FakeDigestReader(tables)

    diagnosis = await diagnose((None, cache), ORG, clock=ManualClock(NOW), reader=reader)

    assert reader.calls[0] == ("digest", ORG)
    assert len(listings(reader)) == len(DATA_TABLES), "drifted: the ids are listed per table"
    row = diagnosis.organisations.row(0, named=True)
    assert (row["verdict"], row["cause"], row["server_digest"]) == (
        "drifted",
        "server_changed",
        "drifted",
    )
    assert row["gone_from_server"] == 5  # the contact, its three notes and its assignment
    gone = diagnosis.differences.filter(pl.col("table") == "contacts")["id"].to_list()
    assert gone == [deleted["id"]]


async def test_a_digest_that_differs_with_equal_rows_still_reads_drifted(
    cache: ContactCache,
) -> None:
    # The cache holds a later updated_at than the server (the id diff ignores that): only
    # the digest sees the difference, and the verdict says so.
    raw, page = seeded_page(ORG, 1)
    synced_cache(cache, ORG, page, NOW - timedelta(minutes=5))
    tables = server_tables(ORG, raw)
    tables["contacts"][0] = dict(tables["contacts"][0], updated_at="2025-06-01T00:00:00+00:00")
    diagnosis = await diagnose(
        (None, cache), ORG, clock=ManualClock(NOW), reader=FakeDigestReader(tables)
    )
    finding = diagnosis.verdict_for(ORG)
    assert finding.verdict is Verdict.DRIFTED
    assert "digest differs" in finding.summary


async def test_without_a_digest_the_diagnosis_is_the_id_diff_as_before(
    cache: ContactCache,
) -> None:
    raw, page = seeded_page(ORG, 3)
    synced_cache(cache, ORG, page, NOW - timedelta(minutes=5))
    reader = FakeReader(server_tables(ORG, raw))
    assert not isinstance(reader, DigestSource)

    diagnosis = await diagnose((None, cache), ORG, clock=ManualClock(NOW), reader=reader)

    assert len(listings(reader)) == len(DATA_TABLES)
    row = diagnosis.organisations.row(0, named=True)
    assert (row["verdict"], row["server_digest"]) == ("fresh", None)
    assert row["summary"].endswith("the cache matches the server")


async def test_a_failing_digest_falls_back_to_the_id_diff_which_reports_the_failure(
    cache: ContactCache,
) -> None:
    from contactsync_kit.results import SyncError, SyncErrorKind

    _, page = seeded_page(ORG, 1)
    synced_cache(cache, ORG, page, NOW)
    reader = FakeDigestReader(
        {}, fail=SyncError(SyncErrorKind.NETWORK, "connection refused", status=None)
    )
    diagnosis = await diagnose((None, cache), ORG, clock=ManualClock(NOW), reader=reader)
    row: dict[str, Any] = diagnosis.organisations.row(0, named=True)
    assert (row["verdict"], row["server_digest"], row["server_error_kind"]) == (
        "unreachable",
        None,
        "network",
    )
