"""`make bench`: a full sync against the fetch floor, the client measured apart from the server.

The local stack (PostgreSQL + PostgREST + the gateway) runs in a process of its own
(`benchmarks.stack_process`); every client run is a fresh process of its own
(`benchmarks.sync_client`). For N contacts (3 notes and 1 assignment each) it reports, for

* the kit: the public repository into a fresh file cache (``secure_delete`` on, as always);
* the sequential fetch floor: the same embedded select as the same user, keyset pages of
  1,000 one after another with plain httpx, only read;
* the parallel floor: the same pages, 4 at a time;
* at small sizes, the naive way the seed warns against: N+1 queries, a commit per record;

the wall time, the client process's CPU seconds, and the server's CPU seconds by role
(postgres, postgrest, gateway), in two setups:

* ``shared``: server and client may use both cores;
* ``pinned``: the server's processes on core 0, the client on core 1.

Medians of interleaved runs (each round runs every setup and every client, so all see the
same machine); the kit's peak RSS growth is the largest of its runs. Speed is measured here,
never asserted in tests: this machine is noisy. ``BENCH_QUICK=1`` (or ``--quick``) runs 200
and 20,000 contacts, 3 rounds. The kit's CPU is also split by thread (the event loop: HTTP;
``contactsync-map``: mapping and hashing; ``asyncio_*``: SQLite writes and the commit;
``polars-*``: polars' own pool).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from contactsync_kit.devstack.admin import StackDatabase

from .stack_process import ROLES, StackProcess

CLIENTS = ("floor", "kit", "parallel")
SETUPS: dict[str, tuple[set[int] | None, set[int] | None]] = {
    # setup -> (server cores, client cores); None: every core
    "shared": (None, None),
    "pinned": ({0}, {1}),
}
TARGETS = {"cpu_per_100k": 5.0, "rss_mib": 100.0, "shared": 1.5, "pinned": 1.4}


@dataclass
class Runs:
    """One client's runs in one setup."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    rss_file: list[float] = field(default_factory=list)  # of `rss`: file-backed (library code)
    server: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROLES})
    threads: list[dict[str, float]] = field(default_factory=list)  # CPU-s by thread, per run

    def median(self, values: list[float]) -> float:
        return statistics.median(values)


def _all_cores() -> set[int]:
    return set(range(os.cpu_count() or 1))


def client_run(spec: dict[str, Any], cores: set[int] | None) -> dict[str, Any]:
    """One run of `spec['runner']` in a fresh process on `cores`."""
    command = [sys.executable, "-m", "benchmarks.sync_client", json.dumps(spec)]
    if cores is not None:
        command = ["taskset", "-c", ",".join(map(str, sorted(cores))), *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{spec['runner']} run failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_size(
    stack: StackProcess, database: StackDatabase, size: int, index: int, repeats: int, naive: bool
) -> tuple[dict[tuple[str, str], Runs], float | None]:
    seeded = database.seed(
        organisations=1,
        chapters_per_org=1,
        users_per_org=1,
        contacts_per_org=size,
        notes_per_contact=3,
        assignments_per_contact=1,
        seed=9000 + index,
    )
    user = seeded.user("org1-admin")
    base = {
        "url": stack.url,
        "anon_key": stack.anon_key,
        "email": user.email,
        "password": user.password,
        "organisation_id": seeded.organisation_ids[0],
    }
    print(f"\n{size:,} contacts x (3 notes + 1 assignment), {repeats} rounds:", flush=True)
    client_run({**base, "runner": "floor"}, None)  # warm the server's caches
    runs = {(setup, client): Runs() for setup in SETUPS for client in CLIENTS}
    for attempt in range(repeats):
        for setup, (server_cores, client_cores) in SETUPS.items():
            stack.pin(server_cores or _all_cores())
            line = []
            for client in CLIENTS:
                before = stack.cpu()
                result = client_run(
                    {**base, "runner": client, "threads": client == "kit"}, client_cores
                )
                after = stack.cpu()
                if client != "parallel":
                    assert result["items"] == size, (client, result["items"], size)
                entry = runs[setup, client]
                entry.wall.append(result["wall"])
                entry.cpu.append(result["cpu"])
                entry.rss.append(result["rss"])
                entry.rss_file.append(result["rss_file"])
                if result.get("threads"):
                    entry.threads.append(result["threads"])
                for role in ROLES:
                    entry.server[role].append(after[role] - before[role])
                line.append(
                    f"{client} {result['wall'] * 1000:,.0f} ms / {result['cpu']:.2f} cpu-s"
                    + (
                        f" / +{result['rss']:.0f} MiB ({result['rss_file']:.0f} code)"
                        if client == "kit"
                        else ""
                    )
                )
            print(f"  round {attempt + 1} {setup}: " + ", ".join(line), flush=True)
    stack.pin(_all_cores())
    naive_wall = None
    if naive:
        walls = [client_run({**base, "runner": "naive"}, None)["wall"] for _ in range(3)]
        naive_wall = statistics.median(walls)
    return runs, naive_wall


def _met(value: float, target: str) -> str:
    return "met" if value <= TARGETS[target] else "NOT met"


def report(results: dict[int, tuple[dict[tuple[str, str], Runs], float | None]]) -> None:
    med = statistics.median
    print(
        "\n| contacts | setup | client | wall | client CPU-s | server CPU-s "
        "(postgres / postgrest / gateway) | kit / floor (wall) | kit RSS growth (max) "
        "| of it library code |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for size, (runs, _naive) in results.items():
        for setup in SETUPS:
            floor_wall = med(runs[setup, "floor"].wall)
            for client in CLIENTS:
                entry = runs[setup, client]
                server = " / ".join(f"{med(entry.server[r]):.2f}" for r in ROLES)
                ratio = f"{med(entry.wall) / floor_wall:.2f}" if client != "floor" else ""
                rss = code = ""
                if client == "kit":
                    rss = f"{max(entry.rss):.0f} MiB"
                    code = f"{med(entry.rss_file):.0f} MiB"
                print(
                    f"| {size:,} | {setup} | {client} | {med(entry.wall) * 1000:,.0f} ms | "
                    f"{med(entry.cpu):.2f} | {server} | {ratio} | {rss} | {code} |"
                )
    print("\nThe kit's client CPU-s by thread role (median of the runs; /proc/self/task/*/stat):")
    for size, (runs, _naive) in results.items():
        for setup in SETUPS:
            threads = runs[setup, "kit"].threads
            names = sorted({name for run in threads for name in run})
            split = {n: med([run.get(n, 0.0) for run in threads]) for n in names}
            shown = ", ".join(f"{n} {v:.2f}" for n, v in sorted(split.items(), key=lambda i: -i[1]))
            print(f"  {size:,} {setup}: {shown}")
    naive = {size: n for size, (_runs, n) in results.items() if n is not None}
    for size, wall in naive.items():
        print(f"\nnaive (N+1, a commit per record) at {size:,} contacts: {wall * 1000:,.0f} ms")
    print(
        f"\nTargets (issue 20): kit client CPU <= {TARGETS['cpu_per_100k']} s per 100,000 "
        f"contacts; kit RSS growth <= {TARGETS['rss_mib']:.0f} MiB in every run at 20,000 and "
        f"100,000; kit / floor <= {TARGETS['shared']} shared and <= {TARGETS['pinned']} "
        "pinned at 20,000 and 100,000."
    )
    for size, (runs, _naive) in results.items():
        if size < 20000:
            continue
        kit_cpu = med(runs["shared", "kit"].cpu) * 100000 / size
        rss = max(max(runs[s, "kit"].rss) for s in SETUPS)
        ratios = {s: med(runs[s, "kit"].wall) / med(runs[s, "floor"].wall) for s in SETUPS}
        verdict = [
            f"CPU {kit_cpu:.2f} s/100k {_met(kit_cpu, 'cpu_per_100k')}",
            f"RSS {rss:.0f} MiB {_met(rss, 'rss_mib')}",
            *(f"{s} {ratios[s]:.2f} {_met(ratios[s], s)}" for s in SETUPS),
        ]
        print(f"  {size:,}: " + "; ".join(verdict))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    parser.add_argument("--quick", action="store_true", default=quick)
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--naive-limit", type=int, default=200, help="largest size the slow naive variant runs at"
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or ([200, 20000] if args.quick else [200, 20000, 100000])
    repeats = args.repeats or (3 if args.quick else 5)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the pinned setup needs two cores")
    # SIGTERM as an exit, so the stack's process is stopped (the `with` below) and not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with StackProcess() as stack:
        print(
            f"local stack in its own process at {stack.url} (PostgreSQL + PostgREST 12, "
            f"db-max-rows 1000); load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        database = StackDatabase(stack.database_url)
        try:
            results = {
                size: measure_size(stack, database, size, index, repeats, size <= args.naive_limit)
                for index, size in enumerate(sizes)
            }
        finally:
            database.close()
        print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    report(results)


if __name__ == "__main__":
    main()
