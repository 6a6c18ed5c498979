"""The SQLite file under the cache: engine, connections, transactions, and the fault hook.

`SqliteStore` is the small storage object `ContactCache` and `SyncStaging` share: it opens
the engine, hands out reading and writing connections, serialises use of an in-memory
database, and calls `StorageFaults` at each named step of the write path so tests can make
a step fail (or stall) without subclassing anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from .cache_files import compact, describe_open_failure, file_engine, open_errors_translated
from .errors import SessionEndedError, SessionEndReason
from .options import DEFAULT_OPTIONS

__all__ = ["SqliteStore", "StorageFaults", "WriteEvent", "WriteStep", "iso_utc", "writing"]

__io__ = "disk"

#: The named steps of the cache's write path, in the order a sync reaches them: each page's
#: frames are staged (``stage``, per table); the commit merges each table (``merge``, per
#: table) and stamps ``sync_state``; every attempt is then recorded in the sync ``log``.
WriteStep = Literal["stage", "merge", "sync_state", "log"]


@dataclass(frozen=True)
class WriteEvent:
    """A write step about to run: which step, for which table and organisation."""

    step: WriteStep
    organisation_id: str
    table: str | None = None


class StorageFaults:
    """The cache's fault hook: actions run just before named steps of its write path.

    For tests (shipped in `contactsync_kit.testing`): pass one to
    ``ContactCache.open(path, faults=faults)``, then ``faults.fail_on("merge", OSError(…),
    table="notes")`` makes the notes merge raise inside the commit's transaction (so the
    contacts already merged roll back), or ``faults.call_on("merge", action)`` runs
    ``action(event)`` there, e.g. to record or slow a step. Actions run on the writing
    thread; an exception they raise is the step's failure.
    """

    def __init__(self) -> None:
        self._actions: list[tuple[WriteStep, str | None, Callable[[WriteEvent], None]]] = []

    def fail_on(self, step: WriteStep, error: BaseException, *, table: str | None = None) -> None:
        """Raise `error` at `step` (for `table` only, when given) from now on."""

        def fail(_event: WriteEvent) -> None:
            raise error

        self.call_on(step, fail, table=table)

    def call_on(
        self, step: WriteStep, action: Callable[[WriteEvent], None], *, table: str | None = None
    ) -> None:
        """Run `action(event)` at `step` (for `table` only, when given) from now on."""
        self._actions.append((step, table, action))

    def clear(self) -> None:
        """Remove every action: the write path runs normally again."""
        self._actions.clear()

    def reached(self, event: WriteEvent) -> None:
        """Run the actions registered for `event` (the store calls this)."""
        for step, table, action in list(self._actions):
            if step == event.step and table in (None, event.table):
                action(event)


class SqliteStore:
    """One SQLite database: a file (WAL journal) or ``":memory:"``.

    Writers take the write lock up front (``BEGIN IMMEDIATE``); readers stay deferred, so
    under WAL they keep reading the last committed content while a sync writes.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        in_memory: bool,
        faults: StorageFaults | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        # Asked before every use: raises SessionEndedError once the file is not ours to use.
        self._guard = guard
        self._ended: SessionEndReason | None = None
        # One shared connection serves an in-memory database, so every use is serialised. A
        # plain lock: a sync's steps may run on different worker threads.
        self._lock: threading.Lock | None = threading.Lock() if in_memory else None
        self.in_memory = in_memory
        self.path: str = ":memory:" if in_memory else str(engine.url.database)
        self._faults = faults
        self._encrypted = False

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        faults: StorageFaults | None = None,
        key: str | None = None,
        busy_timeout_s: float = DEFAULT_OPTIONS.busy_timeout_s,
        guard: Callable[[], None] | None = None,
    ) -> SqliteStore:
        """Open the database at `path`; a new file (and folder) is created private.

        An existing file is checked, read-only, to be a sound kit cache before anything
        writes to it (`contactsync_kit.cache_files`). `key` encrypts with SQLCipher.
        `guard` is asked before every use (the session's lease check).
        """
        in_memory = str(path) == ":memory:"
        if in_memory:
            engine = sa.create_engine(
                "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            engine = file_engine(Path(path), key=key, busy_timeout_s=busy_timeout_s)
        plain_file = not in_memory and key is None
        _install_transaction_control(
            engine, wal=not in_memory, page_bytes=NEW_FILE_PAGE_BYTES if plain_file else None
        )
        store = cls(engine, in_memory=in_memory, faults=faults, guard=guard)
        store._encrypted = key is not None
        return store

    @contextmanager
    def open_errors_translated(self) -> Iterator[None]:
        """While opening: on failure release the engine; driver errors become typed ones."""
        with open_errors_translated(self._engine, Path(self.path), encrypted=self._encrypted):
            yield

    def compact(self, *, vacuum: bool = True) -> None:
        """Fold the WAL into the main file and truncate it; with `vacuum`, rebuild the file."""
        self.check()
        with self._translated(), self.serialised(), self._engine.connect() as conn:
            compact(conn.connection.driver_connection, self.path, vacuum=vacuum)

    def close(self, reason: SessionEndReason = SessionEndReason.CLOSED) -> None:
        """Release the database connections (idempotent); later uses raise for `reason`.

        Waits for a read or write of an in-memory database running on another thread: its one
        shared connection closed under it would crash the process.
        """
        with self.serialised():
            if self._ended in (None, SessionEndReason.CLOSED):
                self._ended = reason
            self._engine.dispose()

    def check(self) -> None:
        """Raise `SessionEndedError` when the store is closed or its file is no longer ours."""
        if self._ended is not None:
            raise SessionEndedError(self._ended)
        if self._guard is not None:
            self._guard()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        # No driver error reaches a caller: an ended session explains it, else a typed one.
        try:
            yield
        except sa.exc.DBAPIError as exc:
            self.check()
            raise describe_open_failure(exc, Path(self.path), encrypted=self._encrypted) from exc

    def reached(self, step: WriteStep, organisation_id: str, table: str | None = None) -> None:
        """Tell the fault hook (if any) that `step` is about to run."""
        if self._faults is not None:
            self._faults.reached(WriteEvent(step, organisation_id, table))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading; whatever it did is rolled back at the end."""
        self.check()
        with self._translated(), self.serialised(), self._engine.connect() as conn:
            yield conn
            conn.rollback()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in one writing transaction, committed unless the block raises."""
        self.check()
        with self._translated(), self.serialised(), self._engine.connect() as conn:
            conn = writing(conn)
            with conn.begin():
                yield conn
                self.check()  # never commit into a file that became someone else's

    def connect(self) -> Connection:
        """A connection of the caller's own (e.g. for TEMP tables); the caller closes it.

        Use it inside `serialised()`, and `writing(conn).begin()` for a writing transaction.
        """
        self.check()
        return self._engine.connect()

    @contextmanager
    def serialised(self) -> Iterator[None]:
        """Hold the in-memory database's lock (a no-op for a file)."""
        if self._lock is None:
            yield
        else:
            with self._lock:
                yield


def writing(conn: Connection, write: bool = True) -> Connection:
    """`conn` marked so its next `begin()` is ``BEGIN IMMEDIATE`` (or deferred if not `write`)."""
    return conn.execution_options(**{_WRITE_OPTION: write})


def iso_utc(moment: datetime) -> str:
    """An aware datetime as the cache stores it: ISO-8601 text in UTC, microseconds."""
    if moment.tzinfo is None:
        raise ValueError("timestamps stored in the cache must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


_WRITE_OPTION: Final = "contactsync_write"

#: The page size a new, unencrypted cache file is made with. A full sync writes the whole
#: file through the WAL and checkpoints it, a system call per page: 16 KiB pages make a
#: quarter of SQLite's default 4 KiB's calls. Larger pages make a delta sync rewrite more
#: bytes per changed row (64 KiB made deltas slower), so the size stays moderate.
#: SQLite sets a page size only on an empty file: an existing cache keeps its own, and a
#: SQLCipher file keeps its cipher's (`cipher_page_size`).
NEW_FILE_PAGE_BYTES: Final = 16384


def _install_transaction_control(engine: Engine, *, wal: bool, page_bytes: int | None) -> None:
    # pysqlite's own transaction handling defers BEGIN and ignores SAVEPOINT semantics; take
    # control so a writer's `begin()` is a real `BEGIN IMMEDIATE` (no lock-upgrade deadlocks).
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Deleted rows are overwritten with zeros, whatever the SQLite build's default.
        cursor.execute("PRAGMA secure_delete=ON")
        # Sorts, TEMP tables and VACUUM's copy stay in memory: never a temporary file of
        # personal values outside the cache's private folder.
        cursor.execute("PRAGMA temp_store=MEMORY")
        if page_bytes is not None:
            # Before the journal mode: a file in WAL mode can no longer change its page size.
            cursor.execute(f"PRAGMA page_size={page_bytes}")
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "handle_error")
    def _on_error(context):  # type: ignore[no-untyped-def]
        # After an I/O error (a read-only or vanished folder) SQLite may keep a connection
        # read-only for good: drop the pool's connections so the next use opens fresh ones.
        text = str(context.original_exception).lower()
        if "disk i/o error" in text or "readonly database" in text:
            context.is_disconnect = True

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # Writers take the write lock up front; readers stay deferred, so under WAL they keep
        # reading the last committed cache while a sync writes.
        writing = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
