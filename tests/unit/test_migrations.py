"""The app's SQL migrations: one source (the package), exported for the Supabase CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from contactsync_kit.cli import DEFAULT_MIGRATIONS_DIR, main
from contactsync_kit.devstack.migrations import (
    LOCAL_ONLY,
    Migration,
    app_migrations,
    migrations,
    supabase_layout,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_supabase_migrations_are_exactly_what_export_writes() -> None:
    committed = {
        path.name: path.read_text(encoding="utf-8")
        for path in (REPO / DEFAULT_MIGRATIONS_DIR).glob("*.sql")
    }
    assert committed == supabase_layout(), (
        "supabase/migrations is out of date: run `contactsync migrations export`"
    )


def test_every_numbered_file_but_the_local_stand_in_is_an_app_migration() -> None:
    names = [m.file_name for m in migrations()]
    assert set(names) >= LOCAL_ONLY
    assert [m.file_name for m in app_migrations()] == [n for n in names if n not in LOCAL_ONLY]
    assert [m.number for m in migrations()] == sorted(m.number for m in migrations())
    for migration in app_migrations():
        upper = migration.sql.upper()
        assert "CREATE ROLE" not in upper, migration.file_name
        assert "CREATE TABLE IF NOT EXISTS AUTH." not in upper, migration.file_name


@pytest.mark.parametrize(
    ("file_name", "exported"),
    [
        ("0002_app_schema.sql", "20260101000002_app_schema.sql"),
        ("0004_audit_helpers.sql", "20260101000004_audit_helpers.sql"),
        ("0123_later.sql", "20260101000123_later.sql"),
    ],
)
def test_the_supabase_timestamp_follows_from_the_number(file_name: str, exported: str) -> None:
    assert Migration(file_name, "").supabase_file_name == exported


def test_a_badly_named_migration_is_refused() -> None:
    with pytest.raises(ValueError, match="NNNN_lower_snake"):
        _ = Migration("2_Schema.sql", "").number


def test_the_export_command_writes_every_app_migration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrations", "export", str(tmp_path / "out")]) == 0
    written = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir()}
    assert written == supabase_layout()
    assert not any(name.endswith(tuple(LOCAL_ONLY)) for name in written)
    assert capsys.readouterr().out.count(".sql") == len(written)
