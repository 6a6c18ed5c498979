"""Building a supabase-py client that acts as a signed-in user, and nothing more privileged.

The kit reads only what Row Level Security lets the signed-in user see. Keys and tokens pass
by allow-list, before any request is made: the project key only as exactly ``sb_publishable_…``
or a JWT whose role is anon, an access token only as a JWT whose role is authenticated.
Anything naming a privileged role (``service_role``, ``postgres``, ``supabase_admin``…)
anywhere in its claims, in any case or spelling, is refused as privileged.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
from supabase import AsyncClient, AsyncClientOptions, AsyncSupabaseException, acreate_client
from supabase_auth.errors import AuthApiError, AuthError, AuthRetryableError

from .clock import Clock
from .errors import ContactSyncError
from .options import DEFAULT_OPTIONS
from .results import SyncErrorKind
from .tokens import unverified_claims
from .transport import AiohttpTransport

__all__ = [
    "BadCredentialsError",
    "ConfirmedUser",
    "PrivilegedKeyError",
    "ProjectRefusedError",
    "SignInError",
    "TokenInfo",
    "anonymous_client",
    "bearer_token",
    "confirm_user",
    "ensure_access_token",
    "ensure_user_level_key",
    "inspect_token",
    "sign_in",
]

__io__ = "network"


class PrivilegedKeyError(ContactSyncError, ValueError):
    """A key or token that bypasses Row Level Security was offered to the kit.

    Also a `ValueError` (the argument's value is what is wrong), as before `ContactSyncError`.
    """

    kind = SyncErrorKind.AUTH


class SignInError(ContactSyncError, RuntimeError):
    """Signing in failed; `message` is safe to show to people.

    `kind` is ``network`` when the server could not be reached, ``auth`` otherwise. Also a
    `RuntimeError`, as before `ContactSyncError`.
    """

    def __init__(
        self, message: str, *, status: int | None = None, kind: SyncErrorKind = SyncErrorKind.AUTH
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


class BadCredentialsError(SignInError):
    """The server refused the email and password (not the project, its key or the network)."""


class ProjectRefusedError(SignInError):
    """The project's URL or key was refused, by supabase-py's own check or by the server."""


# Database roles that bypass RLS or own the database: a key or token naming one of them
# anywhere in its claims is refused, whatever else it says.
_PRIVILEGED_ROLES: Final = frozenset(
    {
        "service_role",
        "postgres",
        "supabase_admin",
        "supabase_auth_admin",
        "supabase_storage_admin",
        "supabase_functions_admin",
        "supabase_realtime_admin",
        "supabase_replication_admin",
        "supabase_read_only_user",
        "dashboard_user",
        "pgbouncer",
        "authenticator",
    }
)
_PUBLISHABLE: Final = re.compile(r"sb_publishable_[A-Za-z0-9_-]+", re.ASCII)
_JWT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", re.ASCII)
_MAX_TOKEN_CHARS: Final = 16_384
_MAX_CLAIM_NODES: Final = 10_000
_LATEST_EXP: Final = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime holds


def _fold(text: str) -> str:
    """`text` as a comparison key: NFKC, no whitespace or invisible characters, case-folded."""
    normal = unicodedata.normalize("NFKC", text)
    return "".join(
        ch
        for ch in normal
        if not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc", "Zs")
    ).casefold()


def _names_privileged_role(claims: Any) -> bool:
    """True if any key or string value, at any depth, folds to a privileged role name."""
    stack, seen = [claims], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > _MAX_CLAIM_NODES:
            return True  # a claims tree this large is not a Supabase token: fail closed
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            folded = _fold(node)
            if folded in _PRIVILEGED_ROLES or folded.startswith("sb_secret_"):
                return True
    return False


def _expiry(claims: dict[str, Any]) -> tuple[datetime | None, bool]:
    """`exp` as an aware datetime and whether it is a sane one (absent counts as sane)."""
    if "exp" not in claims:
        return None, True
    exp = claims["exp"]
    if (
        isinstance(exp, bool)
        or not isinstance(exp, int | float)
        or not math.isfinite(exp)
        or not 0 <= exp <= _LATEST_EXP
    ):
        return None, False
    return datetime.fromtimestamp(exp, UTC), True


@dataclass(frozen=True)
class TokenInfo:
    """What the kit needs to know about an API key or access token (read, not verified).

    `kind` is "jwt" or "publishable" only for a string of exactly that shape; "secret" for
    anything that is a secret key in any spelling; "opaque" otherwise. `privileged` is set
    when the key is a secret key or names a privileged database role anywhere in its claims.
    """

    kind: str  # "jwt", "publishable", "secret" or "opaque"
    role: str | None = None
    subject: str | None = None
    email: str | None = None
    expires_at: datetime | None = None
    privileged: bool = False
    valid_expiry: bool = True

    @property
    def bypasses_rls(self) -> bool:
        """True for keys the kit must never use."""
        return self.privileged

    @property
    def is_user(self) -> bool:
        """True when the token stands for a signed-in user (a JWT whose role is authenticated)."""
        return (
            self.kind == "jwt"
            and self.role == "authenticated"
            and not self.privileged
            and self.valid_expiry
        )

    @property
    def is_project_key(self) -> bool:
        """True for a usable project key: ``sb_publishable_…`` or a JWT whose role is anon."""
        if self.privileged:
            return False
        return self.kind == "publishable" or (
            self.kind == "jwt" and self.role == "anon" and self.valid_expiry
        )


def inspect_token(token: object) -> TokenInfo:
    """Classify an API key or JWT from its shape and unverified claims; never raises.

    The signature is not checked: the server does that. This is only to refuse privileged
    keys early and to tell a signed-in session from the anon fallback.
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
        return TokenInfo(kind="opaque")
    folded = _fold(token)
    if folded.startswith("sb_secret_") or folded in _PRIVILEGED_ROLES:
        return TokenInfo(kind="secret", privileged=True)
    if _PUBLISHABLE.fullmatch(token):
        return TokenInfo(kind="publishable", role="anon")
    # Read the claims of the visible characters too, so a privileged token with a stray
    # space or invisible character is still named as privileged.
    visible = "".join(
        ch
        for ch in token
        if not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc", "Zs")
    )
    try:
        claims = unverified_claims(visible)
    except (RecursionError, UnicodeError):
        claims = None
    if claims is None:
        return TokenInfo(kind="opaque")
    expires_at, valid_expiry = _expiry(claims)
    role = claims.get("role")
    subject, email = claims.get("sub"), claims.get("email")
    return TokenInfo(
        kind="jwt" if _JWT.fullmatch(token) else "opaque",
        role=role if isinstance(role, str) else None,
        subject=subject if isinstance(subject, str) else None,
        email=email if isinstance(email, str) else None,
        expires_at=expires_at,
        privileged=_names_privileged_role(claims),
        valid_expiry=valid_expiry,
    )


_REFUSED_PRIVILEGED: Final = (
    "refusing a service-role / secret key: it bypasses Row Level Security. "
    "Use the project's publishable (anon) key and sign in as a user."
)


def ensure_user_level_key(key: object) -> None:
    """Pass only a project key the kit may use; refuse anything else before any request.

    The key passes only as exactly ``sb_publishable_…``, or as a JWT whose role is anon
    (with a sane expiry). Raises `PrivilegedKeyError` for anything claiming a privileged
    role, `SignInError` for anything else; nothing is sent anywhere.
    """
    info = inspect_token(key)
    if info.privileged:
        raise PrivilegedKeyError(_REFUSED_PRIVILEGED)
    if not info.is_project_key:
        raise SignInError(
            "not a project API key: use the publishable key (sb_publishable_…) or the legacy "
            "anon key exactly as the dashboard shows it, without spaces or line breaks"
        )


def ensure_access_token(token: object) -> None:
    """Pass only a user access token: a JWT whose role is authenticated (sane expiry).

    Raises `PrivilegedKeyError` for anything claiming a privileged role, `SignInError` for
    anything else; nothing is sent anywhere.
    """
    info = inspect_token(token)
    if info.privileged:
        raise PrivilegedKeyError(_REFUSED_PRIVILEGED)
    if not info.is_user:
        raise SignInError(
            "not a user access token: give the access token (a JWT with role authenticated) "
            "of a signed-in user, exactly as issued"
        )


def bearer_token(client: AsyncClient) -> str | None:
    """The token the client would send as ``Authorization: Bearer …`` right now."""
    header = client.options.headers.get("Authorization") or client.options.headers.get(
        "authorization"
    )
    if not header or not header.lower().startswith("bearer "):
        return None
    return header[7:].strip()


async def sign_in(
    url: str,
    key: str,
    *,
    email: str | None = None,
    password: str | None = None,
    access_token: str | None = None,
    timeout_s: float = DEFAULT_OPTIONS.request_timeout_s,
    retry: bool = False,
    http_client: httpx.AsyncClient | None = None,
) -> AsyncClient:
    """Build a supabase-py `AsyncClient` signed in as a user.

    Give `email` and `password` (password grant), or an `access_token` you already hold.
    `key` is the project's publishable/anon key. `timeout_s` applies per request unless you
    pass your own `http_client`, whose settings then rule. Service-role and secret keys are refused
    with `PrivilegedKeyError`; a failed sign-in raises `SignInError` with a message fit to show.
    PostgREST retries are off unless `retry` is set: a failed sync leaves the cache intact
    and is cheap to repeat, while supabase-py's retries would hold a sync for about 7 s.
    """
    ensure_user_level_key(key)
    if access_token is not None:
        ensure_access_token(access_token)
    if access_token is None and (email is None or password is None):
        raise ValueError("sign_in needs email and password, or an access_token")
    options = AsyncClientOptions(
        postgrest_client_retry=retry,
        # supabase-py takes timeouts from the httpx client it is given (its own are deprecated).
        httpx_client=http_client
        or httpx.AsyncClient(timeout=timeout_s, transport=AiohttpTransport()),
        persist_session=False,
    )
    if access_token is not None:
        options.headers["Authorization"] = f"Bearer {access_token}"
    try:
        client = await acreate_client(url, key, options=options)
        if email is not None and password is not None:
            await client.auth.sign_in_with_password({"email": email, "password": password})
    except AuthApiError as exc:
        raise _auth_refusal(exc) from exc
    except AuthRetryableError as exc:
        # supabase_auth wraps connection failures (refused, DNS, timeouts) in this class.
        raise SignInError(f"cannot reach {url}: {exc}", kind=SyncErrorKind.NETWORK) from exc
    except AuthError as exc:
        raise SignInError(f"sign-in failed: {exc}") from exc
    except httpx.HTTPError as exc:
        raise SignInError(
            f"cannot reach {url}: {type(exc).__name__}", kind=SyncErrorKind.NETWORK
        ) from exc
    except AsyncSupabaseException as exc:  # supabase-py's own check of the URL and key
        raise ProjectRefusedError(f"the project URL or key was refused: {exc}") from exc
    return client


@dataclass(frozen=True)
class ConfirmedUser:
    """The person the server vouched for, and how far the local clock is from the server's.

    `clock_offset` is the server's time minus the local clock's (from the answer's ``Date``
    header; zero when the server sent none): negative when this computer's clock is ahead.
    """

    user_id: str
    clock_offset: timedelta


async def confirm_user(client: AsyncClient, url: str, key: str, clock: Clock) -> ConfirmedUser:
    """Ask the server who the client's access token belongs to (``GET /auth/v1/user``).

    A forged, revoked or expired token is refused by the server: `SignInError` (kind
    ``auth``), or kind ``network`` when the server cannot be reached. Nothing local should
    be opened as a person before this returns.
    """
    token = bearer_token(client)
    http = client.options.httpx_client
    if token is None or http is None:
        raise SignInError("no user access token to confirm")
    try:
        response = await http.get(
            f"{url.rstrip('/')}/auth/v1/user",
            headers={"apikey": key, "Authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as exc:
        raise SignInError(
            f"cannot reach {url} to confirm the sign-in: {type(exc).__name__}",
            kind=SyncErrorKind.NETWORK,
        ) from exc
    local_now = clock.now()
    if response.status_code in (401, 403):
        raise SignInError(
            "the server did not accept this access token (forged, revoked or expired); "
            "sign in again",
            status=response.status_code,
        )
    try:
        user_id = response.json()["id"] if response.status_code == 200 else None
    except (ValueError, KeyError, TypeError):
        user_id = None
    claimed = inspect_token(token).subject
    if not isinstance(user_id, str) or not claimed or user_id.lower() != claimed.lower():
        raise SignInError(
            f"the server could not confirm who is signed in ({response.status_code}); "
            "sign in again",
            status=response.status_code,
        )
    return ConfirmedUser(user_id=user_id, clock_offset=_server_offset(response, local_now))


def _server_offset(response: httpx.Response, local_now: datetime) -> timedelta:
    try:
        server_now = parsedate_to_datetime(response.headers["date"])
    except (KeyError, TypeError, ValueError):
        return timedelta(0)
    if server_now.tzinfo is None:
        return timedelta(0)
    return server_now - local_now


async def anonymous_client(
    url: str, key: str, *, timeout_s: float = DEFAULT_OPTIONS.request_timeout_s
) -> AsyncClient:
    """A supabase-py `AsyncClient` holding only the publishable/anon key, signed in as no one.

    For proving what the anon key alone can see (RLS audits). Refuses RLS-bypassing keys.
    """
    ensure_user_level_key(key)
    options = AsyncClientOptions(
        postgrest_client_retry=False,
        persist_session=False,
        httpx_client=httpx.AsyncClient(timeout=timeout_s),
    )
    return await acreate_client(url, key, options=options)


def _auth_refusal(exc: AuthApiError) -> SignInError:
    text = str(exc).lower()
    if exc.status in (400, 401) and "credentials" in text:
        return BadCredentialsError("wrong email or password", status=exc.status)
    if exc.status in (401, 403) and "api key" in text:  # the gateway: "Invalid API key"
        return ProjectRefusedError(
            f"the server refused the project key ({exc.status}): {exc}", status=exc.status
        )
    return SignInError(f"sign-in refused by the server ({exc.status}): {exc}", status=exc.status)
