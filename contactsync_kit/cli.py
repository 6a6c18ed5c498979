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
    """``contactsync demo`` | ``devstack up [...]`` | ``migrations export [DIR]``."""
    parser = argparse.ArgumentParser(prog="contactsync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="sync demo data from the embedded local stack")
    demo.add_argument("--contacts", type=int, default=200, help="contacts per organisation")
    devstack = commands.add_parser("devstack", help="run the embedded local Supabase stack")
    devstack.add_argument("devstack_args", nargs=argparse.REMAINDER,
                          help="e.g. `up --contacts 500`")
    migrations = commands.add_parser("migrations", help="the app's SQL migrations")
    migration_commands = migrations.add_subparsers(dest="migrations_command", required=True)
    export = migration_commands.add_parser(
        "export", help="write the app migrations in the Supabase CLI layout (for db push)")
    export.add_argument("dir", nargs="?", default=DEFAULT_MIGRATIONS_DIR,
                        help=f"target folder (default {DEFAULT_MIGRATIONS_DIR})")
    args = parser.parse_args(argv)
    if args.command == "migrations":
        return _export_migrations(args.dir)
    if args.command == "demo":
        from .demo import run_demo

        return asyncio.run(run_demo(contacts_per_org=args.contacts))
    from .devstack.cli import main as devstack_main

    return devstack_main(args.devstack_args)


if __name__ == "__main__":
    sys.exit(main())
