-- The wizard's sources (contract §2.2.7): git-provider connections and their one-time
-- authorization states, uploaded files, the wizard-only settings and a manual project's text.
-- Every table is a tenant table (forced RLS); connections and states belong to a member of the
-- organization and go with the membership (composite foreign key), files to the organization
-- and, when given, to one of its projects.

-- A user's connection to GitHub, GitLab or Bitbucket in one organization. Tokens are
-- encrypted with the keyring (kijko_core/crypto.py) and never leave the server.
CREATE TABLE kijko.git_connections (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL,
    user_id uuid NOT NULL,
    provider text NOT NULL CHECK (provider IN ('github', 'gitlab', 'bitbucket')),
    username text NOT NULL CHECK (char_length(username) <= 200),
    avatar_url text CHECK (char_length(avatar_url) <= 2000),
    scope text[] NOT NULL DEFAULT '{}',
    access_token_ciphertext text NOT NULL,
    refresh_token_ciphertext text,
    expires_at timestamptz,
    connected_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, user_id, provider),
    FOREIGN KEY (organization_id, user_id)
        REFERENCES kijko.memberships (organization_id, user_id) ON DELETE CASCADE
);
CREATE INDEX git_connections_user_idx ON kijko.git_connections (user_id);

-- The server-side ``state`` of one authorization request: hashed, bound to the member who
-- started it, single use, with a TTL; the PKCE verifier encrypted.
CREATE TABLE kijko.git_oauth_states (
    state_hash bytea PRIMARY KEY,
    organization_id uuid NOT NULL,
    user_id uuid NOT NULL,
    provider text NOT NULL CHECK (provider IN ('github', 'gitlab', 'bitbucket')),
    verifier_ciphertext text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    FOREIGN KEY (organization_id, user_id)
        REFERENCES kijko.memberships (organization_id, user_id) ON DELETE CASCADE
);
CREATE INDEX git_oauth_states_expiry_idx ON kijko.git_oauth_states (expires_at);
CREATE INDEX git_oauth_states_member_idx ON kijko.git_oauth_states (organization_id, user_id);

-- Uploaded files: the bytes live in the storage port under ``storage_key``; a file uploaded
-- with a project id is a source of that project and goes with it.
CREATE TABLE kijko.uploaded_files (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    project_id uuid,
    user_id uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    size bigint NOT NULL CHECK (size >= 0),
    content_type text NOT NULL CHECK (char_length(content_type) <= 200),
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_key text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, project_id)
        REFERENCES kijko.projects (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX uploaded_files_project_idx ON kijko.uploaded_files (organization_id, project_id, created_at, id);
CREATE INDEX uploaded_files_user_idx ON kijko.uploaded_files (user_id);

-- The wizard-only settings (contract §3.1), validated by the API, and a manual project's text
-- (its source; read by ingestion, not part of the Project on the wire).
ALTER TABLE kijko.projects
    ADD COLUMN custom_settings jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(custom_settings) = 'object' AND pg_column_size(custom_settings) <= 65536),
    ADD COLUMN manual_content text CHECK (octet_length(manual_content) <= 1048576);

ALTER TABLE kijko.git_connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.git_connections FORCE ROW LEVEL SECURITY;
CREATE POLICY git_connections_tenant ON kijko.git_connections
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

ALTER TABLE kijko.git_oauth_states ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.git_oauth_states FORCE ROW LEVEL SECURITY;
CREATE POLICY git_oauth_states_tenant ON kijko.git_oauth_states
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

ALTER TABLE kijko.uploaded_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.uploaded_files FORCE ROW LEVEL SECURITY;
CREATE POLICY uploaded_files_tenant ON kijko.uploaded_files
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

GRANT SELECT, INSERT, UPDATE, DELETE
    ON kijko.git_connections, kijko.git_oauth_states, kijko.uploaded_files TO :app_role, :system_role;
-- The app role updates only the columns it owns (migration 0005); these two are the wizard's.
GRANT UPDATE (custom_settings, manual_content) ON kijko.projects TO :app_role;
