"""An embedded local Supabase-compatible stack: PostgreSQL + PostgREST + auth + gateway.

``DevStack.start()`` gives a stack an unmodified supabase-py client can talk to at
``stack.url`` (REST at ``/rest/v1``, auth at ``/auth/v1``), with the app schema and RLS
policies from the packaged SQL migrations (exported for the Supabase CLI by
``contactsync migrations export``), a deterministic seeder and fault controls. The
auth part is a small stand-in for Supabase Auth that exists only for local use.

Importing this package starts nothing.
"""

from __future__ import annotations

from ..extras import require_extra

require_extra(__name__, "devstack")

from .cli import cli_up
from .gateway import Faults, RecordedRequest, RequestLog
from .migrations import (
    LOCAL_ONLY,
    expected_surface_file,
    export_supabase_migrations,
    migration_files,
)
from .postgrest_binary import PostgrestNotFound, find_postgrest, install_postgrest
from .seed import (
    DEMO_PASSWORD,
    Membership,
    SeedConflict,
    SeededOrganisation,
    SeededUser,
    SeedResult,
)
from .stack import DevStack

__all__ = [
    "DEMO_PASSWORD",
    "LOCAL_ONLY",
    "DevStack",
    "Faults",
    "Membership",
    "PostgrestNotFound",
    "RecordedRequest",
    "RequestLog",
    "SeedConflict",
    "SeedResult",
    "SeededOrganisation",
    "SeededUser",
    "cli_up",
    "expected_surface_file",
    "export_supabase_migrations",
    "find_postgrest",
    "install_postgrest",
    "migration_files",
]

__io__ = "none"
