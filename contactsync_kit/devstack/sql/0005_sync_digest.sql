-- The sync digest: proof that a client's cache equals what RLS shows its user. Safe to run on a
-- real Supabase project after 0002/0003.
--
-- public.contactsync_digest(organisation_id, prefix_length) returns, per table and per bucket
-- of ids (the first `prefix_length` hex characters of the id; 0 = one bucket per table), the
-- number of rows and an order-independent digest of (id, updated_at) over the rows the CALLER
-- may see: SECURITY INVOKER, so the table's RLS policies apply exactly as they do to the sync.
--
-- The digest is defined so a client computes the same number with vectorised integer
-- arithmetic (contactsync_kit/digest.py is its twin; a test checks both agree on the same rows):
--   x1..x4 = the uuid's 32 hex digits as four unsigned 32-bit integers;
--   t      = updated_at as epoch microseconds + 2^55 (positive for any sane date);
--   fold(K) = Horner over [x1, x2, x3, x4, t >> 31, t & (2^31-1)] with multiplier K mod P,
--             P = 2^31 - 1, starting from 0;
--   row    = (fold(K1)^2 mod P, fold(K2)^2 mod P);
--   digest = (sum of first * 2^31 + sum of second) mod 2^61.
-- Every intermediate stays below 2^63, so bigint never overflows; the sums are numeric.
-- updated_at is maintained by the triggers of 0002 (an UPDATE that leaves it unchanged moves
-- it to now()), so any change of a row changes its digest.

CREATE OR REPLACE FUNCTION public.contactsync_digest(
    p_organisation_id uuid,
    p_prefix_length integer DEFAULT 0
) RETURNS TABLE (table_name text, bucket text, row_count bigint, digest bigint)
    LANGUAGE sql STABLE
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
    ), parts AS (
        SELECT v.table_name,
               left(v.id::text, greatest(least(p_prefix_length, 8), 0)) AS bucket,
               ('x' || substr(h.hex, 1, 8))::bit(32)::bigint AS x1,
               ('x' || substr(h.hex, 9, 8))::bit(32)::bigint AS x2,
               ('x' || substr(h.hex, 17, 8))::bit(32)::bigint AS x3,
               ('x' || substr(h.hex, 25, 8))::bit(32)::bigint AS x4,
               (extract(epoch FROM v.updated_at) * 1000000)::bigint
                   + 36028797018963968 AS t
        FROM visible v
        CROSS JOIN LATERAL (SELECT replace(v.id::text, '-', '') AS hex) h
    ), folded AS (
        SELECT p.table_name, p.bucket,
               ((((((p.x1 * 1103515245 + p.x2) % 2147483647 * 1103515245 + p.x3)
                   % 2147483647 * 1103515245 + p.x4) % 2147483647 * 1103515245
                   + (p.t >> 31)) % 2147483647 * 1103515245
                   + (p.t & 2147483647)) % 2147483647) AS f1,
               ((((((p.x1 * 48271 + p.x2) % 2147483647 * 48271 + p.x3)
                   % 2147483647 * 48271 + p.x4) % 2147483647 * 48271
                   + (p.t >> 31)) % 2147483647 * 48271
                   + (p.t & 2147483647)) % 2147483647) AS f2
        FROM parts p
    )
    SELECT f.table_name, f.bucket, count(*)::bigint,
           ((sum(f.f1 * f.f1 % 2147483647) * 2147483648
             + sum(f.f2 * f.f2 % 2147483647)) % 2305843009213693952)::bigint
    FROM folded f
    GROUP BY f.table_name, f.bucket
    ORDER BY f.table_name, f.bucket
$$;

COMMENT ON FUNCTION public.contactsync_digest(uuid, integer) IS
    'Per table and id bucket: row count and order-independent digest of (id, updated_at) '
    'over the rows the caller may see (RLS applies). See contactsync_kit/digest.py.';

-- Supabase grants EXECUTE on new public functions to anon and authenticated by default
-- privileges (and PostgreSQL to PUBLIC): only signed-in users may call this one.
REVOKE ALL ON FUNCTION public.contactsync_digest(uuid, integer) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.contactsync_digest(uuid, integer) TO authenticated;
