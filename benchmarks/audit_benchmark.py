"""`make bench-audit`: the RLS audit at a real project's scale, against the local stack.

For each scale (by default 50 and 1,000 organisations x 4 users each, plus the anon key) it
starts a fresh local stack in its own process (as a real API server is never inside the
auditing process), seeds it, reads ground truth, then runs the whole audit — every caller
once across all organisations, the function and claims probes, the exposed surface and the
lint — three times. It prints organisations, users, requests, matrix cells, the audit
process's peak memory and open descriptors, and the time of each run and their median, with
progress during each run. Measured here, never asserted in tests: this machine is noisy.

The seeded users' PBKDF2 cost is lowered (``--password-iterations``, 1,000 by default):
the stack's auth stand-in verifies each of the 4,000 sign-ins on the same two cores as the
audit, which at the stand-in's default cost (100,000, ~40 ms each) alone would take about
80 s of both cores; on a real project the auth server pays it on its own machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from contactsync_kit.rls_audit import (
    AuditProgress,
    AuditReport,
    audit_rls,
    ground_truth_from_database,
)


@dataclass(frozen=True)
class Scale:
    organisations: int
    users_per_org: int
    contacts_per_org: int
    password_iterations: int


def _serve(conn: Connection, scale: Scale) -> None:
    """The stack's process: start, seed, answer the claims probe's token requests, stop."""
    from contactsync_kit.devstack import DevStack

    with DevStack.start(max_rows=1000) as stack:
        seed = stack.seed(
            organisations=scale.organisations,
            chapters_per_org=2,
            users_per_org=scale.users_per_org,
            contacts_per_org=scale.contacts_per_org,
            notes_per_contact=2,
            assignments_per_contact=1,
            seed=4242,
            password_iterations=scale.password_iterations,
        )
        conn.send((stack.url, stack.anon_key, stack.database_url, seed))
        tokens: Any = None
        while True:
            command, payload = conn.recv()
            if command == "stop":
                return
            if command == "claims":
                tokens = stack.user_metadata_tokens(payload)
                conn.send(tokens.__enter__())
            elif command == "unclaim":
                tokens.__exit__(None, None, None)
                conn.send(None)


class _Sampler:
    """Samples this process's memory (RSS) and open descriptors every 50 ms."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak_rss = 0
        self.peak_fds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            self.peak_fds = max(self.peak_fds, self._process.num_fds())
            self._stop.wait(0.05)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _progress(update: AuditProgress) -> None:
    step = max(1, update.total // 4)
    if update.done % step < 50 or update.done == update.total:
        print(
            f"    {update.phase}: {update.done}/{update.total} callers, {update.requests} requests",
            flush=True,
        )


def _run_scale(scale: Scale, repeat: int) -> None:
    parent, child = mp.get_context("spawn").Pipe()
    process = mp.get_context("spawn").Process(target=_serve, args=(child, scale), daemon=True)
    started = time.perf_counter()
    process.start()
    url, key, database_url, seed = parent.recv()

    @contextmanager
    def claims_tokens(metadata: Mapping[str, Mapping[str, Any]]) -> Iterator[Mapping[str, str]]:
        parent.send(("claims", {k: dict(v) for k, v in metadata.items()}))
        try:
            yield parent.recv()
        finally:
            parent.send(("unclaim", None))
            parent.recv()

    try:
        truth_started = time.perf_counter()
        truth = ground_truth_from_database(database_url, seed.users, seed.organisation_ids)
        print(
            f"{len(seed.organisation_ids)} organisations x {scale.users_per_org} users "
            f"= {len(seed.users)} users (+ anon), {scale.contacts_per_org} contacts each, "
            f"PBKDF2 {scale.password_iterations} iterations; stack up and seeded in "
            f"{truth_started - started:.0f} s, ground truth read in "
            f"{time.perf_counter() - truth_started:.1f} s",
            flush=True,
        )
        times: list[float] = []
        for run in range(1, repeat + 1):
            with _Sampler() as sampler:
                began = time.perf_counter()
                report: AuditReport = asyncio.run(
                    audit_rls(
                        url,
                        key,
                        seed.users,
                        seed.organisation_ids,
                        truth,
                        database_url=database_url,
                        claims_tokens=claims_tokens,
                        progress=_progress,
                    )
                )
                elapsed = time.perf_counter() - began
            times.append(elapsed)
            print(
                f"  run {run}: {elapsed:6.1f} s, {report.requests} requests, "
                f"{report.matrix.height} cells, {report.callers} callers, claims probe "
                f"{report.claims_probed} users, peak memory "
                f"{sampler.peak_rss / 2**20:.0f} MiB, peak open descriptors "
                f"{sampler.peak_fds}, {'PASS' if report.passed else 'FAIL'}"
                + ("" if report.complete else " (stopped early)"),
                flush=True,
            )
            if not report.complete:
                break
        print(
            f"  median of {len(times)} at {len(seed.organisation_ids)} organisations: "
            f"{statistics.median(times):.1f} s",
            flush=True,
        )
    finally:
        parent.send(("stop", None))
        process.join(timeout=60)
        if process.is_alive():
            process.terminate()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--organisations", type=int, nargs="+", default=[50, 1000])
    parser.add_argument("--users-per-org", type=int, default=4)
    parser.add_argument("--contacts-per-org", type=int, default=20)
    parser.add_argument("--password-iterations", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for organisations in args.organisations:
        _run_scale(
            Scale(
                organisations,
                args.users_per_org,
                args.contacts_per_org,
                args.password_iterations,
            ),
            args.repeat,
        )


if __name__ == "__main__":
    main()
