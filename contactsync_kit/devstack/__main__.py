"""``python -m contactsync_kit.devstack up [--contacts N] [--max-rows N] ...``"""

from .cli import main

raise SystemExit(main())
