"""The database side (psycopg, as superuser / catalog reader): ground truth, the exposed
schemas, the exposed surface and the policy catalog. Nothing personal leaves the database:
ids, names of database objects and booleans computed in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import polars as pl

from ..schemas import SYNCED_TABLES, TableSpec
from .frames import CHAPTER_COLUMN, MEMBERS_SCHEMA, SEARCH_COLUMN, SURFACE_SCHEMA, UNIVERSE_SCHEMA
from .lint import ROUTINES_SCHEMA, VIEWS_SCHEMA, PolicyCatalog, lint_policies
from .truth import AuditUser, GroundTruth, members_frame, with_recorded_memberships

__all__ = [
    "exposed_schemas",
    "fetch_policy_catalog",
    "fetch_surface",
    "ground_truth_from_database",
    "lint_database",
    "universe_sql",
]
__io__ = "network"

_S = pl.String()
_B = pl.Boolean()
_STRINGS = pl.List(pl.String())

_SCOPE_UNIVERSE_SQL: Final = """
    SELECT 'organisations', o.id::text, o.id::text, NULL, NULL, NULL, NULL::boolean
      FROM public.organisations o
    UNION ALL
    SELECT 'chapters', c.organisation_id::text, c.id::text, c.id::text, NULL, NULL, NULL
      FROM public.chapters c
    UNION ALL
    SELECT 'organisation_members', m.organisation_id::text,
           m.user_id::text || ':' || m.organisation_id::text, m.chapter_id::text, NULL,
           m.user_id::text, NULL
      FROM public.organisation_members m
"""


def _synced_universe_sql(spec: TableSpec, tables: Sequence[TableSpec]) -> str:
    """One synced table's rows as universe rows. A child reaches the root through its
    `parent` chain (``t0`` the table, ``t1`` its parent, …) for the root's chapter and id.
    """
    by_name = {t.name: t for t in tables}
    joins: list[str] = []
    here, alias = spec, "t0"
    while here.parent is not None:
        column, parent_name = here.parent
        parent, parent_alias = by_name[parent_name], f"t{len(joins) + 1}"
        joins.append(
            f"JOIN public.{parent.name} {parent_alias} "
            f"ON {parent_alias}.{parent.key} = {alias}.{column}"
        )
        here, alias = parent, parent_alias
    match = f"{alias}.{SEARCH_COLUMN} ILIKE %(pattern)s" if spec.parent is None else "NULL::boolean"
    return (
        f"SELECT '{spec.name}', t0.{spec.scope}::text, t0.{spec.key}::text, "
        f"{alias}.{CHAPTER_COLUMN}::text, {alias}.{here.key}::text, NULL, {match} "
        f"FROM public.{spec.name} t0 {' '.join(joins)}"
    )


def universe_sql(tables: Sequence[TableSpec] = SYNCED_TABLES) -> str:
    """Ground truth's query: every row of the scoping tables and of the synced `tables`, as
    `UNIVERSE_SCHEMA` rows (the column order is the schema's); ``%(pattern)s`` is the
    search pattern in SQL's ``ILIKE`` form.
    """
    parts = [_SCOPE_UNIVERSE_SQL, *(_synced_universe_sql(spec, tables) for spec in tables)]
    return "\n    UNION ALL\n    ".join(part.strip() for part in parts)


def _like_pattern(postgrest_pattern: str) -> str:
    # PostgREST's ilike uses * as the wildcard; SQL uses %.
    return postgrest_pattern.replace("*", "%")


def ground_truth_from_database(
    database_url: str,
    users: Iterable[Any],
    organisation_ids: Sequence[str],
    *,
    search_pattern: str = "*a*",
    tables: Sequence[TableSpec] = SYNCED_TABLES,
) -> GroundTruth:
    """Read the ground truth as superuser: ids of every row of *every* organisation in the
    scoping tables and the synced `tables` (the spec's, `schemas.SYNCED_TABLES`, by default),
    the users' ids (by email), whether each root row matches `search_pattern`. No personal
    value leaves the database: the name match is computed in SQL. The truth records `tables`,
    and `audit_rls` probes what it covers.

    `users` are `AuditUser`s (or anything `AuditUser.of` takes). Inside `organisation_ids`
    (the audited set) their expected memberships are the caller's, not read from the
    database, so a membership the database has but the caller did not expect shows up as a
    leak; outside it, the memberships the database records are the access they may have, so
    the probes across all organisations can tell a leak anywhere from a legitimate row.
    """
    import psycopg

    audit_users = [AuditUser.of(u) for u in users]
    orgs = [o.lower() for o in organisation_ids]
    emails = [u.email for u in audit_users]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            universe_sql(tables), {"pattern": _like_pattern(search_pattern)}
        ).fetchall()
        ids: dict[str, str] = {
            str(email): str(user_id)
            for email, user_id in conn.execute(
                "SELECT email, id::text FROM auth.users WHERE email = ANY(%s)", (emails,)
            )
        }
        recorded = conn.execute(_MEMBERSHIPS_SQL, (emails,)).fetchall()
    names = {u.email: u.name for u in audit_users}
    recorded_frame = pl.DataFrame(
        [(names[email], *rest) for email, *rest in recorded], schema=MEMBERS_SCHEMA, orient="row"
    )
    universe = pl.DataFrame(rows, schema=UNIVERSE_SCHEMA, orient="row")
    members = with_recorded_memberships(members_frame(audit_users, ids), recorded_frame, orgs)
    return GroundTruth(
        universe=universe, members=members, search_pattern=search_pattern, tables=tuple(tables)
    )


_MEMBERSHIPS_SQL: Final = """
    SELECT u.email, u.id::text, m.organisation_id::text, m.chapter_id::text, m.role
      FROM public.organisation_members m JOIN auth.users u ON u.id = m.user_id
     WHERE u.email = ANY(%s)
"""


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


_SCHEMAS_SQL: Final = """
    SELECT cfg
      FROM pg_db_role_setting s
      JOIN pg_roles r ON r.oid = s.setrole
      LEFT JOIN pg_database d ON d.oid = s.setdatabase,
           unnest(s.setconfig) AS cfg
     WHERE r.rolname = 'authenticator' AND (s.setdatabase = 0 OR d.datname = current_database())
       AND cfg LIKE 'pgrst.db\\_schemas=%%'
     ORDER BY s.setdatabase DESC
     LIMIT 1
"""


def _parse_schemas(setting: str | None) -> tuple[str, ...]:
    value = (setting or "").partition("=")[2] if setting and "=" in setting else setting or ""
    return tuple(part.strip().strip('"') for part in value.split(",") if part.strip())


def exposed_schemas(database_url: str) -> tuple[str, ...]:
    """The schemas PostgREST serves, read where Supabase keeps them: ``pgrst.db_schemas`` on
    the ``authenticator`` role (or the session's ``pgrst.db_schemas`` setting). Empty when the
    database does not say (PostgREST configured by file only).
    """
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return _read_schemas(conn)


def _read_schemas(conn: Any) -> tuple[str, ...]:
    row = conn.execute(_SCHEMAS_SQL).fetchone()
    if row is not None:
        return _parse_schemas(row[0])
    [(setting,)] = conn.execute("SELECT current_setting('pgrst.db_schemas', true)").fetchall()
    return _parse_schemas(setting)


# Roles the API hands requests to; a grant to PUBLIC reaches them too (has_*_privilege sees it).
_API_ROLES: Final = "(VALUES ('anon'), ('authenticated')) AS api(role)"
_NOT_EXTENSION: Final = (
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"
)
_RELATIONS_SQL: Final = f"""
    SELECT n.nspname, c.relname,
           CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                          WHEN 'f' THEN 'foreign table' ELSE 'table' END,
           (SELECT string_agg(api.role || ':' || privs, ' ' ORDER BY api.role)
              FROM {_API_ROLES},
                   LATERAL (SELECT string_agg(p, ',' ORDER BY p) AS privs
                              FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p
                             WHERE CASE WHEN p = 'DELETE'
                                        THEN has_table_privilege(api.role, c.oid, p)
                                        ELSE has_any_column_privilege(api.role, c.oid, p) END
                           ) AS granted
             WHERE has_schema_privilege(api.role, n.oid, 'USAGE') AND privs IS NOT NULL),
           array(SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum),
           CASE WHEN c.relkind IN ('r', 'p') THEN c.relrowsecurity END,
           CASE WHEN c.relkind = 'v' THEN coalesce(
               (SELECT lower(split_part(o, '=', 2)) IN ('true', 'on', '1', 'yes')
                  FROM unnest(c.reloptions) AS o WHERE o LIKE 'security\\_invoker=%%'),
               false) END,
           NULL::boolean, NULL::boolean, NULL::bigint, NULL::boolean,
           pg_get_userbyid(c.relowner)::text, NULL::text, NULL::text[]
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY(%(schemas)s)
       AND {_NOT_EXTENSION.format(oid="c.oid")}
"""
_FUNCTIONS_SQL: Final = f"""
    SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
           'function',
           (SELECT string_agg(api.role || ':EXECUTE', ' ' ORDER BY api.role) FROM {_API_ROLES}
             WHERE has_schema_privilege(api.role, n.oid, 'USAGE')
               AND has_function_privilege(api.role, p.oid, 'EXECUTE')),
           CASE WHEN t.typrelid <> 0
                THEN array(SELECT a.attname::text FROM pg_attribute a
                            WHERE a.attrelid = t.typrelid AND a.attnum > 0
                              AND NOT a.attisdropped ORDER BY a.attnum)
                ELSE array(SELECT arg.name FROM unnest(p.proargnames, p.proargmodes::text[])
                                                AS arg(name, mode) WHERE arg.mode = 't') END,
           NULL::boolean, NULL::boolean, p.prosecdef,
           EXISTS (SELECT 1 FROM unnest(p.proconfig) AS cfg WHERE cfg LIKE 'search\\_path=%%'),
           (p.pronargs - p.pronargdefaults)::bigint, p.proretset,
           pg_get_userbyid(p.proowner)::text,
           (SELECT substr(cfg, 13) FROM unnest(p.proconfig) AS cfg
             WHERE cfg LIKE 'search\\_path=%%' LIMIT 1),
           array(SELECT coalesce(a.name, '') || ' ' || format_type(a.typ, NULL)
                   FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                               p.proargnames,
                               coalesce(p.proargmodes::text[],
                                        array_fill('i'::text, ARRAY[p.pronargs::int])))
                        WITH ORDINALITY AS a(typ, name, mode, ord)
                  WHERE a.mode IN ('i', 'b', 'v') ORDER BY a.ord)
      FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace
      JOIN pg_type t ON t.oid = p.prorettype
     WHERE n.nspname = ANY(%(schemas)s) AND p.prokind = 'f'
       AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
       AND {_NOT_EXTENSION.format(oid="p.oid")}
"""


# Every function outside the system schemas and auth (whose jwt(), uid() and role() are the
# accessors the lint looks for by name), to follow what a policy or view calls.
_ROUTINES_SQL: Final = f"""
    SELECT n.nspname, p.proname, p.prosrc
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'auth', 'pg_toast')
       AND n.nspname NOT LIKE 'pg\\_%%' AND p.prokind IN ('f', 'p')
       AND {_NOT_EXTENSION.format(oid="p.oid")}
"""
_VIEWS_SQL: Final = """
    SELECT n.nspname, c.relname, pg_get_viewdef(c.oid)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY(%(schemas)s)
"""


def _surface_frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """Catalog rows (with ``grants`` as ``role:PRIVS …``) -> `SURFACE_SCHEMA`, reachable only."""
    shaped = []
    for schema, name, kind, grants, *rest in rows:
        if not grants:
            continue  # no API role reaches it
        roles = sorted(g.split(":", 1)[0] for g in grants.split(" "))
        shaped.append((schema, name, kind, roles, grants, *rest))
    return pl.DataFrame(shaped, schema=SURFACE_SCHEMA, orient="row").sort(
        ["schema", "kind", "name"]
    )


def fetch_surface(database_url: str, schemas: Sequence[str] | None = None) -> pl.DataFrame:
    """The exposed surface (`SURFACE_SCHEMA`): every relation and function of the exposed
    `schemas` (by default `exposed_schemas`) that ``anon`` or ``authenticated`` can reach,
    with the grants that reach it. Objects owned by extensions and trigger functions, which
    the API cannot call, are left out.
    """
    return fetch_policy_catalog(database_url, schemas).surface


_TABLES_SCHEMA: Final = pl.Schema(
    {"schema": _S, "table": _S, "rls_enabled": _B, "columns": _STRINGS}
)
_POLICIES_SCHEMA: Final = pl.Schema(
    {
        "schema": _S,
        "table": _S,
        "policy": _S,
        "permissive": _S,
        "roles": _STRINGS,
        "command": _S,
        "using": _S,
        "with_check": _S,
    }
)
_INDEXES_SCHEMA: Final = pl.Schema({"schema": _S, "table": _S, "index": _S, "columns": _STRINGS})


def fetch_policy_catalog(
    database_url: str,
    schemas: Sequence[str] | None = None,
) -> PolicyCatalog:
    """Read tables, policies, indexes and the exposed surface of the exposed `schemas` from
    the catalog. Without `schemas` they are read from the database (`exposed_schemas`);
    when it does not say, ``public`` is assumed and the lint reports it.
    """
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        found = tuple(schemas) if schemas is not None else _read_schemas(conn)
        wanted = list(found or ("public",))
        tables = conn.execute(_TABLES_SQL, (wanted,)).fetchall()
        policies = conn.execute(_POLICIES_SQL, (wanted,)).fetchall()
        indexes = conn.execute(_INDEXES_SQL, (wanted,)).fetchall()
        surface = [
            *conn.execute(_RELATIONS_SQL, {"schemas": wanted}).fetchall(),
            *conn.execute(_FUNCTIONS_SQL, {"schemas": wanted}).fetchall(),
        ]
        routines = conn.execute(_ROUTINES_SQL).fetchall()
        views = conn.execute(_VIEWS_SQL, {"schemas": wanted}).fetchall()
    return PolicyCatalog(
        tables=pl.DataFrame(tables, orient="row", schema=_TABLES_SCHEMA),
        policies=pl.DataFrame(policies, orient="row", schema=_POLICIES_SCHEMA),
        indexes=pl.DataFrame(indexes, orient="row", schema=_INDEXES_SCHEMA),
        surface=_surface_frame(surface),
        exposed_schemas=tuple(wanted),
        schemas_known=bool(found),
        routines=pl.DataFrame(routines, schema=ROUTINES_SCHEMA, orient="row"),
        views=pl.DataFrame(views, schema=VIEWS_SCHEMA, orient="row"),
    )


def lint_database(database_url: str, schemas: Sequence[str] | None = None) -> pl.DataFrame:
    """`lint_policies` over the live catalog at `database_url` (exposed schemas read from
    the database unless `schemas` is given).
    """
    return lint_policies(fetch_policy_catalog(database_url, schemas))
