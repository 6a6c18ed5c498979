"""Planted exposures: the mistakes the audit must catch, applied to a local stack and undone.

For demonstrating the audit (notebook 03) on the embedded local stack — never against a real
project. `planted(stack, exposure)` applies one and always undoes it on exit; when the
exposure adds an object to the API, it first waits until PostgREST serves it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..schemas import ROOT_TABLE, TABLES

__all__ = [
    "Exposure",
    "chapter_rule_dropped",
    "claims_policy",
    "definer_function",
    "definer_view",
    "materialised_view",
    "members_readable_by_all",
    "open_organisation",
    "planted",
    "tautology",
]
__io__ = "network"

#: The table the planted mistakes open: the one the sync pages through.
_ROOT: Final = f"public.{ROOT_TABLE}"


class _Stack(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def service_role_key(self) -> str: ...

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]: ...

    def reload_schema(self) -> None: ...


@dataclass(frozen=True)
class Exposure:
    """One planted mistake: SQL to apply and to undo, and the API path it adds (if any).

    A policy replacement (`replaces`: table and policy) reads the policy's ``USING`` when
    planted and puts it back on exit.
    """

    name: str
    apply_sql: str
    undo_sql: str = ""
    api_path: str | None = None
    replaces: tuple[str, str] | None = None


def open_organisation(organisation_id: str, *, role: str = "authenticated") -> Exposure:
    """A policy opening one organisation's root rows (`schemas.ROOT_TABLE`) to
    every caller of `role` (for ``anon`` also the grant it needs).
    """
    grant = f"GRANT SELECT ON {_ROOT} TO {role}; " if role == "anon" else ""
    revoke = f"; REVOKE SELECT ON {_ROOT} FROM anon" if role == "anon" else ""
    return Exposure(
        f"organisation opened to {role}",
        f"{grant}CREATE POLICY planted_open ON {_ROOT} FOR SELECT TO {role} "
        f"USING (organisation_id = '{organisation_id}')",
        f"DROP POLICY IF EXISTS planted_open ON {_ROOT}{revoke}",
    )


def tautology(expression: str) -> Exposure:
    """A permissive select policy on the root table whose expression never constrains the
    row.
    """
    return Exposure(
        f"USING ({expression})",
        f"CREATE POLICY planted_tautology ON {_ROOT} FOR SELECT "
        f"TO authenticated USING ({expression})",
        f"DROP POLICY IF EXISTS planted_tautology ON {_ROOT}",
    )


def definer_view() -> Exposure:
    """A plain view over the root table granted to ``authenticated``: it runs as its owner."""
    view = f"planted_{ROOT_TABLE}"
    return Exposure(
        "definer view",
        f"CREATE VIEW public.{view} AS SELECT id, organisation_id FROM {_ROOT}; "
        f"GRANT SELECT ON public.{view} TO authenticated",
        f"DROP VIEW IF EXISTS public.{view}",
        api_path=view,
    )


def materialised_view() -> Exposure:
    """A materialised view of the root table's ids granted to ``authenticated``: it has no
    RLS.
    """
    view = f"planted_{TABLES[ROOT_TABLE].noun}_ids"
    return Exposure(
        "materialised view",
        f"CREATE MATERIALIZED VIEW public.{view} AS SELECT id, organisation_id FROM {_ROOT}; "
        f"GRANT SELECT ON public.{view} TO authenticated",
        f"DROP MATERIALIZED VIEW IF EXISTS public.{view}",
        api_path=view,
    )


def definer_function() -> Exposure:
    """A ``SECURITY DEFINER`` function returning every root row, callable by the API roles
    (PostgreSQL grants EXECUTE to PUBLIC by default) and with no fixed ``search_path``.
    """
    function = f"planted_{ROOT_TABLE}_fn"
    return Exposure(
        "SECURITY DEFINER function",
        f"CREATE FUNCTION public.{function}() RETURNS SETOF {_ROOT} "
        f"LANGUAGE sql STABLE SECURITY DEFINER AS $$ SELECT * FROM {_ROOT} $$",
        f"DROP FUNCTION IF EXISTS public.{function}()",
        api_path=f"rpc/{function}",
    )


def members_readable_by_all() -> Exposure:
    """``organisation_members`` readable by anon and every signed-in user."""
    return Exposure(
        "memberships readable by all",
        "GRANT SELECT ON public.organisation_members TO anon; "
        "CREATE POLICY planted_members ON public.organisation_members FOR SELECT "
        "TO anon, authenticated USING (true)",
        "DROP POLICY IF EXISTS planted_members ON public.organisation_members; "
        "REVOKE SELECT ON public.organisation_members FROM anon",
    )


def chapter_rule_dropped() -> Exposure:
    """The root table's select policy (the stack's ``<table>_select_scope``) without its
    chapter rule: chapter-bound members see their whole organisation.
    """
    return Exposure(
        "chapter rule dropped",
        "organisation_id IN (SELECT private.member_organisation_ids())",
        replaces=(ROOT_TABLE, f"{ROOT_TABLE}_select_scope"),
    )


def claims_policy(claim: str = "organisation_id") -> Exposure:
    """A select policy on the root table scoped by a claim the user edits: ``user_metadata``
    -> `claim` in the token (``auth.updateUser(data=...)`` writes it), so anyone can name
    another organisation there.
    """
    return Exposure(
        f"{ROOT_TABLE} scoped by user_metadata",
        f"CREATE POLICY planted_claims ON {_ROOT} FOR SELECT TO authenticated "
        f"USING (organisation_id = ((select auth.jwt()) -> 'user_metadata' ->> '{claim}')::uuid)",
        f"DROP POLICY IF EXISTS planted_claims ON {_ROOT}",
    )


@contextmanager
def planted(stack: _Stack, exposure: Exposure, *, timeout_s: float = 30) -> Iterator[Exposure]:
    """Apply `exposure` to the local `stack`, yield it, and undo it however the block ends."""
    apply_sql, undo_sql = exposure.apply_sql, exposure.undo_sql
    if exposure.replaces is not None:
        table, policy = exposure.replaces
        [(original,)] = stack.sql(
            "SELECT qual FROM pg_policies WHERE schemaname = 'public' "
            "AND tablename = %s AND policyname = %s",
            table,
            policy,
        )
        apply_sql = f"ALTER POLICY {policy} ON public.{table} USING ({exposure.apply_sql})"
        undo_sql = f"ALTER POLICY {policy} ON public.{table} USING ({original})"
    stack.sql(apply_sql)
    try:
        if exposure.api_path is not None:
            _wait_until_served(stack, exposure.api_path, timeout_s)
        yield exposure
    finally:
        stack.sql(undo_sql)
        stack.reload_schema()


def _wait_until_served(stack: _Stack, api_path: str, timeout_s: float) -> None:
    """Reload PostgREST's schema cache and wait until it knows `api_path` (not 404)."""
    import httpx

    stack.reload_schema()
    key = stack.service_role_key
    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(
            f"{stack.url}/rest/v1/{api_path}",
            params={"limit": "0"},
            headers={"apikey": key, "Authorization": f"Bearer {key}"},
        ).status_code
        if status != 404:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgREST did not pick up {api_path} in {timeout_s} s")
        time.sleep(0.05)
