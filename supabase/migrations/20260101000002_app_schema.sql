-- The app's tables. Safe to run on a real Supabase project (SQL editor or `supabase db push`):
-- it only relies on what Supabase already provides (auth.users, gen_random_uuid()).
--
-- Where a row carries both organisation_id and a chapter_id/contact_id, the reference is one
-- composite foreign key (organisation_id, x) -> (organisation_id, id) instead of a single-column
-- one: it also guarantees the row's organisation is its chapter's/contact's (the RLS policies
-- rely on that), and it implies the single-column reference (MATCH SIMPLE: a NULL chapter_id is
-- not checked, as before). Having both would give PostgREST two relationships between the same
-- tables and make `select=*,notes(*)` fail with PGRST201 (ambiguous embedding).

CREATE SCHEMA IF NOT EXISTS private;
-- Not in PostgREST's exposed schemas (`public` only), so nothing here is reachable over HTTP.
REVOKE ALL ON SCHEMA private FROM PUBLIC;
GRANT USAGE ON SCHEMA private TO authenticated, service_role;

CREATE TABLE IF NOT EXISTS public.organisations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.chapters (
    id uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES public.organisations ON DELETE CASCADE,
    name text NOT NULL,
    -- Target of the composite foreign keys below: a chapter always belongs to the row's org.
    UNIQUE (organisation_id, id)
);

CREATE TABLE IF NOT EXISTS public.organisation_members (
    user_id uuid NOT NULL REFERENCES auth.users ON DELETE CASCADE,
    organisation_id uuid NOT NULL REFERENCES public.organisations ON DELETE CASCADE,
    chapter_id uuid NULL,
    role text NOT NULL CHECK (role IN ('admin', 'coordinator', 'volunteer')),
    PRIMARY KEY (user_id, organisation_id),
    -- The RLS policies trust that a member's chapter is one of the member's organisation.
    FOREIGN KEY (organisation_id, chapter_id) REFERENCES public.chapters (organisation_id, id)
);

CREATE TABLE IF NOT EXISTS public.contacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid NOT NULL REFERENCES public.organisations ON DELETE CASCADE,
    chapter_id uuid NULL,
    full_name text NOT NULL,
    phone text,
    email text,
    address text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'archived')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Doubles as the (organisation_id, id) index the policies and the sync's filters use.
    UNIQUE (organisation_id, id),
    FOREIGN KEY (organisation_id, chapter_id) REFERENCES public.chapters (organisation_id, id)
);

CREATE TABLE IF NOT EXISTS public.notes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    contact_id uuid NOT NULL,
    organisation_id uuid NOT NULL REFERENCES public.organisations ON DELETE CASCADE,
    author_id uuid NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- A note's organisation_id is denormalised for RLS; this keeps it equal to its contact's.
    FOREIGN KEY (organisation_id, contact_id)
        REFERENCES public.contacts (organisation_id, id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS public.contact_assignments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    contact_id uuid NOT NULL,
    organisation_id uuid NOT NULL REFERENCES public.organisations ON DELETE CASCADE,
    assignee_id uuid NOT NULL,
    role text NOT NULL DEFAULT 'primary' CHECK (role IN ('primary', 'backup')),
    assigned_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organisation_id, contact_id)
        REFERENCES public.contacts (organisation_id, id) ON DELETE CASCADE
);

-- Indexes on every foreign-key and policy column (Supabase's RLS performance guidance).
CREATE INDEX IF NOT EXISTS chapters_organisation_id_idx ON public.chapters (organisation_id);
CREATE INDEX IF NOT EXISTS organisation_members_user_id_idx
    ON public.organisation_members (user_id);
CREATE INDEX IF NOT EXISTS organisation_members_organisation_id_idx
    ON public.organisation_members (organisation_id);
CREATE INDEX IF NOT EXISTS organisation_members_chapter_id_idx
    ON public.organisation_members (chapter_id);
CREATE INDEX IF NOT EXISTS contacts_chapter_id_idx ON public.contacts (chapter_id);
CREATE INDEX IF NOT EXISTS notes_contact_id_idx ON public.notes (contact_id);
CREATE INDEX IF NOT EXISTS notes_organisation_id_idx ON public.notes (organisation_id);
CREATE INDEX IF NOT EXISTS contact_assignments_contact_id_idx
    ON public.contact_assignments (contact_id);
CREATE INDEX IF NOT EXISTS contact_assignments_organisation_id_idx
    ON public.contact_assignments (organisation_id);

-- Keeps updated_at current on UPDATE. An UPDATE that sets updated_at itself keeps its value, so
-- tests and backfills can write explicit timestamps.
CREATE OR REPLACE FUNCTION private.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS contacts_touch_updated_at ON public.contacts;
CREATE TRIGGER contacts_touch_updated_at BEFORE UPDATE ON public.contacts
    FOR EACH ROW EXECUTE FUNCTION private.touch_updated_at();
DROP TRIGGER IF EXISTS notes_touch_updated_at ON public.notes;
CREATE TRIGGER notes_touch_updated_at BEFORE UPDATE ON public.notes
    FOR EACH ROW EXECUTE FUNCTION private.touch_updated_at();
DROP TRIGGER IF EXISTS contact_assignments_touch_updated_at ON public.contact_assignments;
CREATE TRIGGER contact_assignments_touch_updated_at BEFORE UPDATE ON public.contact_assignments
    FOR EACH ROW EXECUTE FUNCTION private.touch_updated_at();
