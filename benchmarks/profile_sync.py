"""Where the kit's client CPU goes: one full sync under py-spy, split by thread and by part.

``python -m benchmarks.profile_sync [--contacts N] [--out DIR]`` starts the stack in its own
process, seeds N contacts (3 notes and 1 assignment each), runs one kit sync
(`benchmarks.sync_client`) under ``py-spy record --threads --native --idle`` off,
and prints the samples per thread and per part of the sync (HTTP, mapping, digest, SQLite
write, ...). py-spy is a development tool: ``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
from pathlib import Path

from contactsync_kit.devstack.admin import StackDatabase

from .stack_process import StackProcess

# The first rule whose words occur in a stack (innermost frames first) names its part.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("sqlite write", ("_insert_frame", "TableWriter", "write_frame", "_write_frames")),
    ("sqlite commit", ("_commit_direct", "commit (contactsync_kit/staging")),
    ("digest", ("digest_batch", "combine_digest", "row_digest", "bucket_sum")),
    ("read_json", ("_read_raw", "read_json")),
    ("checks+normalise", ("_validate", "map_contacts_page", "_utc_text")),
    ("http", ("httpx", "h11", "aiohttp", "anyio", "_send", "fetch_page")),
    ("last_row_key", ("last_row_key",)),
]


_PY_SPY = ["py-spy", "record", "--threads", "--native", "--rate", "250", "--format", "raw"]


def part_of(stack: str) -> str:
    for name, words in PARTS:
        if any(word in stack for word in words):
            return name
    return "other"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path("artifacts/profile"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with StackProcess() as stack:
        database = StackDatabase(stack.database_url)
        seeded = database.seed(
            organisations=1,
            chapters_per_org=1,
            users_per_org=1,
            contacts_per_org=args.contacts,
            notes_per_contact=3,
            assignments_per_contact=1,
            seed=9100,
        )
        database.close()
        user = seeded.user("org1-admin")
        spec = {
            "url": stack.url,
            "anon_key": stack.anon_key,
            "email": user.email,
            "password": user.password,
            "organisation_id": seeded.organisation_ids[0],
            "runner": "kit",
        }
        raw = args.out / "kit.collapsed"
        command = [sys.executable, "-m", "benchmarks.sync_client", json.dumps(spec)]
        subprocess.run(
            [*_PY_SPY, "--output", str(raw), "--", *command],
            check=True,
            capture_output=True,
        )
    by_part: collections.Counter[str] = collections.Counter()
    by_thread: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        thread = stack_text.split(";", 1)[0]
        if "MainThread" in thread and "kit_sync" not in stack_text:
            continue  # start-up: imports and sign-in, not the sync
        ours = "contactsync_kit/" in stack_text
        part = part_of(stack_text) if ours else "native threads (polars pool, no Python frame)"
        by_part[part] += int(count)
        by_thread[thread.partition("): ")[2] or thread] += int(count)
    total = sum(by_part.values())
    print(f"{total} samples at 250 Hz (about {total / 250:.2f} CPU-s sampled)")
    for name, samples in by_part.most_common():
        print(f"  {name:<18} {samples / 250:6.2f} s  {100 * samples / total:5.1f}%")
    print("by thread:")
    for name, samples in by_thread.most_common(12):
        print(f"  {name:<45} {samples / 250:6.2f} s")


if __name__ == "__main__":
    main()
