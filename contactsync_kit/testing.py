"""Test doubles shipped with the kit (like httpx's `MockTransport`).

One fake at each port, for unit tests of logic and for faults the real stack cannot produce
(the integration tests use the real PostgreSQL + PostgREST stack, `contactsync_kit.devstack`):

- `FakeSupabase`: an in-memory stand-in for the two Supabase endpoints the kit calls, served
  through an `httpx.MockTransport`, so a real supabase-py `AsyncClient` runs its real code path
  against it.
- `FakeContactSource`: the `ContactSource` port in memory (pages, counts, injected failures),
  for repository tests that need no HTTP at all.
- `FakeDeltaSource`: the `DeltaSource` port in memory (a server model answering the delta's
  changes-since queries, its id listings and the digest), for delta and reconcile tests.
- `StorageFaults`: the cache's write-path hook; ``ContactCache.open(path, faults=faults)``,
  then ``faults.fail_on("merge", OSError("disk full"), table="notes")``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import jwt

from .fake_delta_source import FakeDeltaSource
from .fake_rows import add_fake_contacts, fake_contact
from .remote import RemoteFailure, RemotePage
from .results import SyncError
from .schemas import EMBEDDED_TABLES
from .storage import StorageFaults, WriteEvent, WriteStep
from .tokens import mint_hs256

__all__ = [
    "FakeContactSource",
    "FakeDeltaSource",
    "FakeSupabase",
    "StorageFaults",
    "WriteEvent",
    "WriteStep",
    "fake_contact",
]

# Speaks HTTP, but only to itself: `httpx.MockTransport` answers in memory.
__io__ = "network"

_SECRET = "contactsync-fake-secret-with-enough-bytes-for-hs256"


def _token(
    role: str,
    *,
    sub: str | None = None,
    email: str | None = None,
    lifetime_s: int = 3600,
    issued_at: int | None = None,
) -> str:
    claims: dict[str, Any] = {"role": role, "aud": role}
    if sub:
        claims.update(sub=sub, email=email, session_id=str(uuid.uuid4()))
    return mint_hs256(_SECRET, claims, lifetime_s=lifetime_s, issued_at=issued_at)


_ID_FILTERS: dict[str, Callable[[uuid.UUID, uuid.UUID], bool]] = {
    "gt": lambda row, bound: row > bound,
    "lte": lambda row, bound: row <= bound,
}


@dataclass
class FakeSupabase:
    """An in-memory Supabase (PostgREST contacts endpoint + password sign-in).

    `contacts` holds rows exactly as the embedded select returns them. Faults: set
    `max_rows` (caps top-level and embedded arrays alike, as PostgREST's db-max-rows does),
    `raise_on_rest` / `raise_on_auth` (an exception the transport raises), `respond_with`
    (status, body) for REST calls, `delay_s` (awaited before answering), `count_offset`
    (misreport the count), `server_clock_offset` (the server's clock ahead of this one).
    `requests` records every request for assertions (one query shape, no N+1).
    """

    contacts: list[dict[str, Any]] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)  # email -> password
    max_rows: int | None = None
    raise_on_rest: BaseException | None = None
    raise_on_auth: BaseException | None = None
    respond_with: tuple[int, str | bytes] | None = None
    delay_s: float = 0.0
    count_offset: int = 0
    token_lifetime_s: int = 3600
    server_clock_offset: timedelta = timedelta(0)
    requests: list[httpx.Request] = field(default_factory=list)
    rpc_requests: list[httpx.Request] = field(default_factory=list)
    on_rest_request: Callable[[httpx.Request], None] | None = None

    url: str = "http://fake-supabase.test"

    @property
    def anon_key(self) -> str:
        """A JWT with role anon, like a legacy Supabase anon key."""
        return _token("anon", lifetime_s=10 * 365 * 86400)

    @property
    def service_role_key(self) -> str:
        """A JWT with role service_role: the kit must refuse it."""
        return _token("service_role", lifetime_s=10 * 365 * 86400)

    def user_token(self, email: str = "user@example.org", *, lifetime_s: int | None = None) -> str:
        """A user access token (role authenticated) for `email`."""
        return _token(
            "authenticated",
            sub=str(uuid.uuid5(uuid.NAMESPACE_URL, email)),
            email=email,
            lifetime_s=self.token_lifetime_s if lifetime_s is None else lifetime_s,
            # Issued by the server, in the server's time.
            issued_at=int(time.time() + self.server_clock_offset.total_seconds()),
        )

    def add_contacts(
        self, organisation_id: str, count: int, *, seed: int = 0, **rows_per_contact: int
    ) -> list[dict[str, Any]]:
        """Add `count` generated contacts to `organisation_id` and return them.

        Embedded rows per contact as `fake_contact` takes them (``notes=3``; one by default).
        """
        return add_fake_contacts(self.contacts, organisation_id, count, seed, rows_per_contact)

    def http_client(self) -> httpx.AsyncClient:
        """An httpx client whose transport is this fake; pass it to `sign_in(http_client=…)`."""
        return httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    def rest_requests(self) -> list[httpx.Request]:
        """The REST requests made so far."""
        return [r for r in self.requests if r.url.path.startswith("/rest/v1/")]

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/rest/v1/rpc/"):
            # No server functions here: what PostgREST answers for a function it does not
            # know. Kept apart from `requests`, which counts the data queries.
            self.rpc_requests.append(request)
            return httpx.Response(
                404,
                json={
                    "code": "PGRST202",
                    "message": "Could not find the function in the schema cache",
                    "details": None,
                    "hint": None,
                },
            )
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        path = request.url.path
        if path.startswith("/auth/v1/"):
            if self.raise_on_auth is not None:
                raise self.raise_on_auth
            return self._auth(request, path.removeprefix("/auth/v1/"))
        if path.startswith("/rest/v1/"):
            if self.on_rest_request is not None:
                self.on_rest_request(request)
            if self.raise_on_rest is not None:
                raise self.raise_on_rest
            if self.respond_with is not None:
                status, body = self.respond_with
                return httpx.Response(
                    status, content=body, headers={"Content-Type": "application/json"}
                )
            return self._contacts(request)
        return httpx.Response(404, json={"message": "not found"})

    def _auth(self, request: httpx.Request, endpoint: str) -> httpx.Response:
        if endpoint == "token" and request.url.params.get("grant_type") == "password":
            body = json.loads(request.content)
            if self.users.get(body.get("email")) != body.get("password"):
                return httpx.Response(
                    400,
                    json={
                        "code": "invalid_credentials",
                        "error_code": "invalid_credentials",
                        "msg": "Invalid login credentials",
                    },
                )
            return httpx.Response(200, json=self._session(body["email"]))
        if endpoint == "user" and request.method == "GET":
            return self._user(request)
        if endpoint == "logout":
            return httpx.Response(204)
        return httpx.Response(404, json={"msg": "not supported by FakeSupabase"})

    def _session(self, email: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, email))
        return {
            "access_token": self.user_token(email),
            "token_type": "bearer",
            "expires_in": self.token_lifetime_s,
            "expires_at": int((now + timedelta(seconds=self.token_lifetime_s)).timestamp()),
            "refresh_token": uuid.uuid4().hex,
            "user": {
                "id": user_id,
                "aud": "authenticated",
                "role": "authenticated",
                "email": email,
                "app_metadata": {},
                "user_metadata": {},
                "created_at": now.isoformat(),
            },
        }

    def _user(self, request: httpx.Request) -> httpx.Response:
        # GoTrue's answer: the signature and expiry checked, the user, the server's Date.
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        now = datetime.now(UTC) + self.server_clock_offset
        headers = {"Date": format_datetime(now, usegmt=True)}
        try:
            claims = jwt.decode(
                token,
                _SECRET,
                algorithms=["HS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            claims = {}
        if not claims.get("sub") or claims.get("exp", 0) < now.timestamp():
            return httpx.Response(
                403, json={"code": "bad_jwt", "msg": "invalid JWT"}, headers=headers
            )
        body = {"id": claims["sub"], "aud": "authenticated", "email": claims.get("email")}
        return httpx.Response(200, json=body, headers=headers)

    def _contacts(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        claims = jwt.decode(
            token,
            _SECRET,
            algorithms=["HS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
        )
        if claims.get("exp", 0) < time.time() + self.server_clock_offset.total_seconds():
            return httpx.Response(
                401,
                json={"code": "PGRST301", "message": "JWT expired", "details": None, "hint": None},
            )
        params = request.url.params
        rows = self.contacts if claims.get("role") != "anon" else []
        org = params.get("organisation_id", "").removeprefix("eq.")
        rows = [r for r in rows if r["organisation_id"] == org]
        for bound in params.get_list("id"):
            operator, _, value = bound.partition(".")
            if operator in _ID_FILTERS:
                rows = [
                    r for r in rows if _ID_FILTERS[operator](uuid.UUID(r["id"]), uuid.UUID(value))
                ]
        total = len(rows)
        rows = sorted(rows, key=lambda r: uuid.UUID(r["id"]))
        limit = int(params.get("limit", total or 1))
        cap = self.max_rows if self.max_rows is not None else limit
        page = [self._capped(r) for r in rows[: min(limit, cap)]]
        headers = {"Content-Type": "application/json"}
        # Like PostgREST, every answer announces its range; the total only when counted.
        end = f"0-{len(page) - 1}" if page else "*"
        counted = "count=exact" in request.headers.get("prefer", "")
        headers["Content-Range"] = f"{end}/{total + self.count_offset if counted else '*'}"
        return httpx.Response(200, content=json.dumps(page).encode(), headers=headers)

    def _capped(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.max_rows is None:
            return row
        return row | {table: row[table][: self.max_rows] for table in EMBEDDED_TABLES}


@dataclass
class FakeContactSource:
    """The `ContactSource` port in memory: no HTTP, no supabase-py client.

    `contacts` holds rows exactly as the embedded select returns them (`add_contacts` makes
    some). Pages are keyset pages of `page_size` rows ordered by id, and the first carries the
    exact count (plus `count_offset`, to misreport it). Faults: `session_error` is what
    `check_session` answers; `page_errors` maps a page number (1 for the first) to the error
    its fetch raises as `RemoteFailure`. `fetches` records each fetch's ``(after,
    with_count)``.
    """

    contacts: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 1000
    count_offset: int = 0
    session_error: SyncError | None = None
    page_errors: dict[int, SyncError] = field(default_factory=dict)
    fetches: list[tuple[str | None, bool]] = field(default_factory=list)

    def add_contacts(
        self, organisation_id: str, count: int, *, seed: int = 0, **rows_per_contact: int
    ) -> list[dict[str, Any]]:
        """Add `count` generated contacts to `organisation_id` and return them.

        Embedded rows per contact as `fake_contact` takes them (``notes=3``; one by default).
        """
        return add_fake_contacts(self.contacts, organisation_id, count, seed, rows_per_contact)

    async def check_session(self) -> SyncError | None:
        """`session_error` (None: a live user session)."""
        return self.session_error

    async def fetch_page(
        self,
        organisation_id: str,
        *,
        after: str | None,
        with_count: bool,
        upto: str | None = None,
    ) -> RemotePage:
        """The next keyset page (``after < id <= upto``) of the organisation's contacts."""
        self.fetches.append((after, with_count))
        error = self.page_errors.get(len(self.fetches))
        if error is not None:
            raise RemoteFailure(error)
        rows = sorted(
            (r for r in self.contacts if r["organisation_id"] == organisation_id),
            key=lambda r: uuid.UUID(r["id"]),
        )
        total = len(rows) + self.count_offset
        if after is not None:
            rows = [r for r in rows if uuid.UUID(r["id"]) > uuid.UUID(after)]
        if upto is not None:
            rows = [r for r in rows if uuid.UUID(r["id"]) <= uuid.UUID(upto)]
        page = rows[: self.page_size]
        return RemotePage(
            body=json.dumps(page).encode(),
            total=total if with_count else None,
            rows=len(page),
            last_key=page[-1]["id"] if page else None,
        )
