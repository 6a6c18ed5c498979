"""The ``contactsync`` console command."""

from __future__ import annotations

import argparse
import asyncio
import sys

__all__ = ["DEFAULT_MIGRATIONS_DIR", "main"]

# Parses arguments; the commands it runs do their own I/O.
__io__ = "none"

DEFAULT_MIGRATIONS_DIR = "supabase/migrations"
"""Where the Supabase CLI looks for migrations, relative to the project root."""


def _export_migrations(folder: str) -> int:
    from .devstack.migrations import export_supabase_migrations

    for path in export_supabase_migrations(folder):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``contactsync demo`` | ``devstack up`` | ``migrations export`` | ``cache reset``."""
    parser = argparse.ArgumentParser(prog="contactsync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="sync demo data from the embedded local stack")
    demo.add_argument("--contacts", type=int, default=200, help="contacts per organisation")
    devstack = commands.add_parser("devstack", help="run the embedded local Supabase stack")
    devstack.add_argument(
        "devstack_args", nargs=argparse.REMAINDER, help="e.g. `up --contacts 500`"
    )
    migrations = commands.add_parser("migrations", help="the app's SQL migrations")
    migration_commands = migrations.add_subparsers(dest="migrations_command", required=True)
    export = migration_commands.add_parser(
        "export", help="write the app migrations in the Supabase CLI layout (for db push)"
    )
    export.add_argument(
        "dir",
        nargs="?",
        default=DEFAULT_MIGRATIONS_DIR,
        help=f"target folder (default {DEFAULT_MIGRATIONS_DIR})",
    )
    cache = commands.add_parser("cache", help="manage the local cache file")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    reset = cache_commands.add_parser(
        "reset",
        help="securely erase the cache file and its sidecars (a damaged, newer or "
        "unwanted cache); never removes a file the kit did not create",
    )
    reset.add_argument(
        "--path", help="the cache file (default: every cache in the kit's default folder)"
    )
    args = parser.parse_args(argv)
    if args.command == "migrations":
        return _export_migrations(args.dir)
    if args.command == "cache":
        return _reset_cache(args.path)
    if args.command == "demo":
        from .demo import run_demo

        return asyncio.run(run_demo(contacts_per_org=args.contacts))
    from .devstack.cli import main as devstack_main

    return devstack_main(args.devstack_args)


def _reset_cache(path: str | None) -> int:
    from pathlib import Path

    from .bootstrap import default_cache_path
    from .cache import ContactCache
    from .cache_files import CacheFileError

    target = default_cache_path() if path is None else Path(path)
    # The default folder holds one file per person: reset means all of them.
    files = sorted(target.glob("cache*.sqlite3")) if target.is_dir() else [target]
    erased: list[Path] = []
    try:
        for file in files:
            erased += ContactCache.reset(file)
    except CacheFileError as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return 2
    if not erased:
        print(f"no cache at {target}: nothing to erase")
    for file in erased:
        print(f"erased {file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
