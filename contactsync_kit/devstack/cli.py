"""``python -m contactsync_kit.devstack up``: run a seeded local stack until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .postgrest_binary import PostgrestNotFound
from .stack import DevStack

__all__ = ["cli_up", "main"]

# Turns SIGTERM into a clean shutdown; writes the RLS audit users file.
__io__ = "disk, process"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m contactsync_kit.devstack",
        description="Local Supabase-compatible stack (PostgreSQL + PostgREST + auth).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack, seed a demo, run until Ctrl-C")
    up.add_argument(
        "--contacts",
        type=int,
        default=600,
        help="contacts in total, spread over the organisations (default 600)",
    )
    up.add_argument("--organisations", type=int, default=3)
    up.add_argument("--chapters-per-org", type=int, default=2)
    up.add_argument("--notes-per-contact", type=int, default=3)
    up.add_argument("--seed", type=int, default=42)
    up.add_argument("--max-rows", type=int, default=1000, help="PostgREST db-max-rows")
    up.add_argument("--jwt-lifetime", type=int, default=3600, help="access token lifetime, s")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the database here (default: a temp dir, deleted on exit)",
    )
    up.add_argument("--no-seed", action="store_true", help="start with empty tables")
    up.add_argument(
        "--users-file",
        type=Path,
        default=None,
        help="where to write the RLS audit's test users (default: "
        "~/.cache/contactsync_kit/devstack/rls-audit-users.json)",
    )
    return parser


def _seed_demo(stack: DevStack, args: argparse.Namespace) -> None:
    per_org, extra = divmod(args.contacts, max(args.organisations, 1))
    counts = [per_org + (1 if i < extra else 0) for i in range(args.organisations)]
    result = stack.seed(
        organisations=args.organisations,
        chapters_per_org=args.chapters_per_org,
        contacts_per_org=counts,
        notes_per_contact=args.notes_per_contact,
        seed=args.seed,
    )
    print(
        f"seeded {result.contact_count} contacts, {result.note_count} notes, "
        f"{result.assignment_count} assignments in {result.duration_s:.2f} s"
    )


def _print_connection(stack: DevStack) -> None:
    print()
    print(f"  SUPABASE_URL       {stack.url}")
    print(f"  SUPABASE_ANON_KEY  {stack.anon_key}")
    print(f"  service_role key   {stack.service_role_key}  (tests only; never in apps)")
    print(f"  database (psql)    {stack.database_url}")
    for seeded in stack.seeds:
        print()
        for org in seeded.organisations:
            print(f"  organisation {org.id}  {org.name}  ({org.contact_count} contacts)")
        print()
        print("  demo logins:")
        for user in seeded.users:
            print(f"    {user.label:<18} {user.email:<34} {user.password}")


def _print_exports(stack: DevStack, users_file: Path | None) -> None:
    """An `export …` block for notebooks 02 and 03, and the audit users file it names."""
    exports = {
        "SUPABASE_URL": stack.url,
        "SUPABASE_ANON_KEY": stack.anon_key,
        "SUPABASE_DB_URL": stack.database_url,
    }
    users = [u for seeded in stack.seeds for u in seeded.users]
    if users:
        login = next((u for u in users if u.label == "org1-admin"), users[0])
        path = users_file or (
            Path.home() / ".cache" / "contactsync_kit" / "devstack" / "rls-audit-users.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)  # passwords: private before they are written
        path.write_text(
            json.dumps(
                [
                    {
                        "email": u.email,
                        "password": u.password,
                        "label": u.label,
                        "memberships": [
                            [m.organisation_id, m.chapter_id, m.role] for m in u.memberships
                        ],
                    }
                    for u in users
                ],
                indent=2,
            )
        )
        exports.update(
            SUPABASE_EMAIL=login.email,
            SUPABASE_PASSWORD=login.password,
            SUPABASE_ORGANISATION_ID=login.organisation_ids[0],
            RLS_AUDIT_USERS=str(path),
        )
    print("  # paste into another terminal, then `make lab`:")
    print("  export " + " \\\n         ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items()))


def cli_up(argv: Sequence[str] | None = None) -> int:
    """Start a stack, seed it, print how to connect, and block until SIGINT/SIGTERM.

    ``argv`` are the options after ``up`` (e.g. ``["--contacts", "2500"]``).
    Returns the process exit code.
    """
    args = _parser().parse_args(["up", *(sys.argv[2:] if argv is None else argv)])
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}
    if in_main_thread:
        # Handlers first: a Ctrl-C during start-up must still shut down cleanly.
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        try:
            stack = DevStack.start(
                max_rows=args.max_rows, data_dir=args.data_dir, jwt_lifetime_s=args.jwt_lifetime
            )
        except PostgrestNotFound as exc:
            print(exc, file=sys.stderr)
            return 1
        with stack:
            print(f"contactsync devstack up in {stack.startup_s:.2f} s")
            if not args.no_seed and not stop.is_set():
                _seed_demo(stack, args)
            print()
            _print_exports(stack, args.users_file)
            _print_connection(stack)
            print("\nPress Ctrl-C to stop.", flush=True)
            while not stop.wait(0.5):  # a timed wait lets signal handlers run
                pass
            print("stopping...", flush=True)
        return 0
    except KeyboardInterrupt:  # not in the main thread, or before the handlers were set
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m contactsync_kit.devstack``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "up":
        _parser().parse_args(args or ["--help"])
        return 2
    return cli_up(args[1:])
