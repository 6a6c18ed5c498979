"""Is this cache right? One request to the server's digest answers "equal" or "drifted".

For support and the panels: `verify_cache` compares, per table, the row count and digest of
what the cache holds for an organisation (recomputed from its ids and timestamps, never its
personal columns) with the server's digest of what RLS shows the signed-in user. No id diff,
no data transfer beyond three numbers per table.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .cache import ContactCache
from .clock import SystemClock
from .delta_store import DeltaStore
from .diagnostics.findings import Verdict
from .digest import total
from .remote import DigestSource, DigestUnavailable, RemoteFailure, SupabaseDeltaSource
from .schemas import DATA_TABLES

if TYPE_CHECKING:
    from supabase import AsyncClient

__all__ = [
    "CacheVerification",
    "TableVerification",
    "verify_against",
    "verify_cache",
]

__io__ = "none"


@dataclass(frozen=True)
class TableVerification:
    """One table: rows cached, rows the server shows the user, and whether digests agree."""

    table: str
    cached_rows: int
    server_rows: int
    equal: bool


@dataclass(frozen=True)
class CacheVerification:
    """The verdict for one organisation's cache.

    `verdict` is `Verdict.EQUAL` (every table's count and digest agree with the server's),
    `Verdict.DRIFTED` (at least one differs: sync to repair) or `Verdict.UNAVAILABLE` (the
    server offers no digest or could not be asked; `reason` says which). A `Verdict` is a
    string: ``verdict == "equal"`` holds.
    """

    organisation_id: str
    verdict: Verdict
    tables: dict[str, TableVerification] = field(default_factory=dict)
    reason: str | None = None

    @property
    def equal(self) -> bool:
        """True when the cache provably equals what the server shows the user."""
        return self.verdict == Verdict.EQUAL

    def line(self) -> str:
        """A one-line summary for a panel or a log (counts only, no personal data)."""
        if self.verdict == Verdict.UNAVAILABLE:
            return f"cannot verify: {self.reason}"
        drift = [t for t in self.tables.values() if not t.equal]
        if not drift:
            return "equal to the server ✓"
        return "drifted: " + ", ".join(
            f"{t.table} {t.cached_rows} cached / {t.server_rows} on the server" for t in drift
        )


async def verify_cache(
    client: AsyncClient, cache: ContactCache, organisation_id: str
) -> CacheVerification:
    """Compare the cache of `organisation_id` with the server's digest, in one request.

    `client` is the signed-in user's supabase client (a `UserSession`'s ``client``); the
    server answers for what RLS lets that user see. Never raises for expected failures.
    """
    return await verify_against(SupabaseDeltaSource(client, SystemClock()), cache, organisation_id)


async def verify_against(
    source: DigestSource, cache: ContactCache, organisation_id: str
) -> CacheVerification:
    """`verify_cache` with the server's digest read from `source` (one ``digest`` call).

    For callers that already hold a `DigestSource` (the diagnosis; tests with
    `testing.FakeDeltaSource`).
    """
    org = organisation_id.lower()
    # The cache is read while the server answers; a failed answer still waits for that read,
    # so nothing reads the cache after this returns (the caller may close it).
    reading = asyncio.ensure_future(asyncio.to_thread(DeltaStore(cache).actual_digests, org))
    try:
        rows = await source.digest(org, 0)
        local = await reading
    except DigestUnavailable as exc:
        return CacheVerification(
            org, Verdict.UNAVAILABLE, reason=f"the server offers no digest function ({exc})"
        )
    except RemoteFailure as exc:
        return CacheVerification(org, Verdict.UNAVAILABLE, reason=str(exc.error))
    finally:
        await asyncio.wait([reading])
    server = {row.table: (row.count, row.digest) for row in rows}
    tables = {}
    for table in DATA_TABLES:
        mine = total(local[table])
        theirs = server.get(table)
        tables[table] = TableVerification(
            table, mine.count, theirs[0] if theirs else 0, mine.agrees_with(theirs)
        )
    verdict = Verdict.EQUAL if all(t.equal for t in tables.values()) else Verdict.DRIFTED
    return CacheVerification(org, verdict, tables)
