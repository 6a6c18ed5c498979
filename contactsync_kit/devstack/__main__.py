"""Run the local stack from the shell.

``python -m contactsync_kit.devstack up [--contacts N] [--max-rows N] ...``
"""

from .cli import main

__io__ = "none"

raise SystemExit(main())
