"""Keys and tokens by allow-list: hostile inputs are refused locally, before any request."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from contactsync_kit import (
    ContactCache,
    ContactCacheSyncRepository,
    ManualClock,
    PrivilegedKeyError,
    SignInError,
    SyncFailure,
    inspect_token,
    sign_in,
)
from contactsync_kit.results import SyncErrorKind
from contactsync_kit.testing import FakeSupabase

from .conftest import EMAIL, PASSWORD

SECRET = "a-secret-for-hostile-tokens-long-enough-for-hs256"
SOON = int(time.time()) + 3600


def signed(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def raw_jwt(payload: str) -> str:
    """A JWT-shaped string whose payload is `payload` verbatim (JSON or not)."""

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = segment(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{segment(payload.encode())}.c2ln"


ANON = signed({"role": "anon", "iss": "supabase", "exp": SOON})
USER = signed({"role": "authenticated", "sub": "0c112c48-0000-4000-8000-000000000001", "exp": SOON})
ZWSP = "\u200b"

# (where it is offered, the input, the error it must get)
HOSTILE: dict[str, tuple[str, Any, type[Exception]]] = {
    "service_role JWT": ("key", signed({"role": "service_role"}), PrivilegedKeyError),
    "postgres role JWT": ("key", signed({"role": "postgres"}), PrivilegedKeyError),
    "supabase_admin role JWT": ("key", signed({"role": "supabase_admin"}), PrivilegedKeyError),
    "role in another case": ("key", signed({"role": "Service_Role"}), PrivilegedKeyError),
    "role as a list": ("key", signed({"role": ["anon", "service_role"]}), PrivilegedKeyError),
    "service_role under app_metadata": (
        "key",
        signed({"role": "anon", "app_metadata": {"role": "service_role"}}),
        PrivilegedKeyError,
    ),
    "SERVICE_ROLE under a custom claim path": (
        "key",
        signed({"role": "anon", "https://example.org/claims": {"x-db-role": "SERVICE_ROLE"}}),
        PrivilegedKeyError,
    ),
    "postgres deep in a user token": (
        "token",
        signed(
            {
                "role": "authenticated",
                "exp": SOON,
                "app_metadata": {"claims": [{"db_role": "postgres"}]},
            }
        ),
        PrivilegedKeyError,
    ),
    "service_role JWT as access token": (
        "token",
        signed({"role": "service_role"}),
        PrivilegedKeyError,
    ),
    "SB_SECRET_ upper case": ("key", "SB_SECRET_0123456789abcdef", PrivilegedKeyError),
    "Sb_Secret_ mixed case": ("key", "Sb_Secret_0123456789abcdef", PrivilegedKeyError),
    "secret key with a leading space": ("key", " sb_secret_0123456789", PrivilegedKeyError),
    "secret key with a trailing newline": ("key", "sb_secret_0123456789\n", PrivilegedKeyError),
    "secret key with a zero-width space": ("key", f"sb_{ZWSP}secret_0123", PrivilegedKeyError),
    "secret key after a byte-order mark": ("key", "\ufeffsb_secret_0123", PrivilegedKeyError),
    "secret key in full-width letters": ("key", "ｓｂ_ｓｅｃｒｅｔ_0123", PrivilegedKeyError),
    "secret key as access token": ("token", "sb_secret_0123456789", PrivilegedKeyError),
    "service_role JWT with a zero-width space": (
        "key",
        signed({"role": "service_role"})[:20] + ZWSP + signed({"role": "service_role"})[20:],
        PrivilegedKeyError,
    ),
    "publishable key with a trailing space": ("key", "sb_publishable_abc123 ", SignInError),
    "publishable key with a zero-width space": ("key", f"sb_publishable_{ZWSP}abc", SignInError),
    "anon JWT with a zero-width space": ("key", ANON[:30] + ZWSP + ANON[30:], SignInError),
    "empty string": ("key", "", SignInError),
    "not a string": ("key", None, SignInError),
    "bytes": ("key", b"sb_publishable_abc", SignInError),
    "plain garbage": ("key", "let-me-in", SignInError),
    "three dots of nothing": ("key", "a.b.c", SignInError),
    "payload not JSON": ("key", raw_jwt("role=anon"), SignInError),
    "payload a JSON list": ("key", raw_jwt('["anon"]'), SignInError),
    "payload nested 100,000 deep": ("key", raw_jwt("[" * 100_000 + "]" * 100_000), SignInError),
    "100 KB token": ("key", "sb_publishable_" + "a" * 100_000, SignInError),
    "JWT without a role": ("key", signed({"sub": "x", "exp": SOON}), SignInError),
    "role Anon in another case": ("key", signed({"role": "Anon", "exp": SOON}), SignInError),
    "user token as project key": ("key", USER, SignInError),
    "anon key with exp 1e20": ("key", signed({"role": "anon", "exp": 1e20}), SignInError),
    "anon key with exp NaN": ("key", raw_jwt('{"role":"anon","exp":NaN}'), SignInError),
    "anon key as access token": ("token", ANON, SignInError),
    "publishable key as access token": ("token", "sb_publishable_abc123", SignInError),
    "user token with exp 1e20": (
        "token",
        signed({"role": "authenticated", "exp": 1e20}),
        SignInError,
    ),
    "user token with exp Infinity": (
        "token",
        raw_jwt('{"role":"authenticated","exp":Infinity}'),
        SignInError,
    ),
    "user token with exp 1e400": (
        "token",
        raw_jwt('{"role":"authenticated","exp":1e400}'),
        SignInError,
    ),
    "user token with exp NaN": (
        "token",
        raw_jwt('{"role":"authenticated","exp":NaN}'),
        SignInError,
    ),
    "user token with exp -1e20": (
        "token",
        signed({"role": "authenticated", "exp": -1e20}),
        SignInError,
    ),
    "user token with exp 10**30": (
        "token",
        raw_jwt('{"role":"authenticated","exp":' + "1" + "0" * 30 + "}"),
        SignInError,
    ),
    "user token with exp a string": (
        "token",
        signed({"role": "authenticated", "exp": "tomorrow"}),
        SignInError,
    ),
    "user token with exp true": (
        "token",
        raw_jwt('{"role":"authenticated","exp":true}'),
        SignInError,
    ),
    "Bearer-prefixed user token": ("token", f"Bearer {USER}", SignInError),
}


def test_the_table_holds_at_least_twenty_hostile_inputs() -> None:
    assert len(HOSTILE) >= 20


@pytest.mark.parametrize("label", list(HOSTILE))
async def test_hostile_input_is_refused_before_any_request(label: str) -> None:
    where, value, error = HOSTILE[label]
    fake = FakeSupabase(users={EMAIL: PASSWORD})
    with pytest.raises(error):
        if where == "key":
            await sign_in(
                fake.url, value, email=EMAIL, password=PASSWORD, http_client=fake.http_client()
            )
        else:
            await sign_in(
                fake.url, fake.anon_key, access_token=value, http_client=fake.http_client()
            )
    assert fake.requests == []


@pytest.mark.parametrize("label", list(HOSTILE))
def test_inspecting_hostile_input_never_raises(label: str) -> None:
    where, value, error = HOSTILE[label]
    info = inspect_token(value)
    assert info.bypasses_rls is (error is PrivilegedKeyError)
    assert not (info.is_project_key if where == "key" else info.is_user)


@pytest.mark.parametrize("key", ["sb_publishable_abc123", "sb_publishable_A-b_9", ANON])
async def test_allowed_project_keys_pass(key: str) -> None:
    fake = FakeSupabase(users={EMAIL: PASSWORD})
    client = await sign_in(fake.url, key, access_token=USER, http_client=fake.http_client())
    assert inspect_token(key).is_project_key
    assert client.options.headers["Authorization"] == f"Bearer {USER}"


@pytest.mark.parametrize("exp", ["1e20", "Infinity", "NaN", "-1e20"])
async def test_an_absurd_expiry_on_the_session_fails_a_sync_as_auth_not_an_exception(
    exp: str, org: str
) -> None:
    fake = FakeSupabase(users={EMAIL: PASSWORD})
    client = await sign_in(
        fake.url, fake.anon_key, email=EMAIL, password=PASSWORD, http_client=fake.http_client()
    )
    absurd = raw_jwt(json.dumps({"role": "authenticated", "sub": "u"})[:-1] + f',"exp":{exp}}}')
    client.options.headers["Authorization"] = f"Bearer {absurd}"
    repo = ContactCacheSyncRepository(client, ContactCache.open(":memory:"), ManualClock())
    result = await repo.sync_contacts_for_organisation(org)
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.AUTH
    info = inspect_token(absurd)
    assert info.expires_at is None and not info.valid_expiry and not info.is_user
