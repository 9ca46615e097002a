-- Repositories of a project (contract §3.1 ProjectRepository, §2.2.2). The project's
-- total_repos is kept by the statements that add and remove rows here, under the project's
-- row lock (kijko_core/repositories/repository.py).

CREATE TABLE kijko.repositories (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    project_id uuid NOT NULL,
    -- Who added it (recent repositories); kept when they are erased, as unknown (decision 0018).
    user_id uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    provider text NOT NULL CHECK (provider IN ('github', 'gitlab', 'bitbucket', 'azure')),
    repository_url text NOT NULL CHECK (char_length(repository_url) BETWEEN 1 AND 2048),
    repository_name text NOT NULL CHECK (char_length(repository_name) BETWEEN 1 AND 512),
    branch text NOT NULL CHECK (char_length(branch) BETWEEN 1 AND 255),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'connected', 'syncing', 'error')),
    last_sync_at timestamptz,
    last_commit_hash text CHECK (char_length(last_commit_hash) <= 64),
    file_count integer CHECK (file_count >= 0),
    include_paths text[] NOT NULL DEFAULT '{}' CHECK (cardinality(include_paths) <= 100),
    exclude_paths text[] NOT NULL DEFAULT '{}' CHECK (cardinality(exclude_paths) <= 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, project_id)
        REFERENCES kijko.projects (organization_id, id) ON DELETE CASCADE,
    UNIQUE (organization_id, id)
);
-- One row per repository and branch in a project (the URL compared without case: hosts and,
-- on every supported provider, owner and name are case-insensitive).
CREATE UNIQUE INDEX repositories_project_url_key
    ON kijko.repositories (organization_id, project_id, lower(repository_url), branch);
CREATE INDEX repositories_project_idx ON kijko.repositories (organization_id, project_id, created_at, id);
CREATE INDEX repositories_added_by_idx ON kijko.repositories (organization_id, user_id, created_at DESC);

ALTER TABLE kijko.repositories ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.repositories FORCE ROW LEVEL SECURITY;
CREATE POLICY repositories_tenant ON kijko.repositories
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
-- Added by whoever is in the context (NULL for a service actor), like a project's creator.
CREATE POLICY repositories_adder ON kijko.repositories AS RESTRICTIVE FOR INSERT
    WITH CHECK (user_id IS NOT DISTINCT FROM (SELECT kijko.current_user_id()));

GRANT SELECT, INSERT, DELETE ON kijko.repositories TO :app_role, :system_role;
-- What ingestion changes; where a repository points and who added it stay as added.
GRANT UPDATE (status, last_sync_at, last_commit_hash, file_count, updated_at)
    ON kijko.repositories TO :app_role, :system_role;
