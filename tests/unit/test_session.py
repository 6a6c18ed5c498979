"""Keys and tokens: only a user session, never a key that bypasses RLS."""

from __future__ import annotations

import httpx
import pytest

from contactsync_kit import (
    CacheVersionError,
    ContactSyncError,
    PrivilegedKeyError,
    SignInError,
    SyncError,
    SyncErrorKind,
    inspect_token,
    sign_in,
)
from contactsync_kit.remote import RemoteFailure
from contactsync_kit.testing import FakeSupabase

from .conftest import EMAIL, PASSWORD


def test_token_kinds_are_recognised(fake: FakeSupabase) -> None:
    assert inspect_token(fake.anon_key).role == "anon"
    assert inspect_token(fake.service_role_key).bypasses_rls
    assert inspect_token("sb_secret_abc123").bypasses_rls
    assert inspect_token("sb_publishable_abc123").kind == "publishable"
    assert not inspect_token("sb_publishable_abc123").bypasses_rls
    user = inspect_token(fake.user_token("someone@example.org"))
    assert user.is_user and user.email == "someone@example.org" and user.expires_at is not None
    assert inspect_token("garbage").kind == "opaque"


@pytest.mark.parametrize("which", ["service_role_jwt", "secret_key"])
async def test_privileged_keys_are_refused_before_any_request(
    fake: FakeSupabase, which: str
) -> None:
    key = fake.service_role_key if which == "service_role_jwt" else "sb_secret_0123456789"
    with pytest.raises(PrivilegedKeyError, match="Row Level Security"):
        await sign_in(fake.url, key, email=EMAIL, password=PASSWORD, http_client=fake.http_client())
    with pytest.raises(PrivilegedKeyError):
        await sign_in(fake.url, fake.anon_key, access_token=key, http_client=fake.http_client())
    assert fake.requests == []


async def test_wrong_password_is_a_sign_in_error_with_a_plain_message(fake: FakeSupabase) -> None:
    with pytest.raises(SignInError, match="wrong email or password"):
        await sign_in(
            fake.url, fake.anon_key, email=EMAIL, password="nope", http_client=fake.http_client()
        )


async def test_sign_in_needs_credentials(fake: FakeSupabase) -> None:
    with pytest.raises(ValueError, match="email and password"):
        await sign_in(fake.url, fake.anon_key, email=EMAIL)


async def test_password_sign_in_puts_the_user_token_on_requests(fake: FakeSupabase) -> None:
    client = await sign_in(
        fake.url, fake.anon_key, email=EMAIL, password=PASSWORD, http_client=fake.http_client()
    )
    header = client.options.headers["Authorization"].removeprefix("Bearer ")
    assert inspect_token(header).is_user
    assert client.options.postgrest_client_retry is False


async def test_an_unreachable_server_is_named_in_the_sign_in_error() -> None:
    from contactsync_kit.testing import FakeSupabase

    fake = FakeSupabase()
    fake.raise_on_auth = httpx.ConnectError("connection refused")
    with pytest.raises(SignInError, match=r"cannot reach http://fake-supabase\.test") as info:
        await sign_in(
            fake.url, fake.anon_key, email=EMAIL, password=PASSWORD, http_client=fake.http_client()
        )
    assert info.value.kind is SyncErrorKind.NETWORK


@pytest.mark.parametrize(
    ("error", "kind", "also"),
    [
        (PrivilegedKeyError("service role"), SyncErrorKind.AUTH, ValueError),
        (SignInError("wrong email or password"), SyncErrorKind.AUTH, RuntimeError),
        (CacheVersionError("newer"), None, RuntimeError),
        (RemoteFailure(SyncError(SyncErrorKind.TIMEOUT, "slow")), SyncErrorKind.TIMEOUT, Exception),
    ],
)
def test_every_kit_error_is_a_contact_sync_error_with_a_kind(
    error: ContactSyncError, kind: SyncErrorKind | None, also: type[Exception]
) -> None:
    # The builtin bases are kept so code written against the old classes still catches them.
    assert isinstance(error, ContactSyncError) and isinstance(error, also)
    assert error.kind is kind


async def test_a_wrong_password_is_an_auth_kind(fake: FakeSupabase) -> None:
    with pytest.raises(ContactSyncError) as info:
        await sign_in(
            fake.url, fake.anon_key, email=EMAIL, password="nope", http_client=fake.http_client()
        )
    assert isinstance(info.value, SignInError) and info.value.kind is SyncErrorKind.AUTH
