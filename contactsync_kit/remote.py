"""Reading contacts from Supabase. All of the kit's network I/O lives here.

Foreign exceptions (httpx, postgrest, supabase_auth) are translated into `RemoteFailure`
carrying a `SyncError` right where they enter, so nothing above this module knows them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from postgrest import APIResponse, CountMethod
from postgrest.exceptions import APIError
from supabase import AsyncClient
from supabase_auth.errors import AuthError

from .clock import Clock
from .results import SyncError, SyncErrorKind
from .schemas import EMBEDDED_SELECT
from .session import bearer_token, inspect_token

__all__ = [
    "ContactSource",
    "Filter",
    "RemoteFailure",
    "RemotePage",
    "RemoteReader",
    "SupabaseContactSource",
]

#: A PostgREST filter: (column, operator, value), e.g. ("full_name", "ilike", "*ada*").
Filter = tuple[str, str, str]

# PostgREST's JWT errors: PGRST301 (v12: invalid or expired), PGRST302 (no auth where needed),
# PGRST303 (newer releases: expired claims).
_AUTH_CODES = frozenset({"PGRST301", "PGRST302", "PGRST303", "42501", "401", "403"})


class RemoteFailure(Exception):
    """An expected failure talking to the server, already translated."""

    def __init__(self, error: SyncError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class RemotePage:
    """One keyset page of the embedded select, as the server sent it."""

    number: int
    rows: Any  # a list of dicts, or whatever a broken server sent instead
    total: int | None  # the exact count the server reported with the first page


class ContactSource(Protocol):
    """Where a sync reads from. `SupabaseContactSource` is the real one."""

    async def check_session(self) -> SyncError | None:
        """None when requests will carry a live user session, else why not."""
        ...

    def pages(self, organisation_id: str) -> AsyncIterator[RemotePage]:
        """The organisation's contacts with notes and assignments embedded, page by page."""
        ...


class SupabaseContactSource:
    """Reads through a supabase-py `AsyncClient` signed in as the user (RLS applies).

    Pages with keyset pagination on ``id`` (offset paging is quadratic on embedded selects)
    and asks for an exact count with the first page so the caller can prove completeness.
    """

    def __init__(
        self, client: AsyncClient, clock: Clock, *, page_size: int = 1000, retry: bool = False
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self._client = client
        self._clock = clock
        self._page_size = page_size
        self._retry = retry

    async def check_session(self) -> SyncError | None:
        try:
            # Refreshes an expired session when a refresh token is held.
            await self._client.auth.get_session()
        except AuthError as exc:
            return SyncError(SyncErrorKind.AUTH, f"the session could not be refreshed: {exc}; "
                             "sign in again")
        except httpx.HTTPError as exc:
            return _translate_transport(exc)
        token = bearer_token(self._client)
        info = inspect_token(token) if token else None
        if info is None or not info.is_user:
            if info is not None and info.bypasses_rls:
                return SyncError(SyncErrorKind.AUTH, "refusing to sync with a service-role key")
            # After sign-out supabase-py falls back to the anon key, which RLS answers with
            # 200 [] — a sync then would empty the cache instead of failing.
            return SyncError(SyncErrorKind.AUTH, "not signed in: no user session "
                             "(the client would use the anon key); sign in again")
        if info.expires_at is not None and info.expires_at <= self._clock.now():
            return SyncError(SyncErrorKind.AUTH, "the session token has expired; sign in again",
                             code="token_expired")
        return None

    async def pages(self, organisation_id: str) -> AsyncIterator[RemotePage]:
        cursor: str | None = None
        received = 0
        total: int | None = None
        number = 0
        while True:
            query = (
                self._client.table("contacts")
                .select(EMBEDDED_SELECT, count=CountMethod.exact if number == 0 else None)
                .eq("organisation_id", organisation_id)
            )
            if cursor is not None:
                query = query.gt("id", cursor)
            query = query.order("id").limit(self._page_size).retry(self._retry)
            response = await _execute(query)
            if number == 0:
                total = response.count
            rows = response.data
            yield RemotePage(number=number, rows=rows, total=total)
            number += 1
            if not isinstance(rows, list) or not rows:
                return
            received += len(rows)
            last = rows[-1]
            cursor = last.get("id") if isinstance(last, dict) else None
            if cursor is None or (total is not None and received >= total):
                return


class RemoteReader:
    """Generic reads as the signed-in user, for diagnostics and RLS audits.

    Every method raises `RemoteFailure` (never a foreign exception) on an expected failure.
    """

    def __init__(self, client: AsyncClient, *, page_size: int = 1000) -> None:
        self._client = client
        self._page_size = page_size

    async def count(self, table: str, filters: list[Filter] | tuple[Filter, ...] = ()) -> int:
        """Rows of `table` the user may see that match `filters` (``count=exact``, no body)."""
        query = self._client.table(table).select("id", count=CountMethod.exact, head=True)
        for column, operator, value in filters:
            query = query.filter(column, operator, value)
        response = await _execute(query.retry(False))
        if response.count is None:
            raise RemoteFailure(SyncError(SyncErrorKind.INVALID_DATA,
                                          f"the server sent no count for {table}"))
        return response.count

    async def rows(
        self, table: str, columns: str = "id", filters: list[Filter] | tuple[Filter, ...] = (),
    ) -> list[dict[str, Any]]:
        """All visible rows of `table` matching `filters`, keyset-paged on ``id``.

        `columns` must include ``id``. Keep it to ids and timestamps where you can: whatever
        is fetched is held in memory.
        """
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = self._client.table(table).select(columns)
            for column, operator, value in filters:
                query = query.filter(column, operator, value)
            if cursor is not None:
                query = query.gt("id", cursor)
            response = await _execute(query.order("id").limit(self._page_size).retry(False))
            page: Any = response.data
            if not isinstance(page, list):
                raise RemoteFailure(SyncError(SyncErrorKind.INVALID_DATA,
                                              f"the server's answer for {table} is not a list"))
            rows.extend(page)
            if not page:
                return rows
            last = page[-1]
            cursor = last.get("id") if isinstance(last, dict) else None
            if cursor is None:
                raise RemoteFailure(SyncError(SyncErrorKind.INVALID_DATA,
                                              f"{table} rows came without an id column"))


async def _execute(query: Any) -> APIResponse:
    try:
        response: APIResponse = await query.execute()
    except APIError as exc:
        raise RemoteFailure(_translate_api_error(exc)) from exc
    except httpx.HTTPError as exc:
        raise RemoteFailure(_translate_transport(exc)) from exc
    return response


def _translate_api_error(exc: APIError) -> SyncError:
    code = str(exc.code) if exc.code is not None else None
    # Only the server's short message: `details` can quote row values.
    message = (exc.message or "request failed")[:200]
    if code in _AUTH_CODES:
        return SyncError(SyncErrorKind.AUTH, f"the server refused the session: {message}; "
                         "sign in again", code=code)
    status = int(code) if code is not None and code.isdigit() else None
    if status == 504 or code == "57014":
        return SyncError(SyncErrorKind.TIMEOUT, f"the server timed out: {message}",
                         code=code, status=status)
    return SyncError(SyncErrorKind.REMOTE, f"the server answered with an error: {message}",
                     code=code, status=status)


def _translate_transport(exc: httpx.HTTPError) -> SyncError:
    if isinstance(exc, httpx.TimeoutException):
        return SyncError(SyncErrorKind.TIMEOUT, f"no answer from the server in time "
                         f"({type(exc).__name__})")
    return SyncError(SyncErrorKind.NETWORK, f"could not talk to the server "
                     f"({type(exc).__name__})")
