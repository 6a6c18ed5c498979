"""Drive a copy of the kit whose spec has a fourth synced table (`contact_tags`).

Run by tests/integration/test_fourth_table.py in a subprocess whose ``contactsync_kit`` is that
copy, never imported by pytest. Starts its own local stack (from the copy's migrations), seeds
it (the seeder gives each contact one tag, from the spec), and prints one JSON object of what
the public API reported: a full sync, a delta after a tag changed and one was deleted, the
digest check, the diagnosis, and the server's view of the tags. Only public API.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl

import contactsync_kit
from contactsync_kit import start_session
from contactsync_kit.devstack import DevStack, SeedResult
from contactsync_kit.diagnostics import diagnose
from contactsync_kit.rls_audit import audit_rls, ground_truth_from_database
from contactsync_kit.schemas import DATA_TABLES, describe_rows
from contactsync_kit.verify import verify_cache

SURFACE = Path(contactsync_kit.__file__).parent / "devstack" / "sql" / "exposed_surface.txt"
ONE_TAG = "SELECT id FROM public.contact_tags WHERE organisation_id = %s ORDER BY id {} LIMIT 1"


async def sync_story(stack: DevStack, folder: Path) -> dict[str, Any]:
    world = stack.seed(
        organisations=2,
        chapters_per_org=2,
        users_per_org=2,
        contacts_per_org=[12, 8],
        notes_per_contact=2,
        assignments_per_contact=1,
        seed=77,
    )
    user = world.users[0]
    org = user.organisation_ids[0]
    session = await start_session(
        stack.url, stack.anon_key, email=user.email, password=user.password, cache_path=folder
    )
    seen: dict[str, Any] = {"package": contactsync_kit.__file__, "tables": list(DATA_TABLES)}
    visible = (
        await session.client.table("contact_tags").select("id").eq("organisation_id", org).execute()
    )
    seen["server_tags"] = len(visible.data)
    full = await session.repository.sync_contacts_for_organisation(org, mode="full")
    seen["full"] = {
        "ok": full.ok,
        "rows": dict(full.rows_synced),
        "words": describe_rows(full.rows_synced),
    }
    seen["cached_after_full"] = session.cache.counts(org)
    [(changed,)] = stack.sql(ONE_TAG.format("ASC"), org)
    [(deleted,)] = stack.sql(ONE_TAG.format("DESC"), org)
    stack.sql("UPDATE public.contact_tags SET tag = 'changed' WHERE id = %s", changed)
    stack.sql("DELETE FROM public.contact_tags WHERE id = %s", deleted)
    delta = await session.repository.sync_contacts_for_organisation(org, mode="delta")
    seen["delta"] = {
        "ok": delta.ok,
        "mode": delta.mode,
        "verified": delta.verified,
        "rows": dict(delta.rows_synced),
        "changed": delta.rows_changed,
        "deleted": delta.rows_deleted,
        "fallback": delta.fallback_reason,
    }
    tags = session.cache.read_table("contact_tags", org)
    seen["cached_tags"] = {
        "count": tags.height,
        "changed": tags.filter(tags["id"] == str(changed))["tag"].to_list(),
        "deleted_present": str(deleted) in tags["id"].to_list(),
    }
    seen["verify_equal"] = (await verify_cache(session.client, session.cache, org)).line()
    stack.sql("DELETE FROM public.contact_tags WHERE id = (" + ONE_TAG.format("ASC") + ")", org)
    seen["verify_drifted"] = (await verify_cache(session.client, session.cache, org)).line()
    diagnosis = await diagnose(session, org)
    differing = diagnosis.differences.filter(pl.col("table") == "contact_tags")
    seen["diagnosis"] = {
        "tables": sorted(set(diagnosis.tables["table"].to_list())),
        "verdicts": diagnosis.verdicts().to_dicts(),
        "differing_tags": differing.select("id", "status").to_dicts(),
    }
    await session.sign_out()
    await session.aclose()
    seen["audit"] = await audit_story(stack, world)
    return seen


async def audit_story(stack: DevStack, world: SeedResult) -> dict[str, Any]:
    """The RLS audit of the seeded organisations, with the copy's own surface file."""
    truth = ground_truth_from_database(stack.database_url, world.users, world.organisation_ids)
    report = await audit_rls(
        stack.url,
        stack.anon_key,
        world.users,
        world.organisation_ids,
        truth,
        database_url=stack.database_url,
        expected_surface=SURFACE,
    )
    tags = report.matrix.filter(pl.col("table") == "contact_tags")
    return {
        "passed": report.passed,
        "tag_probes": sorted(set(tags["probe"].to_list())),
        "tags_expected": int(tags["expected"].sum()),
        "tags_visible": int(tags["visible"].sum()),
    }


def main() -> None:
    folder = Path(sys.argv[1])
    with DevStack.start(max_rows=1000) as stack:
        print(json.dumps(asyncio.run(sync_story(stack, folder)), default=str))


if __name__ == "__main__":
    main()
