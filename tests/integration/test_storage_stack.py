"""Storage against the real stack: server migrations without a gap, and the local cache as
one person's, erased at logout, with real tokens and real synced data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from contactsync_kit import SyncSuccess, start_session
from contactsync_kit.devstack import DevStack, SeedResult, migration_files

pytestmark = pytest.mark.integration

# Supabase's default privileges on a new project: everything on new public objects goes to
# anon and authenticated too. The local stack's 0001 does not set them; here they are.
SUPABASE_DEFAULT_PRIVILEGES = [
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON {kind} "
    "TO anon, authenticated, service_role"
    for kind in ("TABLES", "SEQUENCES", "FUNCTIONS")
]
USER, ORG, CHAPTER, CONTACT, NOTE, ASSIGNMENT = (str(uuid.UUID(int=i)) for i in range(1, 7))
# One planted row per app table, inserted as superuser as soon as the table exists.
PLANTED = {
    "auth.users": (
        "INSERT INTO auth.users (id, email, encrypted_password) VALUES (%s, %s, 'x')",
        (USER, "planted@example.org"),
    ),
    "public.organisations": (
        "INSERT INTO public.organisations (id, name) VALUES (%s, 'Org')",
        (ORG,),
    ),
    "public.chapters": (
        "INSERT INTO public.chapters (id, organisation_id, name) VALUES (%s, %s, 'Chapter')",
        (CHAPTER, ORG),
    ),
    "public.organisation_members": (
        "INSERT INTO public.organisation_members (user_id, organisation_id, role) "
        "VALUES (%s, %s, 'admin')",
        (USER, ORG),
    ),
    "public.contacts": (
        "INSERT INTO public.contacts (id, organisation_id, full_name) "
        "VALUES (%s, %s, 'Planted Person')",
        (CONTACT, ORG),
    ),
    "public.notes": (
        "INSERT INTO public.notes (id, contact_id, organisation_id, body) "
        "VALUES (%s, %s, %s, 'planted note')",
        (NOTE, CONTACT, ORG),
    ),
    "public.contact_assignments": (
        "INSERT INTO public.contact_assignments (id, contact_id, organisation_id, assignee_id) "
        "VALUES (%s, %s, %s, %s)",
        (ASSIGNMENT, CONTACT, ORG, USER),
    ),
}


@pytest.fixture
def fresh_database(stack: DevStack) -> Iterator[psycopg.Connection]:
    """An empty database in the stack's PostgreSQL cluster (the roles are cluster-wide)."""
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    stack.sql(f"CREATE DATABASE {name}")
    conn = psycopg.connect(
        psycopg.conninfo.make_conninfo(stack.database_url, dbname=name), autocommit=True
    )
    try:
        yield conn
    finally:
        conn.close()
        stack.sql(f"DROP DATABASE {name} WITH (FORCE)")


def plant_rows(conn: psycopg.Connection) -> None:
    for table, (statement, params) in PLANTED.items():
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
            continue
        if conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
        ).fetchone() == (0,):
            conn.execute(statement, params)


def rows_readable_by(conn: psycopg.Connection, role: str) -> dict[str, int]:
    """Per public table, rows `role` can read (tables it may not read at all are left out)."""
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
    ]
    readable: dict[str, int] = {}
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        for table in tables:
            try:
                with conn.transaction():
                    count = conn.execute(
                        sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table))
                    ).fetchone()
            except errors.InsufficientPrivilege:
                continue
            readable[table] = count[0] if count else 0
    return readable


def test_anon_can_read_nothing_after_each_migration(fresh_database: psycopg.Connection) -> None:
    conn = fresh_database
    for statement in SUPABASE_DEFAULT_PRIVILEGES:
        conn.execute(statement)
    steps = []
    for name, text in migration_files():
        with conn.transaction():  # one migration, one transaction
            conn.execute(text)
        plant_rows(conn)
        public = [
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        # Not vacuous: every public table holds a row the superuser can see.
        assert not [t for t in public if f"public.{t}" not in PLANTED], name
        steps.append((name, sorted(public)))
        leaked = {t: n for t, n in rows_readable_by(conn, "anon").items() if n}
        assert leaked == {}, f"after {name}, anon reads {leaked}"
        # Without a user id (no JWT) the authenticated role reads nothing either.
        leaked = {t: n for t, n in rows_readable_by(conn, "authenticated").items() if n}
        assert leaked == {}, f"after {name}, authenticated without a user reads {leaked}"
    assert len(steps) >= 3 and len(steps[-1][1]) == 6


def test_every_app_table_is_created_with_rls_enabled(fresh_database: psycopg.Connection) -> None:
    """At each step, every public table already has RLS on and no grant to anon."""
    conn = fresh_database
    for statement in SUPABASE_DEFAULT_PRIVILEGES:
        conn.execute(statement)
    for name, text in migration_files():
        with conn.transaction():
            conn.execute(text)
        open_tables = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND (NOT c.relrowsecurity "
            "OR has_table_privilege('anon', c.oid, 'SELECT,INSERT,UPDATE,DELETE'))"
        ).fetchall()
        assert open_tables == [], f"after {name}: {open_tables}"


async def test_the_next_user_never_sees_the_last_users_cache_and_logout_erases_it(
    stack: DevStack, seeded: SeedResult, tmp_path: Path
) -> None:
    path = tmp_path / "shared-machine" / "cache.sqlite3"
    alice, bob = seeded.user("org1-admin"), seeded.user("org2-admin")
    org = alice.organisation_ids[0]
    first = await start_session(
        stack.url, stack.anon_key, email=alice.email, password=alice.password, cache_path=path
    )
    result = await first.repository.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncSuccess) and result.items_synced > 0
    names = [
        row[0]
        for row in stack.sql("SELECT full_name FROM contacts WHERE organisation_id = %s", org)
    ]
    notes = [row[0] for row in stack.sql("SELECT body FROM notes WHERE organisation_id = %s", org)]
    assert first.cache.counts(org)["contacts"] == len(names)
    await first.aclose()  # the kernel restarts without signing out

    second = await start_session(
        stack.url, stack.anon_key, email=bob.email, password=bob.password, cache_path=path
    )
    assert second.cache.counts() == {"contacts": 0, "notes": 0, "contact_assignments": 0}
    assert second.cache.overview().height == 0
    owner = second.cache.owner()
    assert owner is not None and owner.user_id == bob.user_id
    data = b"".join(f.read_bytes() for f in path.parent.iterdir() if f.is_file())
    assert not [v for v in names + notes if v.encode() in data]

    await second.repository.sync_contacts_for_organisation(bob.organisation_ids[0])
    await second.sign_out()
    assert [f.name for f in path.parent.iterdir()] == []
    await second.aclose()
