"""A small stand-in for Supabase Auth (GoTrue), for the local stack only.

No GoTrue binary can be obtained here, so the gateway answers the subset of ``/auth/v1`` that
supabase-py's ``AsyncGoTrueClient`` uses for email+password sessions:

* ``POST /auth/v1/token?grant_type=password``       body ``{"email", "password"}``
* ``POST /auth/v1/token?grant_type=refresh_token``  body ``{"refresh_token"}`` (rotating tokens)
* ``GET  /auth/v1/user``                            ``Authorization: Bearer <access token>``
* ``POST /auth/v1/logout?scope=global|local|others``
* ``GET  /auth/v1/health`` and ``GET /auth/v1/settings``

Access tokens are HS256 JWTs shaped like GoTrue's (``sub``, ``role: authenticated``,
``aud: authenticated``, ``exp``, ``iat``, ``email``, ``session_id``, ``aal``...), signed with the
stack's JWT secret so PostgREST accepts them. Errors use GoTrue's JSON shape and status codes.
Passwords are checked against ``auth.users`` with PBKDF2 (see `passwords`). Sign-up,
OTP, OAuth, MFA and the admin API are not implemented: this is not a GoTrue replacement.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import jwt
import psycopg
from aiohttp import web

from ..tokens import mint_hs256
from .passwords import hash_password, verify_password

__all__ = ["AuthService", "make_api_key", "make_user_access_token"]

# Serves /auth/v1 (aiohttp) from the users in PostgreSQL (psycopg).
__io__ = "network"

_API_VERSION_HEADER: Final = "X-Supabase-Api-Version"
_API_VERSION: Final = "2024-01-01"


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown, so a miss costs as much as a wrong password
    # and response times do not reveal which emails exist. Lazy: no hashing at import time.
    return hash_password("not-a-real-password")


def make_api_key(secret: str, role: str, *, lifetime_s: int = 10 * 365 * 24 * 3600) -> str:
    """An API key like Supabase's legacy demo keys: HS256, ``iss: supabase-demo``, ``role``."""
    return mint_hs256(secret, {"iss": "supabase-demo", "role": role}, lifetime_s=lifetime_s)


def make_user_access_token(
    secret: str,
    *,
    user_id: str,
    email: str | None,
    session_id: str,
    lifetime_s: int,
    issuer: str,
    issued_at: int | None = None,
    user_metadata: dict[str, Any] | None = None,
) -> str:
    """A user access token with GoTrue's claims. ``lifetime_s`` may be negative (expired).

    `user_metadata` is the user's ``raw_user_meta_data``: what they wrote with updateUser.
    """
    iat = int(time.time()) if issued_at is None else issued_at
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": user_id,
        "aud": "authenticated",
        "email": email or "",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": dict(user_metadata or {}),
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": iat}],
        "session_id": session_id,
        "is_anonymous": False,
    }
    return mint_hs256(secret, claims, lifetime_s=lifetime_s, issued_at=iat)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    # Both GoTrue error layouts at once: supabase-py reads `code` (new API version) or
    # `error_code` (legacy) and the message from `msg`/`message`/`error_description`.
    body = {"code": code, "error_code": code, "msg": message, "message": message, **extra}
    return web.json_response(body, status=status, headers={_API_VERSION_HEADER: _API_VERSION})


class _UserRow:
    __slots__ = ("created_at", "email", "id", "metadata")

    def __init__(
        self,
        user_id: str,
        email: str,
        created_at: datetime | None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.id = user_id
        self.email = email
        self.created_at = created_at
        self.metadata = metadata or {}


class AuthService:
    """The ``/auth/v1`` handlers. Lives on the gateway's event loop; one DB connection, serialised.

    ``lifetime_s`` is read at every token issue, so changing the stack's ``jwt_lifetime_s``
    affects the next sign-in or refresh. `issuer` is the ``iss`` claim of the tokens it
    issues; the stack sets it once the gateway's URL is known (``<url>/auth/v1``, like GoTrue).
    """

    def __init__(
        self, *, conninfo: str, jwt_secret: str, issuer: str, lifetime_s: Callable[[], int]
    ) -> None:
        self._conninfo = conninfo
        self._secret = jwt_secret
        self.issuer = issuer
        self._lifetime_s = lifetime_s
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        """Close the database connection (idempotent)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _query(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            async with self._conn.cursor() as cur:
                await cur.execute(query, params)
                return await cur.fetchall() if cur.description is not None else []

    async def handle(self, request: web.Request, path: str) -> web.StreamResponse:
        """Dispatch one ``/auth/v1/<path>`` request."""
        route = (request.method, path.strip("/"))
        if route == ("POST", "token"):
            return await self._token(request)
        if route == ("GET", "user"):
            return await self._user(request)
        if route == ("POST", "logout"):
            return await self._logout(request)
        if route == ("GET", "health"):
            return web.json_response(
                {
                    "version": "contactsync-devstack",
                    "name": "GoTrue",
                    "description": "local stand-in for Supabase Auth",
                }
            )
        if route == ("GET", "settings"):
            return web.json_response(
                {
                    "external": {"email": True},
                    "disable_signup": True,
                    "mailer_autoconfirm": True,
                    "phone_autoconfirm": False,
                    "sms_provider": "",
                    "saml_enabled": False,
                }
            )
        return _error(404, "not_found", "Not implemented by the local auth stand-in")

    # --- grants -------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad_json", "Could not parse request body as JSON")
        if not isinstance(body, dict):
            return _error(400, "bad_json", "Could not parse request body as JSON")
        grant = request.query.get("grant_type")
        if grant == "password":
            return await self._password_grant(body)
        if grant == "refresh_token":
            return await self._refresh_grant(body)
        return _error(
            400, "validation_failed", "unsupported_grant_type", error="unsupported_grant_type"
        )

    async def _password_grant(self, body: dict[str, Any]) -> web.Response:
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str) or not email:
            return _error(
                400,
                "validation_failed",
                "Only an email address or phone number should be provided on login.",
            )
        rows = await self._query(
            "SELECT id::text, email, encrypted_password, created_at, raw_user_meta_data "
            "FROM auth.users WHERE lower(email) = lower(%s)",
            email.strip(),
        )
        encoded = rows[0][2] if rows else _dummy_hash()
        # PBKDF2 takes tens of milliseconds: keep it off the event loop.
        ok = await asyncio.to_thread(verify_password, password, encoded)
        if not rows or not ok:
            return _error(
                400,
                "invalid_credentials",
                "Invalid login credentials",
                error="invalid_grant",
                error_description="Invalid login credentials",
            )
        user = _UserRow(rows[0][0], rows[0][1], rows[0][3], rows[0][4])
        session_rows = await self._query(
            "INSERT INTO auth.sessions (user_id) VALUES (%s) RETURNING id::text", user.id
        )
        return await self._issue(user, session_rows[0][0])

    async def _refresh_grant(self, body: dict[str, Any]) -> web.Response:
        token = body.get("refresh_token")
        if not isinstance(token, str) or not token:
            return _error(400, "validation_failed", "Refresh Token is required")
        # Revoke-and-return in one statement so two concurrent refreshes cannot both succeed.
        rows = await self._query(
            "UPDATE auth.refresh_tokens SET revoked = true WHERE token = %s AND NOT revoked "
            "RETURNING session_id::text",
            token,
        )
        if not rows:
            known = await self._query("SELECT 1 FROM auth.refresh_tokens WHERE token = %s", token)
            if known:
                return _error(
                    400,
                    "refresh_token_already_used",
                    "Invalid Refresh Token: Already Used",
                    error="invalid_grant",
                )
            return _error(
                400,
                "refresh_token_not_found",
                "Invalid Refresh Token: Refresh Token Not Found",
                error="invalid_grant",
            )
        users = await self._query(
            "SELECT u.id::text, u.email, u.created_at, u.raw_user_meta_data FROM auth.sessions s "
            "JOIN auth.users u ON u.id = s.user_id WHERE s.id = %s",
            rows[0][0],
        )
        if not users:
            return _error(
                400,
                "session_not_found",
                "Invalid Refresh Token: Session Expired",
                error="invalid_grant",
            )
        return await self._issue(_UserRow(*users[0]), rows[0][0])

    async def _issue(self, user: _UserRow, session_id: str) -> web.Response:
        refresh_token = secrets.token_urlsafe(24)
        await self._query(
            "INSERT INTO auth.refresh_tokens (token, session_id) VALUES (%s, %s)",
            refresh_token,
            session_id,
        )
        lifetime = int(self._lifetime_s())
        now = int(time.time())
        access_token = make_user_access_token(
            self._secret,
            user_id=user.id,
            email=user.email,
            session_id=session_id,
            lifetime_s=lifetime,
            issuer=self.issuer,
            issued_at=now,
            user_metadata=user.metadata,
        )
        body = {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": lifetime,
            "expires_at": now + lifetime,
            "refresh_token": refresh_token,
            "user": self._user_json(user, last_sign_in=datetime.now(UTC)),
        }
        return web.json_response(body, headers={_API_VERSION_HEADER: _API_VERSION})

    @staticmethod
    def _user_json(user: _UserRow, *, last_sign_in: datetime | None = None) -> dict[str, Any]:
        created = _iso(user.created_at)
        return {
            "id": user.id,
            "aud": "authenticated",
            "role": "authenticated",
            "email": user.email,
            "email_confirmed_at": created,
            "phone": "",
            "confirmed_at": created,
            "last_sign_in_at": _iso(last_sign_in),
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": dict(user.metadata),
            "identities": [],
            "created_at": created,
            "updated_at": created,
            "is_anonymous": False,
        }

    # --- authenticated endpoints --------------------------------------------------------------

    async def _authenticate(self, request: web.Request) -> tuple[_UserRow, str] | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "no_authorization", "This endpoint requires a Bearer token")
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience="authenticated")
        except jwt.ExpiredSignatureError:
            return _error(
                403,
                "bad_jwt",
                "invalid JWT: unable to parse or verify signature, "
                "token has invalid claims: token is expired",
            )
        except jwt.InvalidTokenError as exc:
            return _error(
                403, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {exc}"
            )
        sub, session_id = claims.get("sub"), claims.get("session_id")
        try:
            uuid.UUID(str(sub))
        except ValueError:
            return _error(403, "bad_jwt", "invalid claim: missing sub claim")
        rows = await self._query(
            "SELECT id::text, email, created_at, raw_user_meta_data FROM auth.users WHERE id = %s",
            sub,
        )
        if not rows:
            return _error(403, "user_not_found", "User from sub claim in JWT does not exist")
        if session_id is not None:
            try:
                uuid.UUID(str(session_id))
            except ValueError:
                return _error(403, "bad_jwt", "invalid claim: session_id claim is not a UUID")
            live = await self._query(
                "SELECT 1 FROM auth.sessions WHERE id = %s AND user_id = %s", session_id, sub
            )
            if not live:
                return _error(
                    403, "session_not_found", "Session from session_id claim in JWT does not exist"
                )
        return _UserRow(*rows[0]), str(session_id) if session_id else ""

    async def _user(self, request: web.Request) -> web.Response:
        result = await self._authenticate(request)
        if isinstance(result, web.Response):
            return result
        user, _ = result
        return web.json_response(self._user_json(user), headers={_API_VERSION_HEADER: _API_VERSION})

    async def _logout(self, request: web.Request) -> web.Response:
        result = await self._authenticate(request)
        if isinstance(result, web.Response):
            return result
        user, session_id = result
        scope = request.query.get("scope", "global")
        if scope == "local" and session_id:
            await self._query("DELETE FROM auth.sessions WHERE id = %s", session_id)
        elif scope == "others":
            await self._query(
                "DELETE FROM auth.sessions WHERE user_id = %s AND id::text <> %s",
                user.id,
                session_id,
            )
        elif scope in ("global", "local"):
            await self._query("DELETE FROM auth.sessions WHERE user_id = %s", user.id)
        else:
            return _error(400, "validation_failed", "Unsupported logout scope")
        return web.Response(status=204, headers={_API_VERSION_HEADER: _API_VERSION})
