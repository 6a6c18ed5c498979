"""Password hashing for the local stack's ``auth.users``.

GoTrue stores bcrypt hashes made with pgcrypto's ``crypt``. The embedded PostgreSQL build has no
pgcrypto, so the local stack hashes in Python instead: PBKDF2-HMAC-SHA256 (``hashlib``, backed
by OpenSSL) with a random 16-byte salt per user, stored as
``pbkdf2_sha256$<iterations>$<salt-b64>$<hash-b64>`` (the same layout Django uses). The
iteration count is stored with each hash, so it can be raised later without breaking old rows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

__all__ = ["PBKDF2_ITERATIONS", "hash_password", "verify_password"]

__io__ = "none"

# Below OWASP's 600,000 on purpose: this only guards throw-away local demo accounts, and seeding
# and every test sign-in pay for it. 100,000 costs about as much CPU as GoTrue's bcrypt cost 10.
PBKDF2_ITERATIONS: Final = 100_000
_ALGORITHM: Final = "pbkdf2_sha256"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(
    password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None
) -> str:
    """Return the encoded PBKDF2-SHA256 hash of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{_ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded``; False for a mismatch or a malformed hash."""
    try:
        algorithm, iterations_text, salt_text, digest_text = encoded.split("$")
        iterations = int(iterations_text)
        salt, expected = _unb64(salt_text), _unb64(digest_text)
    except ValueError:
        return False
    if algorithm != _ALGORITHM or iterations < 1:
        return False
    actual = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(actual, expected)
