-- The sync digest: proof that a client's cache equals what RLS shows its user. Safe to run on a
-- real Supabase project after 0002/0003.
--
-- public.contactsync_digest(organisation_id, prefix_length) returns, per table, the number of
-- rows and an order-independent digest of (id, updated_at) over the rows the CALLER may see
-- (SECURITY INVOKER: the tables' RLS policies apply exactly as they do to the sync), and with
-- prefix_length 1-4 the same per bucket of ids (the first prefix_length hex digits, read as an
-- integer) as a JSON object {bucket: [row_count, digest]}, to locate where a cache differs. One row per
-- table however many buckets, so PostgREST's db-max-rows cannot cut the answer short.
--
-- Per row h = uuid_hash_extended(id, timestamp_hash_extended(updated_at AT TIME ZONE 'UTC', 0)),
-- PostgreSQL's own (lookup3) hashes: a fraction of a microsecond per row, where parsing the
-- uuid's hex in SQL costs several. The digest is sum(h) mod 2^61. contactsync_kit/digest.py is
-- the client's twin of this definition; a test checks both agree on the same rows.
-- updated_at is maintained by the triggers of 0002 (an UPDATE that leaves it unchanged moves it
-- to now()), so any change of a row changes its hash.

CREATE OR REPLACE FUNCTION public.contactsync_digest(
    p_organisation_id uuid,
    p_prefix_length integer DEFAULT 0
) RETURNS TABLE (table_name text, row_count bigint, digest bigint, buckets jsonb)
    LANGUAGE sql STABLE PARALLEL SAFE
    SECURITY INVOKER
    SET search_path = ''
AS $$
    WITH visible AS (
        SELECT 'contacts'::text AS table_name, c.id, c.updated_at
        FROM public.contacts c WHERE c.organisation_id = p_organisation_id
        UNION ALL
        SELECT 'notes'::text, n.id, n.updated_at
        FROM public.notes n WHERE n.organisation_id = p_organisation_id
        UNION ALL
        SELECT 'contact_assignments'::text, a.id, a.updated_at
        FROM public.contact_assignments a WHERE a.organisation_id = p_organisation_id
    ), per_bucket AS (
        SELECT v.table_name,
               -- The first p_prefix_length (1-4) hex digits of the id, as an integer: two
               -- byte reads are far cheaper than the uuid's text.
               CASE WHEN p_prefix_length > 0 THEN
                   ((pg_catalog.get_byte(pg_catalog.uuid_send(v.id), 0) * 256
                     + pg_catalog.get_byte(pg_catalog.uuid_send(v.id), 1))
                    >> (4 * (4 - least(p_prefix_length, 4))))
               ELSE 0 END AS bucket,
               count(*)::bigint AS n,
               sum(pg_catalog.uuid_hash_extended(v.id, pg_catalog.timestamp_hash_extended(
                   v.updated_at AT TIME ZONE 'UTC', 0))) AS s
        FROM visible v
        GROUP BY 1, 2
    )
    SELECT b.table_name, sum(b.n)::bigint,
           ((sum(b.s) % 2305843009213693952 + 2305843009213693952)
               % 2305843009213693952)::bigint,
           CASE WHEN p_prefix_length > 0 THEN jsonb_object_agg(b.bucket, jsonb_build_array(
               b.n, ((b.s % 2305843009213693952 + 2305843009213693952)
                     % 2305843009213693952)::bigint)) END
    FROM per_bucket b
    GROUP BY b.table_name
    ORDER BY b.table_name
$$;

COMMENT ON FUNCTION public.contactsync_digest(uuid, integer) IS
    'Per table (and id bucket): row count and order-independent digest of (id, updated_at) '
    'over the rows the caller may see (RLS applies). See contactsync_kit/digest.py.';

-- Supabase grants EXECUTE on new public functions to anon and authenticated by default
-- privileges (and PostgreSQL to PUBLIC): only signed-in users may call this one.
REVOKE ALL ON FUNCTION public.contactsync_digest(uuid, integer) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.contactsync_digest(uuid, integer) TO authenticated;

-- The incremental sync asks each table for the organisation's rows changed since a watermark.
CREATE INDEX IF NOT EXISTS contacts_organisation_updated_at_idx
    ON public.contacts (organisation_id, updated_at);
CREATE INDEX IF NOT EXISTS notes_organisation_updated_at_idx
    ON public.notes (organisation_id, updated_at);
CREATE INDEX IF NOT EXISTS contact_assignments_organisation_updated_at_idx
    ON public.contact_assignments (organisation_id, updated_at);
