-- Schemas, tenancy helpers, identity (kijko_private) and organizations with memberships (kijko).
-- Role placeholders (:owner_role, :app_role, :system_role) are filled in by the migration runner.

CREATE SCHEMA kijko;
REVOKE ALL ON SCHEMA kijko FROM PUBLIC;
REVOKE ALL ON SCHEMA kijko_private FROM PUBLIC;
GRANT USAGE ON SCHEMA kijko TO :app_role, :system_role;
GRANT USAGE ON SCHEMA kijko_private TO :system_role;

-- The tenant context, set once per transaction by kijko.enter().
CREATE FUNCTION kijko.current_org_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('kijko.org_id', true), '')::uuid $$;
CREATE FUNCTION kijko.current_user_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('kijko.user_id', true), '')::uuid $$;

-- Identity: global, never visible to the app role.
CREATE TABLE kijko_private.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320),
    first_name text NOT NULL CHECK (char_length(first_name) <= 100),
    last_name text NOT NULL CHECK (char_length(last_name) <= 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON kijko_private.users (lower(email));

CREATE TABLE kijko_private.password_credentials (
    user_id uuid PRIMARY KEY REFERENCES kijko_private.users (id) ON DELETE CASCADE,
    password_hash text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A login session (local) or an identity-provider session (keycloak ``sid``).
CREATE TABLE kijko_private.sessions (
    id text PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES kijko_private.users (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL,
    provider text NOT NULL CHECK (provider IN ('local', 'keycloak')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX sessions_user_idx ON kijko_private.sessions (user_id);

-- Rotating refresh tokens; one family per session. Only hashes are stored; the successor is
-- kept encrypted so parallel refreshes inside the grace window get the same one.
CREATE TABLE kijko_private.refresh_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id text NOT NULL REFERENCES kijko_private.sessions (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    successor_id uuid REFERENCES kijko_private.refresh_tokens (id) ON DELETE SET NULL,
    successor_ciphertext text
);
CREATE INDEX refresh_tokens_session_idx ON kijko_private.refresh_tokens (session_id);

-- Signing keys of the local provider; private halves encrypted with the keyring.
CREATE TABLE kijko_private.signing_keys (
    kid text PRIMARY KEY,
    algorithm text NOT NULL CHECK (algorithm IN ('RS256', 'ES256')),
    public_jwk jsonb NOT NULL,
    private_key_ciphertext text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA kijko_private TO :system_role;

-- Tenancy.
CREATE TABLE kijko.organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE kijko.organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY organizations_tenant ON kijko.organizations
    USING (id = kijko.current_org_id())
    WITH CHECK (id = kijko.current_org_id());

CREATE TABLE kijko.memberships (
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES kijko_private.users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_user_idx ON kijko.memberships (user_id);
ALTER TABLE kijko.memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY memberships_tenant ON kijko.memberships
    USING (organization_id = kijko.current_org_id())
    WITH CHECK (organization_id = kijko.current_org_id());

GRANT SELECT, UPDATE ON kijko.organizations TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.memberships TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA kijko TO :system_role;

-- Enter a tenant context: checks the session is not revoked and the membership exists, sets
-- the transaction-local context and returns the caller's organization roles, in one round trip.
-- SQLSTATE KJ401: revoked session; KJ403: no membership in that organization.
CREATE FUNCTION kijko.enter(p_user_id uuid, p_org_id uuid, p_session_id text)
    RETURNS text[]
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_roles text[];
BEGIN
    IF EXISTS (
        SELECT 1 FROM kijko_private.sessions s
        WHERE s.id = p_session_id AND (s.revoked_at IS NOT NULL OR s.user_id <> p_user_id)
    ) THEN
        RAISE EXCEPTION 'session revoked' USING ERRCODE = 'KJ401';
    END IF;
    PERFORM set_config('kijko.org_id', p_org_id::text, true);
    PERFORM set_config('kijko.user_id', p_user_id::text, true);
    SELECT array_agg(m.role) INTO v_roles
    FROM kijko.memberships m
    WHERE m.organization_id = p_org_id AND m.user_id = p_user_id;
    IF v_roles IS NULL THEN
        PERFORM set_config('kijko.org_id', '', true);
        PERFORM set_config('kijko.user_id', '', true);
        RAISE EXCEPTION 'no membership' USING ERRCODE = 'KJ403';
    END IF;
    RETURN v_roles;
END
$$;
REVOKE EXECUTE ON FUNCTION kijko.enter(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kijko.enter(uuid, uuid, text) TO :app_role;

-- The profile of the user in the current context (for GET /auth/me).
CREATE FUNCTION kijko.current_user_profile()
    RETURNS TABLE (id uuid, email text, first_name text, last_name text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT u.id, u.email, u.first_name, u.last_name
        FROM kijko_private.users u
        WHERE u.id = kijko.current_user_id()
    $$;
REVOKE EXECUTE ON FUNCTION kijko.current_user_profile() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kijko.current_user_profile() TO :app_role;

-- Functions in kijko are callable by default only where granted explicitly.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA kijko FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kijko.current_org_id(), kijko.current_user_id() TO :app_role, :system_role;
