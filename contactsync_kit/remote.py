"""Reading from Supabase's REST API (PostgREST) as the signed-in user.

The sync's and the diagnostics' reads go through here; signing in is `session.py`'s job, and
the RLS audit's catalog reads and the local stack use their own connections.

Foreign exceptions (httpx, postgrest, supabase_auth) are translated into `RemoteFailure`
carrying a `SyncError` right where they enter, so nothing above this module knows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx
from postgrest import CountMethod
from postgrest.exceptions import APIError, APIErrorFromJSON, generate_default_error_message
from pydantic import ValidationError
from supabase import AsyncClient
from supabase_auth.errors import AuthError

from .clock import Clock
from .errors import ContactSyncError, SyncStopped
from .paging import last_row_key
from .results import SyncError, SyncErrorKind
from .schemas import DATA_TABLES, EMBEDDED_SELECT
from .session import bearer_token, inspect_token

__all__ = [
    "DIGEST_FUNCTION",
    "ContactSource",
    "DeltaSource",
    "DigestRow",
    "DigestSource",
    "DigestUnavailable",
    "Filter",
    "RemoteFailure",
    "RemotePage",
    "RemoteReader",
    "SupabaseContactSource",
    "SupabaseDeltaSource",
    "last_row_key",
]

__io__ = "network"

#: A PostgREST filter: (column, operator, value), e.g. ("full_name", "ilike", "*ada*").
Filter = tuple[str, str, str]

# PostgREST's JWT errors: PGRST301 (v12: invalid or expired), PGRST302 (no auth where needed),
# PGRST303 (newer releases: expired claims).
_AUTH_CODES = frozenset({"PGRST301", "PGRST302", "PGRST303", "42501"})


class RemoteFailure(SyncStopped):
    """An expected failure talking to the server, already translated; `kind` is `error.kind`."""


@dataclass(frozen=True)
class RemotePage:
    """One keyset page of the embedded select, as the server sent it."""

    body: bytes  # the raw response body: parsed straight into polars by the mapper
    total: int | None  # the exact count, when it was asked for and the server sent it
    rows: int | None = None  # rows in this page, as the server announced them (Content-Range)
    last_key: str | None = None  # the last row's id, read off the raw body (the next cursor)


class ContactSource(Protocol):
    """Where a sync reads from. `SupabaseContactSource` is the real one."""

    #: The most rows one `fetch_page` asks for.
    page_size: int

    async def check_session(self) -> SyncError | None:
        """None when requests will carry a live user session, else why not."""
        ...

    async def fetch_page(
        self,
        organisation_id: str,
        *,
        after: str | None,
        with_count: bool,
        upto: str | None = None,
    ) -> RemotePage:
        """Contacts of the organisation with ``after < id <= upto``, at most one page.

        Either bound may be None. Notes and assignments are embedded; rows are ordered by
        ``id``. Raises `RemoteFailure`.
        """
        ...


class SupabaseContactSource:
    """Reads through a supabase-py `AsyncClient` signed in as the user (RLS applies).

    The query is built with supabase-py's own builder and sent on its own session (so the
    user's token and the project key go with it); only the body is taken raw, because parsing
    the bytes straight into polars is several times faster than ``json.loads`` + dicts.
    The kit does not retry: a failed sync leaves the cache intact and is cheap to repeat,
    while supabase-py's retries would hold a sync for about 7 s.
    """

    def __init__(self, client: AsyncClient, clock: Clock, *, page_size: int = 1000) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self._client = client
        self._clock = clock
        self.page_size = page_size

    async def check_session(self) -> SyncError | None:
        """None when the client holds a live user session, else why not."""
        try:
            # Refreshes an expired session when a refresh token is held.
            await self._client.auth.get_session()
        except AuthError as exc:
            return SyncError(
                SyncErrorKind.AUTH, f"the session could not be refreshed: {exc}; sign in again"
            )
        except httpx.HTTPError as exc:
            return _translate_transport(exc)
        token = bearer_token(self._client)
        info = inspect_token(token) if token else None
        if info is None or not info.is_user:
            if info is not None and info.bypasses_rls:
                return SyncError(SyncErrorKind.AUTH, "refusing to sync with a service-role key")
            # After sign-out supabase-py falls back to the anon key, which RLS answers with
            # 200 [] — a sync then would empty the cache instead of failing.
            return SyncError(
                SyncErrorKind.AUTH,
                "not signed in: no user session (the client would use the anon key); sign in again",
            )
        if info.expires_at is not None and info.expires_at <= self._clock.now():
            return SyncError(
                SyncErrorKind.AUTH,
                "the session token has expired; sign in again",
                code="token_expired",
            )
        return None

    async def fetch_page(
        self,
        organisation_id: str,
        *,
        after: str | None,
        with_count: bool,
        upto: str | None = None,
    ) -> RemotePage:
        """One keyset page of the organisation's contacts, as JSON bytes."""
        query = (
            self._client.table("contacts")
            .select(EMBEDDED_SELECT, count=CountMethod.exact if with_count else None)
            .eq("organisation_id", organisation_id)
        )
        if after is not None:
            query = query.gt("id", after)
        if upto is not None:
            query = query.lte("id", upto)
        response = await _send(query.order("id").limit(self.page_size))
        body = _take_body(response)
        return RemotePage(
            body=body,
            total=_total(response) if with_count else None,
            rows=_rows(response),
            last_key=last_row_key(body),
        )


class RemoteReader:
    """Generic reads as the signed-in user, for diagnostics and RLS audits.

    Every method raises `RemoteFailure` (never a foreign exception) on an expected failure.
    """

    def __init__(self, client: AsyncClient, *, page_size: int = 1000) -> None:
        self._client = client
        self._page_size = page_size

    async def count(self, table: str, filters: list[Filter] | tuple[Filter, ...] = ()) -> int:
        """Rows of `table` the user may see that match `filters` (``count=exact``, no body)."""
        query = self._client.table(table).select("*", count=CountMethod.exact, head=True)
        for column, operator, value in filters:
            query = query.filter(column, operator, value)
        total = _total(await _send(query))
        if total is None:
            raise RemoteFailure(
                SyncError(SyncErrorKind.INVALID_DATA, f"the server sent no count for {table}")
            )
        return total

    async def rows(
        self,
        table: str,
        columns: str = "id",
        filters: list[Filter] | tuple[Filter, ...] = (),
        *,
        key: str = "id",
    ) -> list[dict[str, Any]]:
        """All visible rows of `table` matching `filters`, keyset-paged on `key`.

        `key` must be a unique column and among `columns`. Keep `columns` to ids and
        timestamps where you can: whatever is fetched is held in memory.
        """
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = self._client.table(table).select(columns)
            for column, operator, value in filters:
                query = query.filter(column, operator, value)
            if cursor is not None:
                query = query.gt(key, cursor)
            response = await _send(query.order(key).limit(self._page_size))
            try:
                page: Any = response.json()
            except ValueError:
                page = None
            if not isinstance(page, list):
                raise RemoteFailure(
                    SyncError(
                        SyncErrorKind.INVALID_DATA, f"the server's answer for {table} is not a list"
                    )
                )
            rows.extend(page)
            if not page:
                return rows
            last = page[-1]
            cursor = last.get(key) if isinstance(last, dict) else None
            if cursor is None:
                raise RemoteFailure(
                    SyncError(
                        SyncErrorKind.INVALID_DATA, f"{table} rows came without their {key} column"
                    )
                )


async def _send(query: Any) -> httpx.Response:
    """Send a built supabase-py query on the client's session; translate every failure."""
    try:
        response: httpx.Response = await query.request.send(httpx.Headers())
    except httpx.HTTPError as exc:
        raise RemoteFailure(_translate_transport(exc)) from exc
    if response.is_success:
        return response
    try:
        error = APIError(dict(APIErrorFromJSON.model_validate_json(response.content)))
    except ValidationError:
        error = APIError(generate_default_error_message(response))
    raise RemoteFailure(_translate_api_error(error, response.status_code))


def _take_body(response: httpx.Response) -> bytes:
    # httpx's response and its bound stream refer to each other: a cycle only the garbage
    # collector frees, which kept tens of pages' bodies in memory. Breaking it frees each body
    # with its last use.
    body = response.content
    response.stream = httpx.ByteStream(b"")
    return body


def _total(response: httpx.Response) -> int | None:
    # Content-Range: "0-999/2500", "*/0"; "*" after the slash when no count was asked for.
    total = response.headers.get("content-range", "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _rows(response: httpx.Response) -> int | None:
    # PostgREST announces every page's range: "0-999/*", "*/*" or "*/0" when empty.
    header = response.headers.get("content-range")
    if header is None:
        return None
    first, _, last = header.partition("/")[0].partition("-")
    if first == "*":
        return 0
    return int(last) - int(first) + 1 if first.isdigit() and last.isdigit() else None


def _translate_api_error(exc: APIError, status: int) -> SyncError:
    code = str(exc.code) if exc.code is not None else None
    # Only the server's short message: `details` can quote row values.
    message = (exc.message or "request failed")[:200]
    if code in _AUTH_CODES or status in (401, 403):
        return SyncError(
            SyncErrorKind.AUTH,
            f"the server refused the session: {message}; sign in again",
            code=code,
            status=status,
        )
    if status in (408, 504) or code == "57014":
        return SyncError(
            SyncErrorKind.TIMEOUT, f"the server timed out: {message}", code=code, status=status
        )
    return SyncError(
        SyncErrorKind.REMOTE,
        f"the server answered with an error: {message}",
        code=code,
        status=status,
    )


def _translate_transport(exc: httpx.HTTPError) -> SyncError:
    if isinstance(exc, httpx.TimeoutException):
        return SyncError(
            SyncErrorKind.TIMEOUT, f"no answer from the server in time ({type(exc).__name__})"
        )
    return SyncError(SyncErrorKind.NETWORK, f"could not talk to the server ({type(exc).__name__})")


# -- verified incremental sync (issue 11): reads a delta sync needs ------------------------

#: The server function of devstack/sql/0006_sync_digest_tables.sql (tables named by the spec).
DIGEST_FUNCTION = "contactsync_digest"
# PostgREST's "function not found" (the project has not applied the digest migration).
_MISSING_FUNCTION_CODES = frozenset({"PGRST202", "42883"})


@dataclass(frozen=True)
class DigestRow:
    """One row of the server's digest: a table's bucket, its row count and digest."""

    table: str
    bucket: str
    count: int
    digest: int


class DigestUnavailable(ContactSyncError):
    """The server offers no digest function (the migration is not applied)."""


@runtime_checkable
class DigestSource(Protocol):
    """The digest port: asks the server for its digest of what RLS shows the user.

    The one port of the delta (`DeltaSource` extends it), `verify_against` and the
    diagnosis; `SupabaseDeltaSource` is the real one, `testing.FakeDeltaSource` a fake.
    """

    async def digest(self, organisation_id: str, prefix_length: int = 0) -> list[DigestRow]:
        """The server's digest per table (bucket ``""``), or per id bucket.

        Buckets are the ids' first `prefix_length` hex digits. Raises `DigestUnavailable`
        (no digest function) or `RemoteFailure`.
        """
        ...


@runtime_checkable
class DeltaSource(ContactSource, DigestSource, Protocol):
    """A `ContactSource` that can also serve a verified incremental sync."""

    def user_id(self) -> str | None:
        """The signed-in user's id (the token's subject), or None."""
        ...

    async def fetch_rows(
        self,
        table: str,
        organisation_id: str,
        *,
        since: str | None = None,
        ids: list[str] | None = None,
        buckets: list[str] | None = None,
        columns: str = "*",
        after: str | None = None,
    ) -> RemotePage:
        """One keyset page (by ``id``) of `table`'s rows of the organisation.

        Those changed at or after `since`, or among `ids`, or inside the id `buckets`.
        """
        ...


def _bucket_filter(buckets: list[str]) -> str:
    from .digest import bucket_bounds  # pure; imported here to keep the top of file stable

    ranges = []
    for bucket in buckets:
        low, high = bucket_bounds(bucket)
        ranges.append(f"and(id.gte.{low},id.lt.{high})" if high else f"id.gte.{low}")
    return ",".join(ranges)


async def _digest_rows(
    client: AsyncClient, organisation_id: str, prefix_length: int
) -> list[DigestRow]:
    query = client.rpc(
        DIGEST_FUNCTION,
        {
            "p_organisation_id": organisation_id,
            "p_prefix_length": prefix_length,
            "p_tables": list(DATA_TABLES),
        },
    )
    try:
        response = await _send(query)
    except RemoteFailure as exc:
        if exc.error.code in _MISSING_FUNCTION_CODES or (
            exc.error.status == 404 and exc.error.code is None
        ):
            raise DigestUnavailable(exc.error.message) from exc
        raise
    try:
        result: list[DigestRow] = []
        for row in response.json():
            table = str(row["table_name"])
            if prefix_length <= 0:
                result.append(DigestRow(table, "", int(row["row_count"]), int(row["digest"])))
                continue
            for bucket, (count, digest) in dict(row["buckets"] or {}).items():
                # The server numbers buckets; the kit names them by their hex prefix.
                name = f"{int(bucket):0{prefix_length}x}"
                result.append(DigestRow(table, name, int(count), int(digest)))
        return result
    except (ValueError, TypeError, KeyError) as exc:
        raise RemoteFailure(
            SyncError(
                SyncErrorKind.INVALID_DATA, "the server's digest is not a list of digest rows"
            )
        ) from exc


class _DeltaReads:
    """The delta reads, mixed into `SupabaseContactSource`."""

    _client: AsyncClient
    page_size: int

    def user_id(self) -> str | None:
        token = bearer_token(self._client)
        info = inspect_token(token) if token else None
        return info.subject.lower() if info is not None and info.subject else None

    async def digest(self, organisation_id: str, prefix_length: int = 0) -> list[DigestRow]:
        return await _digest_rows(self._client, organisation_id, prefix_length)

    async def fetch_rows(
        self,
        table: str,
        organisation_id: str,
        *,
        since: str | None = None,
        ids: list[str] | None = None,
        buckets: list[str] | None = None,
        columns: str = "*",
        after: str | None = None,
    ) -> RemotePage:
        query = self._client.table(table).select(columns).eq("organisation_id", organisation_id)
        if since is not None:
            query = query.gte("updated_at", since)
        if ids is not None:
            query = query.in_("id", ids)
        if buckets:
            query = query.or_(_bucket_filter(buckets))
        if after is not None:
            query = query.gt("id", after)
        response = await _send(query.order("id").limit(self.page_size))
        return RemotePage(body=_take_body(response), total=None)


class SupabaseDeltaSource(_DeltaReads, SupabaseContactSource):
    """`SupabaseContactSource` plus the reads of a verified incremental sync."""
