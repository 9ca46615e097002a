-- Background jobs (ARCHITECTURE §5, docs/jobs.md, decisions 0050–0053). Every job is a row; a
-- queue (huey) only rings the doorbell. Workers claim rows with FOR UPDATE SKIP LOCKED on the
-- system role; every state change is compare-and-set (UPDATE … WHERE state IN (…) RETURNING).
-- All times come from the database clock.

CREATE TABLE kijko.jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: a system job (the sweeper's own work); tenants can only write their own org's.
    organization_id uuid REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    -- The shape of a service actor's kind: a job's tenant work runs as service:<kind>:<id>.
    kind text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    -- Ids, not content: what the job needs is read under RLS when it runs.
    payload jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(payload) = 'object' AND octet_length(payload::text) <= 16384),
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Copied from the job's kind at enqueue, so the sweeper decides in SQL alone.
    max_attempts integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    lease_seconds integer NOT NULL CHECK (lease_seconds BETWEEN 1 AND 86400),
    run_after timestamptz NOT NULL DEFAULT now(),
    lease_owner text CHECK (char_length(lease_owner) <= 200),
    lease_expires_at timestamptz,
    last_error text CHECK (char_length(last_error) <= 4000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    -- The impossible states, refused by the database whatever races: a running job has a
    -- lease and nothing else has; exactly the final states have a finish time; attempts
    -- never exceed the maximum.
    CONSTRAINT jobs_lease_iff_running CHECK (
        (state = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)
        AND (lease_owner IS NULL) = (lease_expires_at IS NULL)
    ),
    CONSTRAINT jobs_finished_iff_final CHECK (
        (state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL)
    ),
    CONSTRAINT jobs_attempts_bounded CHECK (attempts <= max_attempts),
    UNIQUE (organization_id, id)
);
-- The claim: due queued rows in run_after order.
CREATE INDEX jobs_due_idx ON kijko.jobs (run_after) WHERE state = 'queued';
-- The reaper: running rows by lease expiry.
CREATE INDEX jobs_lease_idx ON kijko.jobs (lease_expires_at) WHERE state = 'running';
-- Retention, and `kijko jobs list` by state.
CREATE INDEX jobs_finished_idx ON kijko.jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_state_idx ON kijko.jobs (state, created_at);
-- A tenant's own jobs (and the cascade when an organization is deleted).
CREATE INDEX jobs_org_idx ON kijko.jobs (organization_id, created_at);

ALTER TABLE kijko.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY jobs_tenant ON kijko.jobs
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

-- Tenant and service sessions enqueue jobs of their organization and may read them; only the
-- system role (the worker finding and claiming work, the sweeper, operators) changes a job.
GRANT SELECT, INSERT ON kijko.jobs TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.jobs TO :system_role;
