"""`make bench` (second part): verified incremental sync against a full sync, same data, one run.

At N contacts (3 notes and 1 assignment each) on the local stack, through supabase-py:

* a full sync (``mode="full"``: every row fetched, mapped, written, digest-checked);
* an unchanged re-sync (``mode="auto"`` after a verified sync: a delta with nothing to fetch,
  then the digest check);
* a re-sync after 100 scattered edits: inserts (contacts with notes), updates to contacts,
  notes and assignments, and deletes (contacts with their notes, lone notes, assignments);
  the deletes are found by the bucketed digest and reconciled.

Prints medians, the ratios to the full sync (goals: <= 5% and <= 10%), and the plan of the
server's digest query as the signed-in user sees it. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from contactsync_kit import ContactCache, ContactCacheSyncRepository, SystemClock, sign_in
from contactsync_kit.devstack import DevStack
from contactsync_kit.devstack.migrations import migration_files
from contactsync_kit.results import SyncResult


def scatter_edits(stack: DevStack, org: str, rng: random.Random, edits: int = 100) -> None:
    """`edits` changes spread over the organisation's ids, committed one by one."""
    ids = [r[0] for r in stack.sql("SELECT id::text FROM contacts WHERE organisation_id = %s", org)]
    picks = rng.sample(ids, edits)
    per = edits // 5
    for contact in picks[:per]:
        stack.sql("UPDATE contacts SET full_name = full_name || ' Jr' WHERE id = %s", contact)
    for contact in picks[per : 2 * per]:
        stack.sql(
            "UPDATE notes SET body = body || ' (edited)' WHERE id = (SELECT id FROM notes"
            " WHERE contact_id = %s LIMIT 1)",
            contact,
        )
    for contact in picks[2 * per : 3 * per]:
        stack.sql(
            "UPDATE contact_assignments SET role = CASE role WHEN 'primary' THEN "
            "'backup' ELSE 'primary' END WHERE contact_id = %s",
            contact,
        )
    for _ in range(per):
        new = stack.sql(
            "INSERT INTO contacts (organisation_id, full_name) VALUES (%s, "
            "'Bench Insert') RETURNING id::text",
            org,
        )[0][0]
        stack.sql(
            "INSERT INTO notes (contact_id, organisation_id, body) VALUES (%s, %s, 'bench note')",
            new,
            org,
        )
    deletes = picks[3 * per :]
    for contact in deletes[: per // 2]:
        stack.sql("DELETE FROM contacts WHERE id = %s", contact)  # its notes cascade
    for contact in deletes[per // 2 : per]:
        stack.sql(
            "DELETE FROM notes WHERE id = (SELECT id FROM notes WHERE contact_id = %s LIMIT 1)",
            contact,
        )
    for contact in deletes[per:]:
        stack.sql("DELETE FROM contact_assignments WHERE contact_id = %s", contact)


def explain_digest(stack: DevStack, org: str, user_id: str) -> str:
    """EXPLAIN ANALYZE of the digest function's query, run as the user (RLS applies)."""
    sql = dict(migration_files())["0005_sync_digest.sql"]
    body = sql.split("AS $$", 1)[1].split("$$;", 1)[0]
    body = body.replace("p_organisation_id", f"'{org}'::uuid").replace("p_prefix_length", "0")
    claims = json.dumps({"sub": user_id, "role": "authenticated"})
    with psycopg.connect(stack.database_url) as conn:
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
        rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {body}").fetchall()
    return "\n".join(str(r[0]) for r in rows)


async def timed(repo: ContactCacheSyncRepository, org: str, mode: str) -> tuple[float, SyncResult]:
    started = time.perf_counter()
    result = await repo.sync_contacts_for_organisation(org, mode=mode)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    if result.error is not None:
        raise RuntimeError(f"benchmark sync failed: {result.error}")
    return seconds, result


async def run(size: int, repeats: int, explain: bool) -> None:
    with DevStack.start() as stack, tempfile.TemporaryDirectory() as workdir:
        print(f"local stack at {stack.url}; seeding {size} contacts x (3 notes + 1 assignment)")
        seed = stack.seed(
            organisations=1,
            chapters_per_org=2,
            users_per_org=1,
            contacts_per_org=size,
            notes_per_contact=3,
            assignments_per_contact=1,
            seed=9700,
        )
        stack.sql("VACUUM ANALYZE")
        user, org = seed.user("org1-admin"), seed.organisation_ids[0]
        client = await sign_in(
            stack.url, stack.anon_key, email=user.email, password=user.password, timeout_s=120
        )
        cache = ContactCache.open(Path(workdir) / "cache.sqlite3")
        repo = ContactCacheSyncRepository(client, cache, SystemClock())
        rng = random.Random(11)

        full: list[float] = []
        for attempt in range(repeats):
            seconds, result = await timed(repo, org, "full")
            assert result.mode == "full" and result.verified, result
            full.append(seconds)
            print(f"  full sync {attempt + 1}/{repeats}: {seconds * 1000:8.1f} ms", flush=True)
        unchanged: list[float] = []
        for attempt in range(repeats):
            seconds, result = await timed(repo, org, "auto")
            assert result.mode == "delta" and result.verified, result
            unchanged.append(seconds)
            print(
                f"  unchanged re-sync {attempt + 1}/{repeats}: {seconds * 1000:8.1f} ms", flush=True
            )
        edited: list[float] = []
        for attempt in range(repeats):
            scatter_edits(stack, org, rng)
            seconds, result = await timed(repo, org, "auto")
            assert result.mode == "delta" and result.verified, result
            edited.append(seconds)
            print(
                f"  after 100 edits {attempt + 1}/{repeats}: {seconds * 1000:8.1f} ms "
                f"({result.rows_changed} written, {result.rows_deleted} deleted, "
                f"{result.pages} pages of rows, "
                f"{'reconciled' if result.reconciled else 'no reconcile'})",
                flush=True,
            )
        cache.close()

        full_s = statistics.median(full)
        print(f"\n| {size} contacts | median | / full sync | goal |")
        print("|---|---:|---:|---:|")
        print(f"| full sync | {full_s * 1000:.0f} ms | 100% | |")
        for label, runs, goal in (
            ("unchanged re-sync", unchanged, 0.05),
            ("re-sync after 100 scattered edits", edited, 0.10),
        ):
            median = statistics.median(runs)
            verdict = "meets" if median / full_s <= goal else "MISSES"
            print(
                f"| {label} | {median * 1000:.0f} ms | {median / full_s:.1%} | "
                f"<= {goal:.0%} ({verdict}) |"
            )
        if explain:
            print("\nThe digest query at this size, as the signed-in user (RLS applies):")
            print(explain_digest(stack, org, user.user_id))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-explain", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(run(args.size, args.repeats, not args.no_explain))


if __name__ == "__main__":
    main()
