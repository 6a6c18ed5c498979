-- The sync digest takes its table list from the client's spec (contactsync_kit/schemas.py,
-- SYNCED_TABLES), so a new synced table is one migration (the table with its RLS policies and
-- an (organisation_id, updated_at) index) plus one spec entry: this function needs no change.
-- Safe to run on a real Supabase project after 0005. Same definition and guarantees as 0005
-- (see its header); only the visible rows are gathered per named table.
--
-- p_tables names tables of the public schema with id uuid, organisation_id uuid and
-- updated_at timestamptz columns. Still SECURITY INVOKER: a caller can digest only rows its
-- RLS policies let it select anyway, and the names are quoted (%I), never spliced. The
-- default is the three tables 0005 covered, so a kit that does not send the list still works.

DROP FUNCTION IF EXISTS public.contactsync_digest(uuid, integer);

CREATE FUNCTION public.contactsync_digest(
    p_organisation_id uuid,
    p_prefix_length integer DEFAULT 0,
    p_tables text[] DEFAULT ARRAY['contacts', 'notes', 'contact_assignments']
) RETURNS TABLE (table_name text, row_count bigint, digest bigint, buckets jsonb)
    LANGUAGE plpgsql STABLE
    SECURITY INVOKER
    SET search_path = ''
AS $$
DECLARE
    v_visible text;
BEGIN
    IF p_tables IS NULL OR pg_catalog.cardinality(p_tables) NOT BETWEEN 1 AND 64 THEN
        RAISE EXCEPTION 'p_tables must name 1 to 64 tables' USING ERRCODE = '22023';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format(
               'SELECT %L::text AS table_name, t.id, t.updated_at FROM public.%I t '
               'WHERE t.organisation_id = $1', name, name), ' UNION ALL ')
      INTO v_visible
      FROM (SELECT DISTINCT pg_catalog.unnest(p_tables) AS name) AS named;
    RETURN QUERY EXECUTE pg_catalog.format($query$
        WITH visible AS (%s), per_bucket AS (
            SELECT v.table_name,
                   CASE WHEN $2 > 0 THEN
                       ((pg_catalog.get_byte(pg_catalog.uuid_send(v.id), 0) * 256
                         + pg_catalog.get_byte(pg_catalog.uuid_send(v.id), 1))
                        >> (4 * (4 - least($2, 4))))
                   ELSE 0 END AS bucket,
                   count(*)::bigint AS n,
                   sum(pg_catalog.uuid_hash_extended(v.id, pg_catalog.timestamp_hash_extended(
                       v.updated_at AT TIME ZONE 'UTC', 0))) AS s
            FROM visible v
            GROUP BY 1, 2
        )
        SELECT b.table_name, sum(b.n)::bigint,
               ((sum(b.s) %% 2305843009213693952 + 2305843009213693952)
                   %% 2305843009213693952)::bigint,
               CASE WHEN $2 > 0 THEN pg_catalog.jsonb_object_agg(b.bucket,
                   pg_catalog.jsonb_build_array(b.n, ((b.s %% 2305843009213693952
                       + 2305843009213693952) %% 2305843009213693952)::bigint)) END
        FROM per_bucket b
        GROUP BY b.table_name
        ORDER BY b.table_name
    $query$, v_visible) USING p_organisation_id, p_prefix_length;
END
$$;

COMMENT ON FUNCTION public.contactsync_digest(uuid, integer, text[]) IS
    'Per table named in p_tables (and id bucket): row count and order-independent digest of '
    '(id, updated_at) over the rows the caller may see (RLS applies). See '
    'contactsync_kit/digest.py.';

REVOKE ALL ON FUNCTION public.contactsync_digest(uuid, integer, text[]) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.contactsync_digest(uuid, integer, text[]) TO authenticated;
