"""Building a supabase-py client that acts as a signed-in user, and nothing more privileged.

The kit reads only what Row Level Security lets the signed-in user see. Keys that bypass RLS
(``sb_secret_…`` keys, legacy JWTs with ``role: service_role``) are refused here, before any
request is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from supabase_auth.errors import AuthApiError, AuthError, AuthRetryableError

from .errors import ContactSyncError
from .results import SyncErrorKind
from .tokens import unverified_claims

__all__ = [
    "PrivilegedKeyError",
    "SignInError",
    "TokenInfo",
    "anonymous_client",
    "bearer_token",
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

    def __init__(self, message: str, *, status: int | None = None,
                 kind: SyncErrorKind = SyncErrorKind.AUTH) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class TokenInfo:
    """What the kit needs to know about an API key or access token (read, not verified)."""

    kind: str  # "jwt", "publishable", "secret" or "opaque"
    role: str | None = None
    subject: str | None = None
    email: str | None = None
    expires_at: datetime | None = None

    @property
    def bypasses_rls(self) -> bool:
        """True for keys the kit must never use."""
        return self.kind == "secret" or self.role == "service_role"

    @property
    def is_user(self) -> bool:
        """True when the token stands for a signed-in user."""
        return self.kind == "jwt" and self.role == "authenticated"


def inspect_token(token: str) -> TokenInfo:
    """Classify an API key or JWT from its shape and unverified claims.

    The signature is not checked: the server does that. This is only to refuse privileged
    keys early and to tell a signed-in session from the anon fallback.
    """
    token = token.strip()
    if token.startswith("sb_secret_"):
        return TokenInfo(kind="secret")
    if token.startswith("sb_publishable_"):
        return TokenInfo(kind="publishable", role="anon")
    claims = unverified_claims(token)
    if claims is None:
        return TokenInfo(kind="opaque")
    exp = claims.get("exp")
    return TokenInfo(
        kind="jwt",
        role=claims.get("role") if isinstance(claims.get("role"), str) else None,
        subject=claims.get("sub") if isinstance(claims.get("sub"), str) else None,
        email=claims.get("email") if isinstance(claims.get("email"), str) else None,
        expires_at=datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None,
    )


def ensure_user_level_key(key: str) -> None:
    """Raise `PrivilegedKeyError` for a key or token that bypasses RLS."""
    if inspect_token(key).bypasses_rls:
        raise PrivilegedKeyError(
            "refusing a service-role / secret key: it bypasses Row Level Security. "
            "Use the project's publishable (anon) key and sign in as a user."
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
    timeout_s: float = 15.0,
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
        ensure_user_level_key(access_token)
    if access_token is None and (email is None or password is None):
        raise ValueError("sign_in needs email and password, or an access_token")
    options = AsyncClientOptions(
        postgrest_client_retry=retry,
        # supabase-py takes timeouts from the httpx client it is given (its own are deprecated).
        httpx_client=http_client or httpx.AsyncClient(timeout=timeout_s),
        persist_session=False,
    )
    if access_token is not None:
        options.headers["Authorization"] = f"Bearer {access_token}"
    try:
        client = await acreate_client(url, key, options=options)
        if email is not None and password is not None:
            await client.auth.sign_in_with_password({"email": email, "password": password})
    except AuthApiError as exc:
        raise SignInError(_auth_message(exc), status=exc.status) from exc
    except AuthRetryableError as exc:
        # supabase_auth wraps connection failures (refused, DNS, timeouts) in this class.
        raise SignInError(f"cannot reach {url}: {exc}", kind=SyncErrorKind.NETWORK) from exc
    except AuthError as exc:
        raise SignInError(f"sign-in failed: {exc}") from exc
    except httpx.HTTPError as exc:
        raise SignInError(f"cannot reach {url}: {type(exc).__name__}",
                          kind=SyncErrorKind.NETWORK) from exc
    return client


async def anonymous_client(url: str, key: str, *, timeout_s: float = 15.0) -> AsyncClient:
    """A supabase-py `AsyncClient` holding only the publishable/anon key, signed in as no one.

    For proving what the anon key alone can see (RLS audits). Refuses RLS-bypassing keys.
    """
    ensure_user_level_key(key)
    options = AsyncClientOptions(postgrest_client_retry=False, persist_session=False,
                                 httpx_client=httpx.AsyncClient(timeout=timeout_s))
    return await acreate_client(url, key, options=options)


def _auth_message(exc: AuthApiError) -> str:
    if exc.status in (400, 401) and "credentials" in str(exc).lower():
        return "wrong email or password"
    return f"sign-in refused by the server ({exc.status}): {exc}"
