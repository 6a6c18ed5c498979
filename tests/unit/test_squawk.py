"""`make lint` runs squawk over supabase/migrations/: the migrations pass with the warnings
.squawk.toml accepts, and a migration squawk exists for (a blocking rewrite) fails.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQUAWK = ROOT / "node_modules" / ".bin" / "squawk"


def squawk(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SQUAWK), *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_migrations_pass_squawk() -> None:
    migrations = sorted((ROOT / "supabase" / "migrations").glob("*.sql"))
    assert migrations
    result = squawk(*migrations)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_blocking_migration_fails_squawk(tmp_path: Path) -> None:
    bad = tmp_path / "20990101000000_bad.sql"
    bad.write_text(
        "ALTER TABLE public.contacts ALTER COLUMN full_name TYPE varchar(20);\n",
        encoding="utf-8",
    )
    result = squawk(bad)
    assert result.returncode != 0
    assert "changing-column-type" in result.stdout + result.stderr
