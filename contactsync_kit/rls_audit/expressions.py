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

__all__ = ["bare_auth_calls", "constrains_by_caller", "is_true", "referenced_columns"]

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
