"""JWT claims read without verification, and HS256 minting (contactsync_kit.tokens)."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from contactsync_kit.tokens import mint_hs256, unverified_claims

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def test_minted_tokens_carry_the_claims_and_a_lifetime_from_the_issue_time() -> None:
    token = mint_hs256(SECRET, {"role": "anon", "sub": "u1"}, lifetime_s=60, issued_at=1_000)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"role": "anon", "sub": "u1", "iat": 1_000, "exp": 1_060}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_a_negative_lifetime_gives_a_token_that_is_already_expired() -> None:
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(mint_hs256(SECRET, {}, lifetime_s=-120), SECRET, algorithms=["HS256"])


def test_claims_are_read_whatever_the_signature() -> None:
    token = mint_hs256(
        "some-other-secret-nobody-here-knows-0123", {"role": "service_role"}, lifetime_s=60
    )
    claims = unverified_claims(token)
    assert claims is not None and claims["role"] == "service_role"


def _segment(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "sb_publishable_abc",
        "a.b",
        "a.b.c.d",
        "x.%%%.y",
        f"h.{_segment(b'not json')}.s",
        f"h.{_segment(json.dumps([1, 2]).encode())}.s",  # JSON, but not an object
        f"h.{_segment(bytes([0xFF, 0xFE]))}.s",  # not UTF-8
    ],
)
def test_anything_that_is_not_a_jwt_has_no_claims(token: str) -> None:
    assert unverified_claims(token) is None
