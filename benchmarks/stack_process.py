"""The local stack in its own process, for `make bench`: started, pinned and metered by role.

``python -m contactsync_kit.devstack up --no-seed`` runs as a subprocess (PostgreSQL is its
daemon, PostgREST its child, the gateway and the auth stand-in its own threads), so nothing the
server does is counted in, or competes inside, the benchmark's processes. CPU seconds are read
from ``/proc/<pid>/stat`` per role:

* ``postgres``: the postmaster, every process under it, and its exited children (``cutime``);
* ``postgrest``: the PostgREST process (all its threads);
* ``gateway``: the ``devstack up`` process itself (the aiohttp gateway and the auth stand-in).

`pin` sets the CPU affinity of every thread of every server process (new PostgreSQL backends
inherit the postmaster's).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

__all__ = ["ROLES", "StackProcess", "cpu_seconds", "pin_process"]

ROLES = ("postgres", "postgrest", "gateway")
_TICKS = os.sysconf("SC_CLK_TCK")
_EXPORT = re.compile(r"\b(SUPABASE_URL|SUPABASE_ANON_KEY|SUPABASE_DB_URL)=(\S+)")


def _stat(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of `pid` (all threads), plus its reaped children's."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the ")": state is field 3, so utime (14) .. cstime (17) are at 11 .. 14.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid`, every process under it, and their reaped children."""
    total = _stat(pid, children=True)
    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return total
    return total + sum(_stat(child.pid) for child in below)


def pin_process(pid: int, cpus: set[int]) -> None:
    """Set the affinity of every thread of `pid` (affinity is per thread on Linux)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return
    for tid in tids:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # a thread that ended
            os.sched_setaffinity(tid, cpus)


@dataclass
class _Pids:
    gateway: int
    postgrest: int
    postgres: int


class StackProcess:
    """``contactsync devstack up`` as a subprocess; `url`, `anon_key`, `database_url` to use it."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="contactsync-bench-")
        self._log = open(Path(self._folder.name) / "stack.log", "w+b")  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "contactsync_kit.devstack",
                "up",
                "--no-seed",
                "--users-file",
                str(Path(self._folder.name) / "users.json"),
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        exports = self._read_until_ready()
        self.url = exports["SUPABASE_URL"]
        self.anon_key = exports["SUPABASE_ANON_KEY"]
        self.database_url = exports["SUPABASE_DB_URL"]
        self.pids = self._find_pids()

    def _read_until_ready(self) -> dict[str, str]:
        assert self._process.stdout is not None
        exports: dict[str, str] = {}
        for raw in self._process.stdout:
            line = raw.decode()
            for name, value in _EXPORT.findall(line):
                exports[name] = shlex.split(value)[0]
            if line.startswith("Press Ctrl-C"):
                return exports
        self._log.seek(0)
        raise RuntimeError(f"the stack did not start: {self._log.read().decode()[-2000:]}")

    def _find_pids(self) -> _Pids:
        gateway = psutil.Process(self._process.pid)
        postgrest = next(c for c in gateway.children() if "postgrest" in c.name())
        socket_dir = self.database_url.rpartition("host=")[2]
        postmaster = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "-D" in p.info["cmdline"] and socket_dir in p.info["cmdline"]
        )
        return _Pids(gateway.pid, postgrest.pid, postmaster.pid)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far, by role."""
        return {
            "postgres": cpu_seconds(self.pids.postgres),
            "postgrest": cpu_seconds(self.pids.postgrest),
            "gateway": _stat(self.pids.gateway),
        }

    def pin(self, cpus: set[int]) -> None:
        """Run every server process's threads on `cpus` only."""
        for pid in (self.pids.gateway, self.pids.postgrest, self.pids.postgres):
            pin_process(pid, cpus)
            try:
                below = psutil.Process(pid).children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for child in below:
                pin_process(child.pid, cpus)

    def close(self) -> None:
        """Stop the stack (SIGTERM: its clean shutdown) and delete its folder."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()
        self._folder.cleanup()

    def __enter__(self) -> StackProcess:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":  # a smoke check: start, show the roles' CPU, stop
    with StackProcess() as stack:
        print(stack.url, stack.pids)
        time.sleep(1)
        print(stack.cpu())
