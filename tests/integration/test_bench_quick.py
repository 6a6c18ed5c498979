"""`make bench`'s machinery, run small: the stack in its own process, clients apart, by role.

Runs ``python -m benchmarks.sync_benchmark --sizes 200 --repeats 1`` as `make bench` would and
checks the table it prints has every setup and client with the server's CPU split by role.
It asserts what was measured, never how fast (speed is the benchmark's to report).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(
    r"^\| 200 \| (shared|pinned) \| (floor|kit|parallel) \| [\d,]+ ms \| ([\d.]+) \| "
    r"([\d.]+) / ([\d.]+) / ([\d.]+) \|"
)


def test_the_benchmark_measures_client_and_server_apart_in_both_setups() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sync_benchmark", "--sizes", "200", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [m.groups() for line in done.stdout.splitlines() if (m := ROW.match(line))]
    assert {(setup, client) for setup, client, *_ in rows} == {
        (s, c) for s in ("shared", "pinned") for c in ("floor", "kit", "parallel")
    }
    assert all(float(cpu) > 0 for _s, _c, cpu, *_ in rows)  # each client process did work
    # The requests were served by the other process's PostgreSQL, PostgREST and gateway (a
    # single small run may fall under the kernel's 10 ms CPU tick; all of them together not).
    for role in range(3):
        assert sum(float(row[3 + role]) for row in rows) > 0, role
    assert "naive (N+1, a commit per record) at 200 contacts" in done.stdout
    # The kit's peak RSS growth, then the part of it that is library code paged in.
    assert re.search(r"\| 200 \| shared \| kit \|.*\| \d+ MiB \| \d+ MiB \|$", done.stdout, re.M)
    # The kit's CPU split by thread (at this size the event loop's is sure to pass a tick).
    split = re.search(r"^  200 shared: (.*)$", done.stdout, re.MULTILINE)
    assert split and re.search(r"event loop \(HTTP\) \d", split.group(1))
