-- Supabase-like roles and a minimal `auth` schema, for the LOCAL dev stack only.
--
-- A real Supabase project already has all of this (and much more): do NOT run this file there.
-- Everything is guarded so that re-running it against an existing local database is harmless.
-- The authenticator's password is not set here: the stack sets a random one at start-up.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN
        -- NOINHERIT: PostgREST must SET ROLE explicitly; the login role itself can do nothing.
        CREATE ROLE authenticator LOGIN NOINHERIT;
    END IF;
END
$$;

GRANT anon, authenticated, service_role TO authenticator;

CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

CREATE TABLE IF NOT EXISTS auth.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text UNIQUE NOT NULL,
    -- Not bcrypt as in GoTrue: the embedded PostgreSQL build has no pgcrypto, so the stack stores
    -- `pbkdf2_sha256$<iterations>$<salt>$<hash>` computed and verified in Python (hashlib).
    encrypted_password text NOT NULL,
    created_at timestamptz DEFAULT now()
);
-- As in GoTrue: raw_user_meta_data is what the user writes with updateUser (the token's
-- user_metadata), raw_app_meta_data what only the server writes (app_metadata).
ALTER TABLE auth.users
    ADD COLUMN IF NOT EXISTS raw_user_meta_data jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS raw_app_meta_data jsonb NOT NULL
        DEFAULT '{"provider": "email", "providers": ["email"]}'::jsonb;

-- Sessions and refresh tokens back the refresh-token grant and logout, as in GoTrue.
CREATE TABLE IF NOT EXISTS auth.sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES auth.users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON auth.sessions (user_id);

CREATE TABLE IF NOT EXISTS auth.refresh_tokens (
    token text PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES auth.sessions ON DELETE CASCADE,
    revoked boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS refresh_tokens_session_id_idx ON auth.refresh_tokens (session_id);

-- These three are Supabase's own definitions: they read the claims PostgREST puts into
-- `request.jwt.claims` (and the legacy per-claim settings older PostgREST versions used).
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;

CREATE OR REPLACE FUNCTION auth.role() RETURNS text
    LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$$;

CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.jwt() TO anon, authenticated, service_role;

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;

-- PostgREST reads its settings from the database (`db-config`), as on Supabase: the exposed
-- schemas live on the authenticator role, where catalog tools (the RLS audit's lint and
-- surface inventory, Supabase's own linter) can ask which schemas the API serves.
ALTER ROLE authenticator SET pgrst.db_schemas = 'public';
