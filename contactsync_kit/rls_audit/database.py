"""The database side (psycopg, as superuser / catalog reader): ground truth and the catalog."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import polars as pl

from .frames import UNIVERSE_SCHEMA
from .lint import PolicyCatalog, lint_policies
from .truth import AuditUser, GroundTruth, members_frame

__all__ = ["fetch_policy_catalog", "ground_truth_from_database", "lint_database"]

_S = pl.String()
_B = pl.Boolean()

_UNIVERSE_SQL: Final = """
    SELECT 'organisations', o.id::text, o.id::text, NULL, NULL, NULL, NULL::boolean
      FROM public.organisations o WHERE o.id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'chapters', c.organisation_id::text, c.id::text, c.id::text, NULL, NULL, NULL
      FROM public.chapters c WHERE c.organisation_id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'organisation_members', m.organisation_id::text,
           m.user_id::text || ':' || m.organisation_id::text, m.chapter_id::text, NULL,
           m.user_id::text, NULL
      FROM public.organisation_members m WHERE m.organisation_id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'contacts', c.organisation_id::text, c.id::text, c.chapter_id::text, c.id::text, NULL,
           c.full_name ILIKE %(pattern)s
      FROM public.contacts c WHERE c.organisation_id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'notes', n.organisation_id::text, n.id::text, c.chapter_id::text,
           n.contact_id::text, NULL, NULL
      FROM public.notes n JOIN public.contacts c ON c.id = n.contact_id
     WHERE n.organisation_id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'contact_assignments', a.organisation_id::text, a.id::text, c.chapter_id::text,
           a.contact_id::text, NULL, NULL
      FROM public.contact_assignments a JOIN public.contacts c ON c.id = a.contact_id
     WHERE a.organisation_id = ANY(%(orgs)s::uuid[])
"""
# Column order of _UNIVERSE_SQL is UNIVERSE_SCHEMA's.


def _like_pattern(postgrest_pattern: str) -> str:
    # PostgREST's ilike uses * as the wildcard; SQL uses %.
    return postgrest_pattern.replace("*", "%")


def ground_truth_from_database(
    database_url: str, users: Iterable[Any], organisation_ids: Sequence[str], *,
    search_pattern: str = "*a*",
) -> GroundTruth:
    """Read the ground truth as superuser: ids of every row of the organisations, the users'
    ids (by email), whether each contact matches `search_pattern`. No personal value leaves
    the database: the name match is computed in SQL.

    `users` are `AuditUser`s (or anything `AuditUser.of` takes); their expected memberships
    are the caller's, not read from the database, so a membership the database has but the
    caller did not expect shows up as a leak.
    """
    import psycopg

    audit_users = [AuditUser.of(u) for u in users]
    orgs = [o.lower() for o in organisation_ids]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(_UNIVERSE_SQL, {"orgs": orgs,
                                            "pattern": _like_pattern(search_pattern)}).fetchall()
        emails = [u.email for u in audit_users]
        ids: dict[str, str] = {
            str(email): str(user_id) for email, user_id in conn.execute(
                "SELECT email, id::text FROM auth.users WHERE email = ANY(%s)", (emails,))}
    universe = pl.DataFrame(rows, schema=UNIVERSE_SCHEMA, orient="row")
    return GroundTruth(universe=universe, members=members_frame(audit_users, ids),
                       search_pattern=search_pattern)


_TABLES_SQL: Final = """
    SELECT n.nspname, c.relname, c.relrowsecurity,
           array(SELECT a.attname::text FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s)
     ORDER BY 1, 2
"""
_POLICIES_SQL: Final = """
    SELECT schemaname::text, tablename::text, policyname::text, permissive, roles::text[],
           cmd, qual, with_check
      FROM pg_policies WHERE schemaname = ANY(%s) ORDER BY 1, 2, 3
"""
_INDEXES_SQL: Final = """
    SELECT n.nspname, c.relname, i.relname,
           array(SELECT a.attname::text
                   FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                  ORDER BY k.ord)
      FROM pg_index ix
      JOIN pg_class c ON c.oid = ix.indrelid
      JOIN pg_class i ON i.oid = ix.indexrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(%s)
     ORDER BY 1, 2, 3
"""


def fetch_policy_catalog(database_url: str, schemas: Sequence[str] = ("public",),
                         ) -> PolicyCatalog:
    """Read tables, policies and indexes of the exposed `schemas` from the catalog."""
    import psycopg

    wanted = list(schemas)
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(_TABLES_SQL, (wanted,)).fetchall()
        policies = conn.execute(_POLICIES_SQL, (wanted,)).fetchall()
        indexes = conn.execute(_INDEXES_SQL, (wanted,)).fetchall()
    strings = pl.List(pl.String())
    return PolicyCatalog(
        tables=pl.DataFrame(tables, orient="row", schema={
            "schema": _S, "table": _S, "rls_enabled": _B, "columns": strings}),
        policies=pl.DataFrame(policies, orient="row", schema={
            "schema": _S, "table": _S, "policy": _S, "permissive": _S, "roles": strings,
            "command": _S, "using": _S, "with_check": _S}),
        indexes=pl.DataFrame(indexes, orient="row", schema={
            "schema": _S, "table": _S, "index": _S, "columns": strings}),
    )


def lint_database(database_url: str, schemas: Sequence[str] = ("public",)) -> pl.DataFrame:
    """`lint_policies` over the live catalog at `database_url`."""
    return lint_policies(fetch_policy_catalog(database_url, schemas))

