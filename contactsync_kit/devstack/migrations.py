"""The packaged SQL migrations, and their export to the Supabase CLI layout.

The numbered files in ``contactsync_kit/devstack/sql`` (package data) are the one source of
truth. Every file is an **app migration**, meant to run unchanged on a real Supabase project,
unless it is listed in `LOCAL_ONLY`: those stand in, on the local stack only, for what
Supabase itself provides (its roles and the ``auth`` schema).

`export_supabase_migrations` writes the app migrations as
``supabase/migrations/<timestamp>_<name>.sql`` so ``supabase db push`` applies them; the
timestamp is derived from the file's number (``0002_app_schema.sql`` becomes
``20260101000002_app_schema.sql``), so exporting twice gives the same files.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "LOCAL_ONLY",
    "Migration",
    "app_migrations",
    "expected_surface_file",
    "export_supabase_migrations",
    "migration_files",
    "migrations",
    "supabase_layout",
]

# Reads the packaged SQL and exports it as Supabase CLI files.
__io__ = "disk"

LOCAL_ONLY: Final = frozenset({"0001_supabase_roles_and_auth.sql"})
"""Migrations for the local stack only: a real Supabase project already has what they make."""

_NAME: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Supabase CLI versions are 14-digit timestamps; the migration number fills the last six.
_TIMESTAMP_BASE: Final = 20260101_000000


@dataclass(frozen=True)
class Migration:
    """One packaged migration file."""

    file_name: str  # e.g. "0002_app_schema.sql"
    sql: str

    @property
    def number(self) -> int:
        """The leading number, e.g. 2."""
        return int(_parts(self.file_name)[0])

    @property
    def name(self) -> str:
        """The name after the number, e.g. ``"app_schema"``."""
        return _parts(self.file_name)[1]

    @property
    def is_app(self) -> bool:
        """True if the migration belongs on a real Supabase project (not in LOCAL_ONLY)."""
        return self.file_name not in LOCAL_ONLY

    @property
    def supabase_file_name(self) -> str:
        """The Supabase CLI file name, e.g. ``"20260101000002_app_schema.sql"``."""
        return f"{_TIMESTAMP_BASE + self.number}_{self.name}.sql"


def _parts(file_name: str) -> tuple[str, str]:
    match = _NAME.match(file_name)
    if match is None:
        raise ValueError(f"migration file {file_name!r} is not named NNNN_lower_snake.sql")
    return match.group(1), match.group(2)


def migrations() -> list[Migration]:
    """Every packaged migration, in the order they are applied (by number)."""
    folder = importlib.resources.files("contactsync_kit.devstack").joinpath("sql")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    found = [Migration(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]
    numbers = [m.number for m in found]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"two migrations share a number: {names}")
    return found


def expected_surface_file() -> Path:
    """The exposed surface this project accepts (the RLS audit's ``expected_surface``).

    It lives beside the migrations that make that surface, so a migration that exposes a new
    object and the line accepting it change together.
    """
    return Path(str(importlib.resources.files("contactsync_kit.devstack").joinpath("sql"))) / (
        "exposed_surface.txt"
    )


def migration_files() -> list[tuple[str, str]]:
    """The packaged SQL migrations as ``(file name, SQL)``, in the order they are applied.

    Files in `LOCAL_ONLY` (``0001_*``: Supabase's roles and a minimal ``auth`` schema)
    are for the local stack only; the others are meant to run unchanged on a real project.
    """
    return [(m.file_name, m.sql) for m in migrations()]


def app_migrations() -> list[Migration]:
    """The migrations that belong on a real Supabase project, in order."""
    return [m for m in migrations() if m.is_app]


def supabase_layout() -> dict[str, str]:
    """Supabase CLI file name -> SQL for every app migration (what an export writes)."""
    return {m.supabase_file_name: m.sql for m in app_migrations()}


def export_supabase_migrations(folder: str | Path) -> list[Path]:
    """Write the app migrations into ``folder`` (created if missing) in the Supabase layout.

    Returns the paths written. Files already there are overwritten; other files are left.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, sql in supabase_layout().items():
        path = target / file_name
        path.write_text(sql, encoding="utf-8")
        written.append(path)
    return written
