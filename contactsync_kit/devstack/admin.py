"""Superuser access to the stack's database: migrations, SQL, users, memberships, seeding.

One autocommit psycopg connection over the unix socket, shared by the calling threads under a
lock. The superuser bypasses Row Level Security: this is for setting up and inspecting test
data, never for what a user of the app would do.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

from .migrations import migrations
from .passwords import hash_password
from .seed import DEMO_PASSWORD, SeedResult, load_seed

__all__ = ["StackDatabase"]

# psycopg to PostgreSQL over its unix socket.
__io__ = "network"

Connection = psycopg.Connection[tuple[Any, ...]]


class StackDatabase:
    """The stack's database as the superuser. Thread-safe; `close` is idempotent."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._conn: Connection | None = None
        self._lock = threading.RLock()

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.uri, autocommit=True)
        return self._conn

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def apply_migrations(self, authenticator_password: str) -> None:
        """Apply every packaged migration, each in a transaction, then set a password.

        `authenticator_password` is the one PostgREST's ``authenticator`` role logs in with.
        """
        with self._lock:
            conn = self._connection()
            for migration in migrations():
                with conn.transaction():
                    conn.execute(migration.sql)
            conn.execute(
                pgsql.SQL("ALTER ROLE authenticator WITH LOGIN PASSWORD {}").format(
                    pgsql.Literal(authenticator_password)
                )
            )

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement (autocommit) and return its rows (``[]`` if none)."""
        with self._lock, self._connection().cursor() as cur:
            cur.execute(query, params or None)
            return cur.fetchall() if cur.description is not None else []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """The connection inside one transaction, held by this thread until the block ends."""
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                yield conn

    def set_user_metadata(self, metadata: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Merge `metadata` ({user id: keys}) into the users' ``raw_user_meta_data`` in one
        statement, as GoTrue's updateUser does; return {user id: (email, the previous value,
        the new value)} so the change can be undone.
        """
        ids = list(metadata)
        rows = self.sql(
            "WITH m AS (SELECT unnest(%s::uuid[]) AS id, unnest(%s::jsonb[]) AS data), "
            "old AS (SELECT u.id, u.email, u.raw_user_meta_data FROM auth.users u "
            "JOIN m ON m.id = u.id) "
            "UPDATE auth.users u SET raw_user_meta_data = u.raw_user_meta_data || m.data "
            "FROM m, old WHERE u.id = m.id AND old.id = m.id "
            "RETURNING u.id::text, old.email, old.raw_user_meta_data, u.raw_user_meta_data",
            ids,
            [Jsonb(metadata[i]) for i in ids],
        )
        return {uid: (email, before, after) for uid, email, before, after in rows}

    def restore_user_metadata(self, previous: dict[str, Any]) -> None:
        """Put back the ``raw_user_meta_data`` values `set_user_metadata` returned."""
        if previous:
            self.sql(
                "UPDATE auth.users u SET raw_user_meta_data = m.data FROM "
                "(SELECT unnest(%s::uuid[]) AS id, unnest(%s::jsonb[]) AS data) m "
                "WHERE u.id = m.id",
                list(previous),
                [Jsonb(v[1]) for v in previous.values()],
            )

    def new_session(self, user_id: str) -> tuple[str, str]:
        """Open an ``auth.sessions`` row for ``user_id``; return ``(email, session id)``.

        Raises KeyError if there is no such user.
        """
        users = self.sql("SELECT email FROM auth.users WHERE id = %s", user_id)
        if not users:
            raise KeyError(f"no user {user_id}")
        session = self.sql(
            "INSERT INTO auth.sessions (user_id) VALUES (%s) RETURNING id::text", user_id
        )
        return str(users[0][0]), str(session[0][0])

    def create_user(
        self,
        email: str,
        password: str,
        memberships: Iterable[tuple[str, str | None, str]] = (),
        *,
        user_id: str | None = None,
    ) -> str:
        """Create an ``auth.users`` row (PBKDF2-hashed password) and memberships; return its id."""
        encoded = hash_password(password)
        with self.transaction() as conn:
            row = conn.execute(
                "INSERT INTO auth.users (id, email, encrypted_password) "
                "VALUES (coalesce(%s::uuid, gen_random_uuid()), %s, %s) RETURNING id::text",
                (user_id, email, encoded),
            ).fetchone()
            assert row is not None
            for organisation_id, chapter_id, role in memberships:
                conn.execute(
                    "INSERT INTO public.organisation_members "
                    "(user_id, organisation_id, chapter_id, role) VALUES (%s, %s, %s, %s)",
                    (row[0], organisation_id, chapter_id, role),
                )
        return str(row[0])

    def add_membership(
        self, user_id: str, organisation_id: str, chapter_id: str | None, role: str
    ) -> None:
        """Add (or replace) ``user_id``'s membership of ``organisation_id``."""
        self.sql(
            "INSERT INTO public.organisation_members (user_id, organisation_id, chapter_id, role)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (user_id, organisation_id)"
            " DO UPDATE SET chapter_id = excluded.chapter_id, role = excluded.role",
            user_id,
            organisation_id,
            chapter_id,
            role,
        )

    def remove_membership(self, user_id: str, organisation_id: str) -> None:
        """Remove ``user_id`` from ``organisation_id`` (no error if not a member)."""
        self.sql(
            "DELETE FROM public.organisation_members WHERE user_id = %s AND organisation_id = %s",
            user_id,
            organisation_id,
        )

    def delete_user(self, user_id: str) -> None:
        """Delete a user, their memberships and sessions."""
        self.sql("DELETE FROM auth.users WHERE id = %s", user_id)

    def seed(
        self,
        *,
        organisations: int,
        chapters_per_org: int,
        users_per_org: int,
        contacts_per_org: int | Sequence[int],
        notes_per_contact: int,
        assignments_per_contact: int,
        seed: int,
        password: str = DEMO_PASSWORD,
        password_iterations: int | None = None,
    ) -> SeedResult:
        """Load a deterministic data set with `seed.load_seed` (arguments alike)."""
        cost = {} if password_iterations is None else {"password_iterations": password_iterations}
        with self._lock:
            return load_seed(
                self._connection(),
                organisations=organisations,
                chapters_per_org=chapters_per_org,
                users_per_org=users_per_org,
                contacts_per_org=contacts_per_org,
                notes_per_contact=notes_per_contact,
                assignments_per_contact=assignments_per_contact,
                seed=seed,
                password=password,
                **cost,
            )
