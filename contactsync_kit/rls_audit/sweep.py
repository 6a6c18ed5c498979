"""The API side at scale: one pooled HTTP client for every caller, each caller probed once
across all organisations.

`Api` signs users in (supabase-py's auth client) and reads as any caller's token (supabase-py's
PostgREST client), all on one `httpx.AsyncClient` whose connection pool is bounded and closed
at the end: sockets stay flat however many callers there are. `sweep` reads every app table
with no organisation filter, keyset-paged, with ``count=exact`` on the first page (so the
count probe costs no request of its own); `call_functions` calls each exposed function that
takes ids with the ids of an organisation the caller must not see.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ..results import SyncError, SyncErrorKind
from .callers import CallerPlan, Collected, RequestCounter
from .frames import ALL_ORGANISATIONS, Probe, audit_tables
from .plan import ForeignIds
from .probes import CallerProbes, read_shape
from .surface import FunctionTarget

if TYPE_CHECKING:
    from postgrest import AsyncPostgrestClient

__all__ = ["Api", "call_functions", "carries_data", "sweep"]
__io__ = "network"

_AUTH_CODES: Final = frozenset({"42501", "PGRST301", "PGRST302", "PGRST303"})
#: Rows asked for by a sweep's first, unordered read (see `sweep`).
FIRST_PAGE: Final = 100


class Api:
    """One pooled, bounded HTTP client for the whole audit (use as ``async with``)."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        connections: int,
        counter: RequestCounter,
        tls: ssl.SSLContext,
        page_size: int = 1000,
    ) -> None:
        import httpx

        from ..session import ensure_user_level_key

        ensure_user_level_key(key)
        self.url, self.key, self.page_size = url.rstrip("/"), key, page_size
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            verify=tls,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            event_hooks={"request": [counter]},
        )

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def sign_in(self, email: str, password: str) -> str:
        """A user's access token, by the password grant (raises `SignInError`)."""
        from supabase_auth import AsyncGoTrueClient
        from supabase_auth.errors import AuthApiError, AuthError

        from ..session import SignInError

        auth = AsyncGoTrueClient(
            url=f"{self.url}/auth/v1",
            headers={"apikey": self.key},
            http_client=self.http,
            auto_refresh_token=False,
            persist_session=False,
        )
        try:
            answer = await auth.sign_in_with_password({"email": email, "password": password})
        except AuthApiError as exc:
            raise SignInError(f"sign-in refused: {exc}", status=exc.status) from exc
        except (AuthError, OSError) as exc:
            raise SignInError(f"sign-in failed: {type(exc).__name__}") from exc
        if answer.session is None:
            raise SignInError("sign-in returned no session")
        return answer.session.access_token

    def postgrest(self, token: str | None) -> AsyncPostgrestClient:
        """supabase-py's PostgREST client as the holder of `token` (the anon key when None),
        on the shared connection pool.
        """
        from postgrest import AsyncPostgrestClient

        return AsyncPostgrestClient(
            f"{self.url}/rest/v1",
            headers={"apikey": self.key, "Authorization": f"Bearer {token or self.key}"},
            http_client=self.http,
            retry_enabled=False,
        )


def _failure(exc: BaseException) -> SyncError:
    """A foreign exception of a probe request as a `SyncError` (translated where it enters)."""
    code = getattr(exc, "code", None)
    code = str(code) if code is not None else None
    if code in _AUTH_CODES:
        return SyncError(SyncErrorKind.AUTH, "the server refused the request", code=code)
    if code is not None:
        return SyncError(SyncErrorKind.REMOTE, "the server answered with an error", code=code)
    return SyncError(SyncErrorKind.NETWORK, f"no answer: {type(exc).__name__}")


async def _send(query: Any, limit: asyncio.Semaphore) -> Any:
    import httpx
    from postgrest.exceptions import APIError

    from ..remote import RemoteFailure

    try:
        async with limit:
            return await query.execute()
    except (APIError, httpx.HTTPError) as exc:
        raise RemoteFailure(_failure(exc)) from exc


async def _every_row(
    client: AsyncPostgrestClient, table: str, limit: asyncio.Semaphore, page_size: int
) -> list[dict[str, Any]]:
    """Every row of `table` the client's caller sees (ids and organisations only)."""
    columns, key = read_shape(table)
    # Unordered first: with the app's per-row policies an ordered read walks the whole
    # primary key (3x the cost of a scan). Fewer rows than asked for is all of them
    # (db-max-rows is assumed >= FIRST_PAGE); else page by key from the start.
    answer = await _send(client.table(table).select(columns).limit(FIRST_PAGE), limit)
    rows: list[dict[str, Any]] = answer.data if isinstance(answer.data, list) else []
    if len(rows) < FIRST_PAGE:
        return rows
    rows, cursor = [], None
    while True:
        query = client.table(table).select(columns)
        if cursor is not None:
            query = query.gt(key, cursor)
        answer = await _send(query.order(key).limit(page_size), limit)
        page = answer.data if isinstance(answer.data, list) else []
        rows.extend(page)
        cursor = page[-1].get(key) if page else None
        if cursor is None:
            return rows


async def sweep(
    plan: CallerPlan,
    client: AsyncPostgrestClient,
    *,
    limit: asyncio.Semaphore,
    out: Collected,
    probe: Probe = Probe.ALL_ROWS,
    page_size: int = 1000,
) -> None:
    """Every row of every app table the caller sees, in one request per table while they are
    fewer than `FIRST_PAGE`, else keyset-paged; and every exposed view or function without
    arguments (`plan.surface`).
    """
    from ..remote import RemoteFailure, RemoteReader

    recorder = CallerProbes(plan, RemoteReader(client), limit, out)  # type: ignore[arg-type]

    async def table_rows(table: str) -> None:
        try:
            rows = await _every_row(client, table, limit, page_size)
        except RemoteFailure as exc:
            recorder.record_run(ALL_ORGANISATIONS, table, probe, error=exc.error)
            return
        recorder.record_run(ALL_ORGANISATIONS, table, probe)
        recorder.record_rows(table, probe, rows, None)

    surface = Probe.SURFACE if probe is Probe.ALL_ROWS else Probe.CLAIMS_SURFACE
    await asyncio.gather(
        *[table_rows(t) for t in audit_tables(plan.tables)],
        *[recorder.surface(target, surface) for target in plan.surface],
    )


def carries_data(answer: Any) -> int:
    """How many rows of a function's answer carry data.

    An outsider's honest answer may be empty, or aggregates over nothing: a row of zeros
    (``count = 0``), nulls, false, empty strings, lists and objects carries none. A row
    carries data when it holds a nonzero number, true, a non-empty list or object that
    carries data, or — in a row with no number at all (names, ids) — a non-empty string.
    """
    rows = answer if isinstance(answer, list) else [answer]
    return sum(1 for row in rows if _row_has_data(row))


def _row_has_data(row: Any) -> bool:
    values = list(row.values()) if isinstance(row, dict) else [row]
    numeric = any(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    for value in values:
        if isinstance(value, bool):
            if value:
                return True
        elif isinstance(value, int | float):
            if value != 0:
                return True
        elif isinstance(value, dict | list):
            if carries_data(list(value.values()) if isinstance(value, dict) else value):
                return True
        elif isinstance(value, str) and value and not numeric:
            return True
    return False


async def call_functions(
    plan: CallerPlan,
    client: AsyncPostgrestClient,
    targets: Sequence[FunctionTarget],
    foreign: ForeignIds,
    organisation_id: str | None,
    *,
    limit: asyncio.Semaphore,
    out: Collected,
    probe: Probe = Probe.FOREIGN_ARGS,
) -> None:
    """Call each function target with the ids of `organisation_id` (one the caller must not
    see); the run's count is how many answer rows carry data (`carries_data`).
    """
    from ..remote import RemoteFailure, RemoteReader

    recorder = CallerProbes(plan, RemoteReader(client), limit, out)  # type: ignore[arg-type]
    if organisation_id is None:
        return

    async def call(target: FunctionTarget) -> None:
        params = foreign.arguments(target, organisation_id)
        if params is None:
            return
        try:
            answer = await _send(client.rpc(target.rpc, params), limit)
        except RemoteFailure as exc:
            recorder.record_run(organisation_id, target.label, probe, error=exc.error)
            return
        recorder.record_run(organisation_id, target.label, probe, count=carries_data(answer.data))

    await asyncio.gather(*[call(t) for t in targets])
