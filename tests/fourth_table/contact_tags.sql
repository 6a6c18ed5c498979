-- A fourth synced table, for tests/integration/test_fourth_table.py only: tags on contacts,
-- seen by whoever may see the contact (the notes policy's scope), kept fresh by the touch
-- trigger and indexed for the incremental sync.
CREATE TABLE IF NOT EXISTS public.contact_tags (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    contact_id uuid NOT NULL,
    organisation_id uuid NOT NULL REFERENCES public.organisations ON DELETE CASCADE,
    tag text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organisation_id, contact_id)
        REFERENCES public.contacts (organisation_id, id) ON DELETE CASCADE
);
ALTER TABLE public.contact_tags ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.contact_tags FROM anon, authenticated;
GRANT SELECT ON public.contact_tags TO authenticated;
GRANT ALL ON public.contact_tags TO service_role;
CREATE INDEX IF NOT EXISTS contact_tags_contact_id_idx ON public.contact_tags (contact_id);
CREATE INDEX IF NOT EXISTS contact_tags_organisation_updated_at_idx
    ON public.contact_tags (organisation_id, updated_at);
CREATE TRIGGER contact_tags_touch_updated_at BEFORE UPDATE ON public.contact_tags
    FOR EACH ROW EXECUTE FUNCTION private.touch_updated_at();
CREATE POLICY contact_tags_select_scope ON public.contact_tags
    FOR SELECT TO authenticated
    USING (
        organisation_id IN (SELECT private.org_wide_organisation_ids())
        OR contact_id IN (SELECT private.bound_chapter_contact_ids())
    );
