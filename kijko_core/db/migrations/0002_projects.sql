-- Projects (contract §3.1 Project). Relations (repositories, members, ingestion) come later.

CREATE TABLE kijko.projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES kijko_private.users (id),
    name text NOT NULL CHECK (char_length(name) BETWEEN 3 AND 50),
    description text CHECK (char_length(description) <= 2000),
    type text NOT NULL CHECK (type IN ('repository', 'files', 'manual')),
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'processing', 'active', 'error')),
    privacy text NOT NULL DEFAULT 'private' CHECK (privacy IN ('private', 'shared')),
    chunking_strategy text NOT NULL DEFAULT 'semantic'
        CHECK (chunking_strategy IN ('semantic', 'fixed', 'recursive', 'custom')),
    include_metadata boolean NOT NULL DEFAULT true,
    anonymize_secrets boolean NOT NULL DEFAULT true,
    total_repos integer NOT NULL DEFAULT 0 CHECK (total_repos >= 0),
    total_files integer NOT NULL DEFAULT 0 CHECK (total_files >= 0),
    original_tokens bigint CHECK (original_tokens >= 0),
    optimized_tokens bigint CHECK (optimized_tokens >= 0),
    ingestion_time_seconds double precision CHECK (ingestion_time_seconds >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Target of the composite foreign keys of later project tables.
    UNIQUE (organization_id, id)
);
CREATE UNIQUE INDEX projects_name_key ON kijko.projects (organization_id, lower(name));
CREATE INDEX projects_list_idx ON kijko.projects (organization_id, created_at, id);

ALTER TABLE kijko.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.projects FORCE ROW LEVEL SECURITY;
CREATE POLICY projects_tenant ON kijko.projects
    USING (organization_id = kijko.current_org_id())
    WITH CHECK (organization_id = kijko.current_org_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.projects TO :app_role, :system_role;
