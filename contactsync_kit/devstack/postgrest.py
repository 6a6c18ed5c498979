"""The stack's PostgREST: its configuration and its process.

PostgREST 12.0.2 (see `postgrest_binary`) connects as ``authenticator`` over the
PostgreSQL unix socket with a password, serves ``public`` on a free port of 127.0.0.1, and is
ready when its admin port answers ``/ready``. Its output goes to a log file whose tail is put in
the error when it fails to start.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Final
from urllib.parse import quote

__all__ = ["PostgrestProcess", "free_port", "postgrest_env"]

# Runs PostgREST, probes its port, reads its log.
__io__ = "network, disk, process"

_PR_SET_PDEATHSIG: Final = 1

Spawner = Callable[[Callable[[], "subprocess.Popen[bytes]"]], "subprocess.Popen[bytes]"]
"""Runs a ``Popen`` factory on a chosen thread and returns the process."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgrest_env(
    base: Mapping[str, str],
    *,
    password: str,
    socket_dir: Path,
    jwt_secret: str,
    max_rows: int,
    port: int,
    admin_port: int,
) -> dict[str, str]:
    """PostgREST's configuration as environment variables, on top of ``base``.

    ``base``'s own ``PGRST_*`` and ``PG*`` variables are dropped, so a developer's settings
    cannot leak in.
    """
    db_uri = (
        f"postgres://authenticator:{quote(password, safe='')}"
        f"@/postgres?host={quote(str(socket_dir), safe='')}"
    )
    env = {key: value for key, value in base.items() if not key.startswith(("PGRST_", "PG"))}
    env.update(
        {
            "PGRST_DB_URI": db_uri,
            # The exposed schemas come from the database (`pgrst.db_schemas` on the authenticator
            # role, set in 0001), as on Supabase: one place, readable by catalog tools.
            "PGRST_DB_CONFIG": "true",
            "PGRST_DB_ANON_ROLE": "anon",
            "PGRST_JWT_SECRET": jwt_secret,
            "PGRST_JWT_AUD": "authenticated",
            "PGRST_DB_MAX_ROWS": str(max_rows),
            "PGRST_DB_POOL": "4",
            "PGRST_SERVER_HOST": "127.0.0.1",
            "PGRST_SERVER_PORT": str(port),
            "PGRST_ADMIN_SERVER_PORT": str(admin_port),
            "PGRST_LOG_LEVEL": "error",
        }
    )
    return env


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: PostgREST gets SIGTERM when the thread that
    # spawned it dies, so a killed test run leaves no orphaned PostgREST behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class PostgrestProcess:
    """One PostgREST binary, started and stopped as often as needed. Not thread-safe.

    ``spawner`` runs the ``Popen`` on a long-lived thread (the stack's loop thread): PostgREST
    is tied to the thread that spawned it (see ``PR_SET_PDEATHSIG``).
    """

    def __init__(self, binary: Path, log_path: Path, spawner: Spawner) -> None:
        self._binary = str(binary)
        self._log_path = log_path
        self._spawner = spawner
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        """True while the process is up."""
        proc = self.process
        return proc is not None and proc.poll() is None

    def start(self, env: Mapping[str, str], *, timeout_s: float) -> str:
        """Start PostgREST with ``env`` (see `postgrest_env`), wait until it is ready.

        Returns its URL. Raises RuntimeError (with the log's tail) if it exits or is not ready
        within ``timeout_s``.
        """
        log = self._log_path.open("ab")
        command, environment = [self._binary], dict(env)

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                command,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

        self.process, self._log = self._spawner(spawn), log
        try:
            self._wait_ready(int(env["PGRST_ADMIN_SERVER_PORT"]), timeout_s)
        except BaseException:
            self.stop()
            raise
        return f"http://127.0.0.1:{env['PGRST_SERVER_PORT']}"

    def _wait_ready(self, admin_port: int, timeout_s: float) -> None:
        proc = self.process
        assert proc is not None
        deadline = time.monotonic() + timeout_s
        while not _answers_ready(admin_port):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"PostgREST exited with code {proc.returncode}:\n" + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise RuntimeError("PostgREST did not become ready in time:\n" + self.log_tail())
            time.sleep(0.02)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines PostgREST wrote."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no PostgREST log)"

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and close its log (idempotent)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


def _answers_ready(admin_port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
        try:
            conn.request("GET", "/ready")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False
