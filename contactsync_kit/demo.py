"""`make demo`: a real sync against the embedded local Supabase stack, printed."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from .bootstrap import start_session
from .results import SyncResult

__all__ = ["format_result", "run_demo"]

# A temporary folder for the demo's cache file.
__io__ = "disk"


def format_result(result: SyncResult, name: str) -> str:
    """A SyncResult as the few lines a person reads."""
    if result.error is not None:
        return f"  {name}: FAILED [{result.error.kind}] {result.error.message}"
    t = result.timings
    return (
        f"  {name}: {result.items_synced} contacts, {result.notes_synced} notes, "
        f"{result.assignments_synced} assignments in {result.duration_ms} ms "
        f"(fetch {t.fetch_ms} / map {t.map_ms} / write {t.write_ms} ms, {result.pages} page(s))"
    )


async def run_demo(*, contacts_per_org: int = 200, out: Callable[[str], None] = print) -> int:
    """Start the local stack, seed it, sign in as a demo user, sync, show, sign out.

    Returns a process exit code: 0 when every sync succeeded and the cache matches.
    """
    from .devstack import DevStack  # the stack's dependencies load only when it is used

    out("Starting the embedded local Supabase stack (PostgreSQL 18 + PostgREST 12)...")
    with DevStack.start() as stack, tempfile.TemporaryDirectory() as workdir:
        seed = stack.seed(organisations=3, chapters_per_org=2, contacts_per_org=contacts_per_org,
                          notes_per_contact=3, assignments_per_contact=1, seed=7)
        out(f"  stack at {stack.url}; seeded {seed.contact_count} contacts, {seed.note_count} "
            f"notes, {seed.assignment_count} assignments in {seed.duration_s:.2f} s")
        user = seed.user("multi-org")
        out(f"Signing in as {user.email} (member of {len(user.memberships)} organisations)...")
        session = await start_session(stack.url, stack.anon_key, email=user.email,
                                      password=user.password,
                                      cache_path=Path(workdir) / "cache.sqlite3")
        names = seed.organisation_names
        ok = True
        out("Syncing each organisation with one embedded-join query per page:")
        for organisation_id in user.organisation_ids:
            result = await session.repository.sync_contacts_for_organisation(organisation_id)
            out(format_result(result, names[organisation_id]))
            out(f"    {result!r}")
            ok = ok and result.ok
        out("Cache row counts per organisation:")
        for row in session.cache.overview().iter_rows(named=True):
            out(f"  {names.get(row['organisation_id'], row['organisation_id'])}: "
                f"{row['contacts']} contacts, {row['notes']} notes, "
                f"{row['contact_assignments']} assignments, last synced "
                f"{row['last_synced_at']:%Y-%m-%d %H:%M:%S} UTC")
        removed = await session.sign_out()
        out(f"Signed out; the cache was wiped: {removed}")
        ok = ok and session.cache.counts() == {"contacts": 0, "notes": 0,
                                               "contact_assignments": 0}
        session.close()
    return 0 if ok else 1


def main() -> int:
    """Entry point for ``contactsync demo``."""
    return asyncio.run(run_demo())
