-- Covering indexes for the composite foreign keys (organisation_id, x) of 0002. Safe to run on
-- a real Supabase project.
--
-- PostgreSQL indexes the referenced side (the UNIQUE (organisation_id, id) constraints) but not
-- the referencing side: without these, deleting or re-keying a chapter or contact scans the
-- referencing table, and Supabase's linter reports `unindexed_foreign_keys`. The single-column
-- indexes of 0002 stay: the policies and the sync filter on those columns alone.
CREATE INDEX IF NOT EXISTS organisation_members_organisation_id_chapter_id_idx
    ON public.organisation_members (organisation_id, chapter_id);
CREATE INDEX IF NOT EXISTS contacts_organisation_id_chapter_id_idx
    ON public.contacts (organisation_id, chapter_id);
CREATE INDEX IF NOT EXISTS notes_organisation_id_contact_id_idx
    ON public.notes (organisation_id, contact_id);
CREATE INDEX IF NOT EXISTS contact_assignments_organisation_id_contact_id_idx
    ON public.contact_assignments (organisation_id, contact_id);
