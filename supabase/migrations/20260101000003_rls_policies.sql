-- Row level security for the app tables. Safe to run on a real Supabase project.
--
-- Users only read (the kit never writes), so there are SELECT policies only: with RLS enabled
-- and no INSERT/UPDATE/DELETE policy, writes by `authenticated` are denied even if granted.
--
-- Visibility rules:
--   * organisations: those the user is a member of;
--   * chapters: all chapters of orgs where the user's membership is org-wide, else only the
--     chapter the membership is bound to;
--   * organisation_members: the user's own rows;
--   * contacts: org-wide members see all of the org's contacts; chapter-bound members see only
--     the contacts of their chapter (not the org's contacts without a chapter);
--   * notes, contact_assignments: those of the contacts the user can see.
--
-- The helpers are SECURITY DEFINER so that a policy on one table does not re-enter the policy
-- on organisation_members (no recursion, and each helper runs once per statement, not per row,
-- because the policies call them as `IN (SELECT ...)` like Supabase's RLS performance guide
-- recommends, with `(SELECT auth.uid())` wrapped for the same reason). They live in `private`,
-- which PostgREST does not expose.

CREATE OR REPLACE FUNCTION private.member_organisation_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT m.organisation_id
    FROM public.organisation_members m
    WHERE m.user_id = (SELECT auth.uid())
$$;

CREATE OR REPLACE FUNCTION private.org_wide_organisation_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT m.organisation_id
    FROM public.organisation_members m
    WHERE m.user_id = (SELECT auth.uid()) AND m.chapter_id IS NULL
$$;

CREATE OR REPLACE FUNCTION private.bound_chapter_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT m.chapter_id
    FROM public.organisation_members m
    WHERE m.user_id = (SELECT auth.uid()) AND m.chapter_id IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION private.bound_chapter_contact_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT c.id
    FROM public.organisation_members m
    JOIN public.contacts c
        ON c.organisation_id = m.organisation_id AND c.chapter_id = m.chapter_id
    WHERE m.user_id = (SELECT auth.uid()) AND m.chapter_id IS NOT NULL
$$;

REVOKE ALL ON FUNCTION private.member_organisation_ids(), private.org_wide_organisation_ids(),
    private.bound_chapter_ids(), private.bound_chapter_contact_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.member_organisation_ids(), private.org_wide_organisation_ids(),
    private.bound_chapter_ids(), private.bound_chapter_contact_ids() TO authenticated;

ALTER TABLE public.organisations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.chapters ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.organisation_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contact_assignments ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS organisations_select_member ON public.organisations;
CREATE POLICY organisations_select_member ON public.organisations
    FOR SELECT TO authenticated
    USING (id IN (SELECT private.member_organisation_ids()));

DROP POLICY IF EXISTS chapters_select_member ON public.chapters;
CREATE POLICY chapters_select_member ON public.chapters
    FOR SELECT TO authenticated
    USING (
        organisation_id IN (SELECT private.org_wide_organisation_ids())
        OR id IN (SELECT private.bound_chapter_ids())
    );

DROP POLICY IF EXISTS organisation_members_select_own ON public.organisation_members;
CREATE POLICY organisation_members_select_own ON public.organisation_members
    FOR SELECT TO authenticated
    USING (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS contacts_select_scope ON public.contacts;
CREATE POLICY contacts_select_scope ON public.contacts
    FOR SELECT TO authenticated
    USING (
        organisation_id IN (SELECT private.org_wide_organisation_ids())
        OR chapter_id IN (SELECT private.bound_chapter_ids())
    );

DROP POLICY IF EXISTS notes_select_scope ON public.notes;
CREATE POLICY notes_select_scope ON public.notes
    FOR SELECT TO authenticated
    USING (
        organisation_id IN (SELECT private.org_wide_organisation_ids())
        OR contact_id IN (SELECT private.bound_chapter_contact_ids())
    );

DROP POLICY IF EXISTS contact_assignments_select_scope ON public.contact_assignments;
CREATE POLICY contact_assignments_select_scope ON public.contact_assignments
    FOR SELECT TO authenticated
    USING (
        organisation_id IN (SELECT private.org_wide_organisation_ids())
        OR contact_id IN (SELECT private.bound_chapter_contact_ids())
    );

-- Supabase grants everything on new public tables to anon and authenticated by default
-- privileges; take it all back and grant only what the policies are written for.
REVOKE ALL ON public.organisations, public.chapters, public.organisation_members,
    public.contacts, public.notes, public.contact_assignments FROM anon, authenticated;
GRANT SELECT ON public.organisations, public.chapters, public.organisation_members,
    public.contacts, public.notes, public.contact_assignments TO authenticated;
GRANT ALL ON public.organisations, public.chapters, public.organisation_members,
    public.contacts, public.notes, public.contact_assignments TO service_role;
