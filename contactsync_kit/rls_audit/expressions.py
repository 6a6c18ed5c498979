"""What a policy expression says, read from its deparsed text. Pure.

Heuristics, not a SQL parser: they look for the table's own (unqualified) columns, for a
reference to the caller (``auth.uid()``, ``auth.jwt()``, ``current_user``, the JWT claims, or
a schema-qualified helper such as ``private.member_organisation_ids()``) and for ``true``.
The probes, not the lint, are the proof; the lint names the likely cause.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = [
    "bare_auth_calls",
    "called_functions",
    "constrains_by_caller",
    "is_true",
    "metadata_keys",
    "reads_claims",
    "reads_user_metadata",
    "referenced_columns",
]

_AUTH_CALL: Final = re.compile(r"auth\.(uid|jwt|role)\(\)")
_WRAPPED_AUTH_CALL: Final = re.compile(r"SELECT\s+auth\.(uid|jwt|role)\(\)", re.IGNORECASE)
_STRING_LITERAL: Final = re.compile(r"'(?:[^']|'')*'")
# auth.role() names a role, not a person: `auth.role() = 'authenticated'` admits everyone.
_CALLER: Final = re.compile(
    r"\bauth\.(uid|jwt)\(\)|\bcurrent_user\b|\bsession_user\b|request\.jwt", re.IGNORECASE
)
_HELPER_CALL: Final = re.compile(
    r"(?<![\w.])(?!pg_catalog\.|auth\.)[a-z_]\w*\.[a-z_]\w*\s*\(", re.IGNORECASE
)


def is_true(expression: str | None) -> bool:
    """Whether the expression is the literal ``true``."""
    return expression is not None and expression.strip().strip("()").strip().lower() == "true"


def bare_auth_calls(expression: str) -> int:
    """How many ``auth.uid()/jwt()/role()`` calls are not wrapped in ``(select …)``."""
    return len(_AUTH_CALL.findall(expression)) - len(_WRAPPED_AUTH_CALL.findall(expression))


def referenced_columns(expression: str, columns: Sequence[str]) -> list[str]:
    """The table's own columns an expression filters on (unqualified references)."""
    text = _STRING_LITERAL.sub("''", expression.replace('"', ""))
    found = []
    for column in columns:
        # Unqualified only: `m.user_id` inside a subquery is another table's column, and
        # `name(` is a function call.
        if re.search(rf"(?<![\w.]){re.escape(column)}(?![\w(])", text):
            found.append(column)
    return found


def constrains_by_caller(expression: str, columns: Sequence[str]) -> bool:
    """Whether the expression ties the row (one of its own columns) to the caller.

    False for tautologies such as ``(select auth.uid()) is not null``, ``(select
    auth.role()) = 'authenticated'`` or ``1 = 1``, and for rules that pick rows without
    asking who calls, such as ``organisation_id = '<one organisation>'``.
    """
    text = _STRING_LITERAL.sub("''", expression)
    caller = bool(_CALLER.search(text) or _HELPER_CALL.search(text))
    return caller and bool(referenced_columns(expression, columns))


# The claims a user can edit (updateUser's `data`): in the JWT as user_metadata, in auth.users
# as raw_user_meta_data.
_USER_METADATA: Final = re.compile(r"\b(raw_user_meta_data|user_metadata)\b", re.IGNORECASE)
# Anything that reads the JWT's claims beyond the caller's id and role.
_CLAIMS: Final = re.compile(
    r"\bauth\.jwt\s*\(|request\.jwt\.claim|\b(raw_user_meta_data|user_metadata)\b",
    re.IGNORECASE,
)
_CALLED: Final = re.compile(r"(?<![\w.])([a-z_]\w*)\.([a-z_]\w*)\s*\(", re.IGNORECASE)
# A key read right after the metadata: -> 'k', ->> 'k', #>> '{k,...}', ['k'].
_KEY_AFTER: Final = re.compile(r"(?:->>?|#>>?|\[)\s*\(?\s*'\{?\s*([A-Za-z_][\w]*)", re.IGNORECASE)


# What follows the name before a key: the closing quote, casts, parentheses.
_CAST_TAIL: Final = re.compile(r"^['\")\s]*(::\s*\w+[\s)]*)*")
# The next element of a text-array path: '{user_metadata,organisation_id}'.
_PATH_KEY: Final = re.compile(r"\s*,\s*\"?([A-Za-z_]\w*)")


def reads_user_metadata(text: str | None) -> bool:
    """Whether SQL text reads the claims the user controls (user_metadata,
    raw_user_meta_data), by name.
    """
    return bool(text) and bool(_USER_METADATA.search(text or ""))


def reads_claims(text: str | None) -> bool:
    """Whether SQL text reads JWT claims beyond ``auth.uid()`` / ``auth.role()``."""
    return bool(text) and bool(_CLAIMS.search(text or ""))


def called_functions(text: str | None) -> set[str]:
    """Schema-qualified functions the SQL text calls, as ``schema.name`` (lower case)."""
    return {f"{a}.{b}".lower() for a, b in _CALLED.findall(text or "")}


def metadata_keys(text: str | None) -> set[str]:
    """The keys SQL text reads out of user_metadata / raw_user_meta_data (best effort)."""
    keys: set[str] = set()
    for match in _USER_METADATA.finditer(text or ""):
        tail = (text or "")[match.end() : match.end() + 80]
        tail = _CAST_TAIL.sub("", tail, count=1)
        found = _KEY_AFTER.match(tail) or _PATH_KEY.match(tail)
        if found:
            keys.add(found.group(1))
    return keys
