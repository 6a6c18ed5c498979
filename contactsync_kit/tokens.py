"""JSON Web Tokens: reading claims without verifying them, and minting HS256 tokens.

Pure: no network, no disk; minting reads the system clock only when no issue time is given.
Verifying a signature is the server's business (PostgREST, GoTrue): the kit only reads claims,
to refuse privileged keys early and to label requests. Minting is for the local stack and the
test doubles, which hold the secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

import jwt

__all__ = ["mint_hs256", "unverified_claims"]

__io__ = "none"


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWT (``header.payload.signature``), signature NOT checked.

    Returns ``None`` for anything that is not three dot-separated parts whose middle part is
    base64url-encoded JSON object.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


def mint_hs256(
    secret: str, claims: Mapping[str, Any], *, lifetime_s: int, issued_at: int | None = None
) -> str:
    """An HS256 JWT with ``claims`` plus ``iat`` and ``exp = iat + lifetime_s``.

    ``issued_at`` defaults to now (whole seconds); ``lifetime_s`` may be negative, which gives
    a token that is already expired.
    """
    iat = int(time.time()) if issued_at is None else issued_at
    return jwt.encode({**claims, "iat": iat, "exp": iat + lifetime_s}, secret, algorithm="HS256")
