-- Ingestion (contract §2.2.5, §3.1 IngestionProgress; docs/ingestion.md; decisions 0075–0079).
-- A run is one ingestion of a project = the contract's IngestionProgress; its chunks and files
-- are written by the worker's service session with COPY; project_indexes names the run whose
-- chunks are the project's searchable index, switched in one transaction when a run completes
-- (readers see the previous index until then).

CREATE TABLE kijko.ingestion_runs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    project_id uuid NOT NULL,
    -- The kijko.jobs row of Kijko's worker; NULL for an external runner (or once the finished
    -- job was deleted by the jobs' retention).
    job_id uuid,
    -- Who started it; kept when they are erased, as unknown (decision 0018).
    requested_by uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    -- queued: waiting for the worker (or for the organization's concurrency limit).
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    -- The project's status before the run, restored when it is cancelled (never 'processing':
    -- a processing project cannot start another run).
    previous_status text NOT NULL CHECK (previous_status IN ('draft', 'active', 'error')),
    phase text NOT NULL DEFAULT 'repository_fetch'
        CHECK (phase IN ('repository_fetch', 'parsing', 'chunking', 'optimization', 'indexing')),
    -- Per phase (reset on each phase), as the contract's events.
    progress_percent double precision NOT NULL DEFAULT 0 CHECK (progress_percent BETWEEN 0 AND 100),
    message text NOT NULL DEFAULT '' CHECK (char_length(message) <= 2000),
    files_processed bigint NOT NULL DEFAULT 0 CHECK (files_processed >= 0),
    total_files bigint NOT NULL DEFAULT 0 CHECK (total_files >= 0),
    tokens_processed bigint NOT NULL DEFAULT 0 CHECK (tokens_processed >= 0),
    bytes_processed bigint NOT NULL DEFAULT 0 CHECK (bytes_processed >= 0),
    chunks_created bigint NOT NULL DEFAULT 0 CHECK (chunks_created >= 0),
    errors_encountered bigint NOT NULL DEFAULT 0 CHECK (errors_encountered >= 0),
    -- Tokens of the sources before optimization (the project's originalTokens on completion).
    original_tokens bigint CHECK (original_tokens >= 0),
    started_at timestamptz NOT NULL DEFAULT now(),
    estimated_completion_at timestamptz,
    completed_at timestamptz,
    error_message text CHECK (char_length(error_message) BETWEEN 1 AND 4000),
    error_code text CHECK (error_code ~ '^[A-Z][A-Z0-9_]{0,63}$'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, project_id)
        REFERENCES kijko.projects (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, job_id)
        REFERENCES kijko.jobs (organization_id, id) ON DELETE SET NULL (job_id),
    -- The impossible states, refused whatever races: exactly a completed run has a completion
    -- time (and is at 100 %); exactly a failed run has an error code and message.
    CONSTRAINT ingestion_runs_completed_iff_completed_at CHECK (
        (status = 'completed') = (completed_at IS NOT NULL)
        AND (status <> 'completed' OR progress_percent = 100)
        AND (completed_at IS NULL OR completed_at >= started_at)
    ),
    CONSTRAINT ingestion_runs_error_iff_failed CHECK (
        (status = 'failed') = (error_code IS NOT NULL)
        AND (error_code IS NULL) = (error_message IS NULL)
    ),
    CONSTRAINT ingestion_runs_estimate_after_start CHECK (
        estimated_completion_at IS NULL OR estimated_completion_at >= started_at
    ),
    UNIQUE (organization_id, id),
    -- Target of the chunks' and the index's foreign keys: a run of *that* project.
    UNIQUE (organization_id, project_id, id)
);
-- At most one active run per project (ALREADY_PROCESSING, whatever races).
CREATE UNIQUE INDEX ingestion_runs_one_active_key ON kijko.ingestion_runs (organization_id, project_id)
    WHERE status IN ('queued', 'running');
-- The project's latest run (GET /progress), and the organization's active runs (concurrency).
CREATE INDEX ingestion_runs_project_idx ON kijko.ingestion_runs (organization_id, project_id, started_at DESC);
CREATE INDEX ingestion_runs_active_idx ON kijko.ingestion_runs (organization_id, status)
    WHERE status IN ('queued', 'running');
CREATE INDEX ingestion_runs_job_idx ON kijko.ingestion_runs (organization_id, job_id) WHERE job_id IS NOT NULL;
CREATE INDEX ingestion_runs_requested_by_idx ON kijko.ingestion_runs (requested_by) WHERE requested_by IS NOT NULL;

-- Which run's chunks are the project's searchable index. No row: never indexed.
CREATE TABLE kijko.project_indexes (
    organization_id uuid NOT NULL,
    project_id uuid NOT NULL,
    run_id uuid NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, project_id),
    FOREIGN KEY (organization_id, project_id)
        REFERENCES kijko.projects (organization_id, id) ON DELETE CASCADE,
    -- The indexed run cannot be deleted from under its readers (a project's deletion removes
    -- both through their cascades in one statement).
    FOREIGN KEY (organization_id, project_id, run_id)
        REFERENCES kijko.ingestion_runs (organization_id, project_id, id)
);
CREATE INDEX project_indexes_run_idx ON kijko.project_indexes (organization_id, project_id, run_id);

-- The chunks of a run. Search reads only the indexed run's (migration 0015 adds the tsvector).
CREATE TABLE kijko.chunks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id uuid NOT NULL,
    project_id uuid NOT NULL,
    run_id uuid NOT NULL,
    -- 'owner/repo' for a repository's files, 'uploads' or 'manual'.
    source text NOT NULL CHECK (char_length(source) BETWEEN 1 AND 512),
    path text NOT NULL CHECK (char_length(path) BETWEEN 1 AND 4096),
    language text NOT NULL CHECK (char_length(language) BETWEEN 1 AND 64),
    start_line integer NOT NULL CHECK (start_line >= 1),
    end_line integer NOT NULL,
    symbol text CHECK (char_length(symbol) <= 512),
    content text NOT NULL,
    content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    token_count integer NOT NULL CHECK (token_count >= 0),
    CHECK (end_line >= start_line),
    FOREIGN KEY (organization_id, project_id, run_id)
        REFERENCES kijko.ingestion_runs (organization_id, project_id, id) ON DELETE CASCADE
);
CREATE INDEX chunks_run_idx ON kijko.chunks (organization_id, project_id, run_id, source, path, start_line);

-- One row per indexed file of a run (GET /projects/:id/files).
CREATE TABLE kijko.indexed_files (
    organization_id uuid NOT NULL,
    project_id uuid NOT NULL,
    run_id uuid NOT NULL,
    source text NOT NULL CHECK (char_length(source) BETWEEN 1 AND 512),
    path text NOT NULL CHECK (char_length(path) BETWEEN 1 AND 4096),
    language text NOT NULL CHECK (char_length(language) BETWEEN 1 AND 64),
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    line_count integer NOT NULL CHECK (line_count >= 0),
    chunk_count integer NOT NULL CHECK (chunk_count >= 0),
    PRIMARY KEY (run_id, source, path),
    FOREIGN KEY (organization_id, project_id, run_id)
        REFERENCES kijko.ingestion_runs (organization_id, project_id, id) ON DELETE CASCADE
);
CREATE INDEX indexed_files_project_idx ON kijko.indexed_files (organization_id, project_id, run_id, source, path);

ALTER TABLE kijko.ingestion_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.ingestion_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY ingestion_runs_tenant ON kijko.ingestion_runs
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
-- Started by whoever is in the context (NULL for a service actor), like a repository's adder.
CREATE POLICY ingestion_runs_requester ON kijko.ingestion_runs AS RESTRICTIVE FOR INSERT
    WITH CHECK (requested_by IS NOT DISTINCT FROM (SELECT kijko.current_user_id()));

ALTER TABLE kijko.project_indexes ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.project_indexes FORCE ROW LEVEL SECURITY;
CREATE POLICY project_indexes_tenant ON kijko.project_indexes
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

ALTER TABLE kijko.chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY chunks_tenant ON kijko.chunks
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

ALTER TABLE kijko.indexed_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.indexed_files FORCE ROW LEVEL SECURITY;
CREATE POLICY indexed_files_tenant ON kijko.indexed_files
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

-- The index and its content are the worker's: only a service actor (no user in the context)
-- writes or removes them; members read them (the project's readability is the app's check).
CREATE POLICY project_indexes_service_insert ON kijko.project_indexes AS RESTRICTIVE FOR INSERT
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);
CREATE POLICY project_indexes_service_update ON kijko.project_indexes AS RESTRICTIVE FOR UPDATE
    USING ((SELECT kijko.current_user_id()) IS NULL)
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);
CREATE POLICY project_indexes_service_delete ON kijko.project_indexes AS RESTRICTIVE FOR DELETE
    USING ((SELECT kijko.current_user_id()) IS NULL);
CREATE POLICY chunks_service_insert ON kijko.chunks AS RESTRICTIVE FOR INSERT
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);
CREATE POLICY chunks_service_delete ON kijko.chunks AS RESTRICTIVE FOR DELETE
    USING ((SELECT kijko.current_user_id()) IS NULL);
CREATE POLICY indexed_files_service_insert ON kijko.indexed_files AS RESTRICTIVE FOR INSERT
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);
CREATE POLICY indexed_files_service_delete ON kijko.indexed_files AS RESTRICTIVE FOR DELETE
    USING ((SELECT kijko.current_user_id()) IS NULL);

-- Runs: inserted by POST /ingest; the progress columns change (the worker's service session,
-- an external runner's PUT /progress, a cancel); what the run is (project, job, requester,
-- previous status, start) does not. Nobody on the app role deletes history.
GRANT SELECT ON kijko.ingestion_runs TO :app_role;
GRANT INSERT (id, organization_id, project_id, job_id, requested_by, status, previous_status, phase,
              progress_percent, message, started_at, estimated_completion_at, updated_at)
    ON kijko.ingestion_runs TO :app_role;
GRANT UPDATE (status, phase, progress_percent, message, files_processed, total_files,
              tokens_processed, bytes_processed, chunks_created, errors_encountered, original_tokens,
              estimated_completion_at, completed_at, error_message, error_code, updated_at)
    ON kijko.ingestion_runs TO :app_role;
GRANT SELECT, INSERT, DELETE ON kijko.project_indexes TO :app_role;
GRANT UPDATE (run_id, updated_at) ON kijko.project_indexes TO :app_role;
-- No UPDATE: a chunk or file row is written once by COPY and removed with its run.
GRANT SELECT, INSERT, DELETE ON kijko.chunks, kijko.indexed_files TO :app_role;
-- The system role: operators and the sweeper (clean-up across organizations).
GRANT SELECT, UPDATE, DELETE ON kijko.ingestion_runs, kijko.project_indexes, kijko.chunks,
    kijko.indexed_files TO :system_role;
