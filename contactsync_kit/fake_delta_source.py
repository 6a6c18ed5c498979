"""`FakeDeltaSource`: the delta port in memory, shipped for tests (see `contactsync_kit.testing`).

A server model the verified incremental sync runs against: each synced table's rows, flat,
answering the embedded select, the changes-since / id / bucket listings and the digest as
`SupabaseDeltaSource` does (a contract test on the stack holds it to that).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from .digest import BUCKET_PREFIX, Digest, bucket_sums
from .fake_rows import fake_contact
from .remote import DigestRow, DigestUnavailable, RemoteFailure, RemotePage
from .results import SyncError
from .schemas import DATA_TABLES, EMBEDDED_TABLES, ROOT_TABLE, TABLES

__all__ = ["FakeDeltaSource"]

__io__ = "none"


def _instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class FakeDeltaSource:
    """The `DeltaSource` port in memory: a server model for the delta, reconcile and digest.

    `tables` holds each synced table's rows (every table of the spec, `DATA_TABLES`), flat,
    as the server stores them. It honours the real source's contract: `fetch_page` answers
    the embedded select (root rows with their children embedded, keyset pages of
    `page_size` by id, the first with the exact count); `fetch_rows` one table's rows of an
    organisation changed at or after ``since``, among ``ids`` or inside id ``buckets``, as
    keyset pages by id; `digest` the server's ``contactsync_digest`` per table or per id
    bucket, computed with the kit's twin of the server's hash (tables without rows are
    absent, as on the server). Every row is visible to `user` (no RLS in the model).

    Change the model with `put` and `delete` (or edit `tables`). Faults: `max_rows` cuts
    every answer short as PostgREST's db-max-rows does (silently); `session_error` is
    what `check_session` answers; `digest_available=False` makes `digest` raise
    `DigestUnavailable` (a server without the function); `fetch_errors` maps a `fetch_rows`
    call number (1 for the first) to the error it raises as `RemoteFailure`;
    `after_digest(organisation_id, prefix_length)` runs once a digest is computed, before
    it is returned (a write landing just after the server answered). `calls` records each
    request as ``(kind, table, arguments)``.
    """

    tables: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {table: [] for table in DATA_TABLES}
    )
    page_size: int = 1000
    max_rows: int | None = None
    user: str | None = "00000000-0000-4000-8000-000000000001"
    session_error: SyncError | None = None
    digest_available: bool = True
    fetch_errors: dict[int, SyncError] = field(default_factory=dict)
    after_digest: Callable[[str, int], None] | None = None
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    # -- the model ------------------------------------------------------------------------

    def add_contacts(self, organisation_id: str, count: int, *, seed: int = 0) -> None:
        """Add `count` generated root rows of `organisation_id`, each with its children."""
        rng = random.Random(f"{organisation_id}:{seed}:{len(self.tables[ROOT_TABLE])}")
        for _ in range(count):
            self.add_embedded(fake_contact(organisation_id, rng=rng))

    def add_embedded(self, row: dict[str, Any]) -> None:
        """Add one row shaped like the embedded select's output, split into its tables."""
        root = {k: v for k, v in row.items() if k not in EMBEDDED_TABLES}
        self.tables[ROOT_TABLE].append(root)
        for table in EMBEDDED_TABLES:
            self.tables[table].extend(row.get(table, []))

    def put(self, table: str, row: dict[str, Any], *, when: datetime | None = None) -> None:
        """Insert or replace `row` (by id), stamped ``updated_at`` = `when` (default now).

        The server's triggers move ``updated_at`` on every write; so does this.
        """
        stamped = {**row, "updated_at": (when or datetime.now(UTC)).isoformat()}
        rows = self.tables[table]
        self.tables[table] = [r for r in rows if r["id"] != row["id"]] + [stamped]

    def delete(self, table: str, row_id: str) -> None:
        """Delete one row (its children stay: delete them too, as the server's cascade)."""
        self.tables[table] = [r for r in self.tables[table] if r["id"] != row_id]

    def rows(self, table: str, organisation_id: str) -> list[dict[str, Any]]:
        """The rows of `table` in `organisation_id`, ordered by id."""
        found = [r for r in self.tables[table] if r[TABLES[table].scope] == organisation_id]
        return sorted(found, key=lambda r: uuid.UUID(r["id"]))

    # -- the port -------------------------------------------------------------------------

    async def check_session(self) -> SyncError | None:
        """`session_error` (None: a live user session)."""
        return self.session_error

    def user_id(self) -> str | None:
        """`user`: the signed-in user's id."""
        return self.user

    async def fetch_page(
        self,
        organisation_id: str,
        *,
        after: str | None,
        with_count: bool,
        upto: str | None = None,
    ) -> RemotePage:
        """The next keyset page (``after < id <= upto``) of the embedded select."""
        self.calls.append(("page", ROOT_TABLE, {"after": after, "upto": upto}))
        roots = self.rows(ROOT_TABLE, organisation_id)
        total = len(roots)
        if after is not None:
            roots = [r for r in roots if uuid.UUID(r["id"]) > uuid.UUID(after)]
        if upto is not None:
            roots = [r for r in roots if uuid.UUID(r["id"]) <= uuid.UUID(upto)]
        page = [self._embedded(r, organisation_id) for r in roots[: self._limit()]]
        return RemotePage(
            body=json.dumps(page).encode(),
            total=total if with_count else None,
            rows=len(page),
            last_key=page[-1]["id"] if page else None,
        )

    def _embedded(self, root: dict[str, Any], organisation_id: str) -> dict[str, Any]:
        row = dict(root)
        for table in EMBEDDED_TABLES:
            column, _ = TABLES[table].parent or ("", "")
            row[table] = [c for c in self.rows(table, organisation_id) if c[column] == root["id"]]
        return row

    async def fetch_rows(
        self,
        table: str,
        organisation_id: str,
        *,
        since: str | None = None,
        ids: list[str] | None = None,
        buckets: list[str] | None = None,
        columns: str = "*",
        after: str | None = None,
    ) -> RemotePage:
        """One keyset page (by id) of `table`'s rows, filtered as `SupabaseDeltaSource` does."""
        arguments = {"since": since, "ids": ids, "buckets": buckets, "columns": columns}
        self.calls.append(("rows", table, {**arguments, "after": after}))
        error = self.fetch_errors.get(sum(1 for call in self.calls if call[0] == "rows"))
        if error is not None:
            raise RemoteFailure(error)
        rows = self.rows(table, organisation_id)
        if since is not None:
            rows = [r for r in rows if _instant(r["updated_at"]) >= _instant(since)]
        if ids is not None:
            rows = [r for r in rows if r["id"] in set(ids)]
        if buckets:
            rows = [r for r in rows if any(r["id"].lower().startswith(b) for b in buckets)]
        if after is not None:
            rows = [r for r in rows if uuid.UUID(r["id"]) > uuid.UUID(after)]
        if columns != "*":
            wanted = [c.strip() for c in columns.split(",")]
            rows = [{c: r[c] for c in wanted} for r in rows]
        return RemotePage(body=json.dumps(rows[: self._limit()]).encode(), total=None)

    def _limit(self) -> int:
        return min(self.page_size, self.max_rows or self.page_size)

    async def digest(self, organisation_id: str, prefix_length: int = 0) -> list[DigestRow]:
        """The server's digest of the organisation per table, or per id bucket."""
        self.calls.append(("digest", "", {"prefix_length": prefix_length}))
        if not self.digest_available:
            raise DigestUnavailable("Could not find the function in the schema cache")
        if prefix_length > BUCKET_PREFIX:
            raise ValueError(f"buckets of more than {BUCKET_PREFIX} hex digits are not modelled")
        answer = [
            DigestRow(table, bucket, digest.count, digest.value)
            for table in DATA_TABLES
            for bucket, digest in self._digests(table, organisation_id, prefix_length).items()
        ]
        if self.after_digest is not None:
            self.after_digest(organisation_id, prefix_length)
        return answer

    def _digests(self, table: str, organisation_id: str, prefix_length: int) -> dict[str, Digest]:
        rows = self.rows(table, organisation_id)
        frame = pl.DataFrame(
            {
                "id": [r["id"] for r in rows],
                "updated_at": [_instant(r["updated_at"]) for r in rows],
            },
            schema={"id": pl.String, "updated_at": pl.Datetime("us", "UTC")},
        )
        result: dict[str, Digest] = {}
        for bucket, digest in bucket_sums(frame).items():
            key = bucket[:prefix_length]
            result[key] = result.get(key, Digest()) + digest
        return result
