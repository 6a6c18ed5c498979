"""`make bench-audit`: the RLS audit at a real project's scale, against the local stack.

Seeds 50 organisations x 4 users each (plus the anon key) on a fresh local stack, then runs
the whole audit — every caller x organisation x table x probe, the probes across all
organisations, the exposed surface and the lint — three times and prints the median time
and the number of HTTP requests. The audit batches its probes (organisations into one
``in.(…)`` filter, zero counts over many organisations in one request) rather than
dropping any. Measured here, never asserted in tests: this machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from contactsync_kit.devstack import DevStack, SeedResult
from contactsync_kit.rls_audit import (
    AuditReport,
    GroundTruth,
    audit_rls,
    ground_truth_from_database,
)


async def _audit_once(
    stack: DevStack,
    seed: SeedResult,
    truth: GroundTruth,
) -> tuple[float, AuditReport]:
    started = time.perf_counter()
    report = await audit_rls(
        stack.url,
        stack.anon_key,
        seed.users,
        seed.organisation_ids,
        truth,
        database_url=stack.database_url,
    )
    return time.perf_counter() - started, report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--organisations", type=int, default=50)
    parser.add_argument("--users-per-org", type=int, default=4)
    parser.add_argument("--contacts-per-org", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with DevStack.start(max_rows=1000) as stack:
        seed = stack.seed(
            organisations=args.organisations,
            chapters_per_org=2,
            users_per_org=args.users_per_org,
            contacts_per_org=args.contacts_per_org,
            notes_per_contact=2,
            assignments_per_contact=1,
            seed=4242,
        )
        truth = ground_truth_from_database(stack.database_url, seed.users, seed.organisation_ids)
        print(
            f"RLS audit of {len(seed.organisation_ids)} organisations x "
            f"{len(seed.users)} users (+ anon), {args.contacts_per_org} contacts each:"
        )
        times: list[float] = []
        for run in range(1, args.repeat + 1):
            elapsed, report = asyncio.run(_audit_once(stack, seed, truth))
            times.append(elapsed)
            print(
                f"  run {run}: {elapsed:6.1f} s, {report.requests} requests, "
                f"{report.matrix.height} cells, {'PASS' if report.passed else 'FAIL'}"
            )
        print(
            f"median of {args.repeat}: {statistics.median(times):.1f} s "
            f"({report.requests} requests a run)"
        )


if __name__ == "__main__":
    main()
