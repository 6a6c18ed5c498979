"""The ``contactsync`` console command."""

from __future__ import annotations

import argparse
import asyncio
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``contactsync demo`` | ``contactsync devstack up [...]``."""
    parser = argparse.ArgumentParser(prog="contactsync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="sync demo data from the embedded local stack")
    demo.add_argument("--contacts", type=int, default=200, help="contacts per organisation")
    devstack = commands.add_parser("devstack", help="run the embedded local Supabase stack")
    devstack.add_argument("devstack_args", nargs=argparse.REMAINDER,
                          help="e.g. `up --contacts 500`")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return asyncio.run(run_demo(contacts_per_org=args.contacts))
    from .devstack.cli import main as devstack_main

    return devstack_main(args.devstack_args)


if __name__ == "__main__":
    sys.exit(main())
