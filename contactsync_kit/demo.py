"""Demos on the embedded local stack.

`make demo` runs a real sync and prints it; `console_demo` gives the support console's
kernels one shared demo stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .bootstrap import default_cache_path, start_session
from .cache_files import private_folder
from .errors import SessionEndReason
from .results import SyncResult
from .schemas import describe_rows

__all__ = ["ConsoleDemo", "console_demo", "console_demo_folder", "format_result", "run_demo"]

#: How long a kernel waits for the shared demo stack to come up (a first PostgreSQL start).
_START_TIMEOUT_S = 180.0

# The shared demo stack runs as its own process, with a state file and the cache folder.
__io__ = "disk, process"


def format_result(result: SyncResult, name: str) -> str:
    """A SyncResult as the few lines a person reads."""
    if result.error is not None:
        return f"  {name}: FAILED [{result.error.kind}] {result.error.message}"
    t = result.timings
    return (
        f"  {name}: {describe_rows(result.rows_synced)} in {result.duration_ms} ms "
        f"(fetch {t.fetch_ms} / map {t.map_ms} / write {t.write_ms} ms, {result.pages} page(s))"
    )


async def run_demo(*, contacts_per_org: int = 200, out: Callable[[str], None] = print) -> int:
    """Start the local stack, seed it, sign in as a demo user, sync, show, sign out.

    Returns a process exit code: 0 when every sync succeeded and the cache matches.
    """
    from .devstack import DevStack  # the stack's dependencies load only when it is used

    out("Starting the embedded local Supabase stack (PostgreSQL 18 + PostgREST 12)...")
    with DevStack.start() as stack, tempfile.TemporaryDirectory() as workdir:
        seed = stack.seed(
            organisations=3,
            chapters_per_org=2,
            contacts_per_org=contacts_per_org,
            notes_per_contact=3,
            assignments_per_contact=1,
            seed=7,
        )
        out(
            f"  stack at {stack.url}; seeded {seed.contact_count} contacts, {seed.note_count} "
            f"notes, {seed.assignment_count} assignments in {seed.duration_s:.2f} s"
        )
        user = seed.user("multi-org")
        out(f"Signing in as {user.email} (member of {len(user.memberships)} organisations)...")
        session = await start_session(
            stack.url,
            stack.anon_key,
            email=user.email,
            password=user.password,
            cache_path=Path(workdir) / "cache.sqlite3",
        )
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
            out(
                f"  {names.get(row['organisation_id'], row['organisation_id'])}: "
                f"{describe_rows(row)}, last synced "
                f"{row['last_synced_at']:%Y-%m-%d %H:%M:%S} UTC"
            )
        removed = await session.sign_out()
        out(f"Signed out; the cache was wiped: {removed}")
        ok = ok and session.ended is SessionEndReason.SIGNED_OUT
        await session.aclose()
    return 0 if ok else 1


@dataclass(frozen=True)
class ConsoleDemo:
    """Where the console's demo stack is and whom to sign in as."""

    url: str
    anon_key: str
    email: str
    password: str
    cache_path: str
    pid: int


def console_demo_folder(owner_pid: int | None = None) -> Path:
    """The state folder of the demo stack shared by one console server's kernels.

    Under the cache folder (``$CONTACTSYNC_CACHE``'s, or ``~/.cache/contactsync_kit``), one
    per console server: `owner_pid` is the server's process id (a kernel's parent).
    """
    owner = owner_pid if owner_pid is not None else os.getppid()
    location = default_cache_path()
    base = location if location.is_dir() or not location.suffix else location.parent
    return base / "console-demo" / f"server-{owner}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state(folder: Path) -> ConsoleDemo | None:
    try:
        state = ConsoleDemo(**json.loads((folder / "state.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if _alive(state.pid) else None


def console_demo(
    owner_pid: int | None = None, *, timeout_s: float = _START_TIMEOUT_S
) -> ConsoleDemo:
    """The console server's demo stack: started by the first kernel, reused by the others.

    A lock file serialises kernels starting at once; the stack runs in its own process
    (``python -m contactsync_kit.demo serve``) so it outlives a culled kernel, and stops,
    removing its folder, when the console server (`owner_pid`, default this kernel's parent)
    exits. Every kernel gets the same demo login and cache file.
    """
    owner = owner_pid if owner_pid is not None else os.getppid()
    folder = console_demo_folder(owner)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (folder / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _read_state(folder)
        if state is not None:
            return state
        log = (folder / "stack.log").open("ab")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "contactsync_kit.demo",
                "serve",
                "--folder",
                str(folder),
                "--owner-pid",
                str(owner),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = _read_state(folder)
            if state is not None:
                return state
            if process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"the console's demo stack did not start; see {folder / 'stack.log'}")


def _serve(folder: Path, owner_pid: int) -> int:
    """Run the shared demo stack until the console server `owner_pid` exits (or SIGTERM)."""
    from .devstack import DevStack

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        with DevStack.start() as stack:
            seed = stack.seed(organisations=3, chapters_per_org=2, contacts_per_org=60)
            user = seed.user("multi-org")
            private_folder(folder / "caches")
            state = ConsoleDemo(
                url=stack.url,
                anon_key=stack.anon_key,
                email=user.email,
                password=user.password,
                # A folder: each person signing in on this console gets their own file.
                cache_path=str(folder / "caches"),
                pid=os.getpid(),
            )
            staged = folder / "state.json.new"
            staged.write_text(json.dumps(asdict(state)))
            staged.replace(folder / "state.json")  # whole or absent: kernels poll for it
            while not stop["now"] and _alive(owner_pid):
                time.sleep(1.0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``contactsync demo`` and ``python -m contactsync_kit.demo serve``."""
    parser = argparse.ArgumentParser(prog="python -m contactsync_kit.demo")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the console's shared demo stack")
    serve.add_argument("--folder", type=Path, required=True)
    serve.add_argument("--owner-pid", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.folder, args.owner_pid)
    return asyncio.run(run_demo())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
