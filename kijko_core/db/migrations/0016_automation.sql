-- The automation engine's entities (contract §3.2–3.5; docs/skills.md, docs/executions.md,
-- docs/habits.md, docs/reflexes.md): skills, their executions, habits (cron schedules) and
-- reflexes (triggers), plus the usage ledger every provider call writes (spend cap, costs of
-- tests that are not executions). Later migrations of the same issue add what one part alone
-- needs (stored provider keys, webhook deliveries, analytics).
--
-- Creators are kept as unknown when they are erased (decision 0018): user_id SET NULL.

CREATE TABLE kijko.skills (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    user_id uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 2 AND 100),
    description text CHECK (char_length(description) <= 2000),
    category text NOT NULL DEFAULT 'custom'
        CHECK (category IN ('analysis', 'generation', 'transformation', 'communication', 'automation', 'custom')),
    -- How the skill runs: 'llm' (built in) or a plugin's skill type; type_config is that
    -- type's own configuration (validated by its pydantic model).
    skill_type text NOT NULL DEFAULT 'llm' CHECK (skill_type ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    type_config jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(type_config) = 'object'),
    prompt_template text NOT NULL CHECK (char_length(prompt_template) BETWEEN 10 AND 100000),
    system_prompt text CHECK (char_length(system_prompt) <= 100000),
    model text NOT NULL CHECK (char_length(model) BETWEEN 1 AND 200),
    parameters jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(parameters) = 'object'),
    input_schema jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(input_schema) = 'array'),
    output_format text NOT NULL DEFAULT 'markdown'
        CHECK (output_format IN ('markdown', 'json', 'text', 'html', 'code')),
    is_active boolean NOT NULL DEFAULT true,
    execution_count bigint NOT NULL DEFAULT 0 CHECK (execution_count >= 0),
    last_executed_at timestamptz,
    -- Bumped by every change of what runs; an execution's snapshot records it.
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id)
);
-- SKILL_NAME_EXISTS: unique per organization and creator, whatever the case.
CREATE UNIQUE INDEX skills_name_key ON kijko.skills (organization_id, user_id, lower(name));
CREATE INDEX skills_list_idx ON kijko.skills (organization_id, created_at DESC, id DESC);

CREATE TABLE kijko.skill_executions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    -- NULL once the skill is deleted: the history stays (contract §3.5).
    skill_id uuid,
    -- Who ran it: the caller, or the habit's / reflex's creator for scheduled and triggered runs.
    user_id uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    execution_type text NOT NULL CHECK (execution_type IN ('manual', 'habit', 'reflex', 'api')),
    -- The habit or reflex that caused it (no foreign key: either table, and history outlives both).
    reference_id uuid,
    -- A habit's run: the schedule instant it fires for (the idempotency key with reference_id).
    scheduled_for timestamptz,
    -- The execution this one retries or replays.
    source_execution_id uuid,
    input jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(input) = 'object'),
    -- What runs: template, system prompt, model, parameters, skill type, its config, the skill's
    -- name and version at the time (docs/executions.md). Replays run this, not the skill.
    snapshot jsonb NOT NULL CHECK (jsonb_typeof(snapshot) = 'object'),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    output text CHECK (char_length(output) <= 1000000),
    prompt_tokens bigint CHECK (prompt_tokens >= 0),
    completion_tokens bigint CHECK (completion_tokens >= 0),
    duration_ms bigint CHECK (duration_ms >= 0),
    -- Unrounded, in `currency` (costCents on the wire is rounded half to even from it).
    cost numeric CHECK (cost >= 0),
    currency text CHECK (currency ~ '^[a-z]{3}$'),
    -- Whose provider key paid: the platform's (capped) or the organization's own (metered).
    key_source text CHECK (key_source IN ('platform', 'organization')),
    error_message text CHECK (char_length(error_message) BETWEEN 1 AND 4000),
    error_code text CHECK (error_code ~ '^[A-Z][A-Z0-9_]{0,63}$'),
    job_id uuid,
    executed_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    completed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, skill_id)
        REFERENCES kijko.skills (organization_id, id) ON DELETE SET NULL (skill_id),
    -- The impossible states, refused whatever races: a finished execution has its end time,
    -- an unfinished one has none; a failed one has its error code.
    CONSTRAINT skill_executions_finished_iff_completed_at CHECK (
        (status IN ('completed', 'failed', 'cancelled')) = (completed_at IS NOT NULL)
        AND (completed_at IS NULL OR completed_at >= executed_at)
    ),
    CONSTRAINT skill_executions_failed_has_code CHECK (status <> 'failed' OR error_code IS NOT NULL),
    CONSTRAINT skill_executions_cost_has_currency CHECK ((cost IS NULL) = (currency IS NULL)),
    CONSTRAINT skill_executions_schedule_is_habits CHECK (scheduled_for IS NULL OR execution_type = 'habit'),
    UNIQUE (organization_id, id)
);
-- A habit fires once per schedule instant, whatever the number of schedulers.
CREATE UNIQUE INDEX skill_executions_habit_fire_key
    ON kijko.skill_executions (organization_id, reference_id, scheduled_for)
    WHERE scheduled_for IS NOT NULL;
CREATE INDEX skill_executions_list_idx ON kijko.skill_executions (organization_id, executed_at DESC, id DESC);
CREATE INDEX skill_executions_skill_idx
    ON kijko.skill_executions (organization_id, skill_id, executed_at DESC, id DESC) WHERE skill_id IS NOT NULL;
CREATE INDEX skill_executions_reference_idx
    ON kijko.skill_executions (organization_id, reference_id, executed_at DESC, id DESC) WHERE reference_id IS NOT NULL;
CREATE INDEX skill_executions_active_idx ON kijko.skill_executions (organization_id, status, executed_at)
    WHERE status IN ('pending', 'running');
CREATE INDEX skill_executions_user_idx ON kijko.skill_executions (user_id) WHERE user_id IS NOT NULL;

-- One row per provider call that costs money, executions and tests alike: the spend cap sums
-- this month's platform-key rows; tests (not executions) are counted here too.
CREATE TABLE kijko.llm_usage (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    execution_id uuid,
    user_id uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    provider text NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 40),
    model text NOT NULL CHECK (char_length(model) BETWEEN 1 AND 200),
    key_source text NOT NULL CHECK (key_source IN ('platform', 'organization')),
    prompt_tokens bigint NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens bigint NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    cost numeric NOT NULL CHECK (cost >= 0),
    currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    is_test boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, execution_id)
        REFERENCES kijko.skill_executions (organization_id, id) ON DELETE SET NULL (execution_id)
);
CREATE INDEX llm_usage_period_idx ON kijko.llm_usage (organization_id, key_source, created_at);
CREATE INDEX llm_usage_execution_idx ON kijko.llm_usage (organization_id, execution_id) WHERE execution_id IS NOT NULL;

CREATE TABLE kijko.habits (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    skill_id uuid NOT NULL,
    user_id uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    schedule_cron text NOT NULL CHECK (char_length(schedule_cron) BETWEEN 9 AND 200),
    schedule_description text CHECK (char_length(schedule_description) <= 500),
    timezone text NOT NULL DEFAULT 'UTC' CHECK (char_length(timezone) BETWEEN 1 AND 64),
    config jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    is_active boolean NOT NULL DEFAULT true,
    -- NULL exactly when inactive (contract §3.3).
    next_run_at timestamptz,
    last_run_at timestamptz,
    run_count bigint NOT NULL DEFAULT 0 CHECK (run_count >= 0),
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    last_error_message text CHECK (char_length(last_error_message) <= 4000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, skill_id) REFERENCES kijko.skills (organization_id, id) ON DELETE CASCADE,
    CONSTRAINT habits_next_run_iff_active CHECK (is_active OR next_run_at IS NULL),
    UNIQUE (organization_id, id)
);
CREATE INDEX habits_list_idx ON kijko.habits (organization_id, created_at DESC, id DESC);
CREATE INDEX habits_skill_idx ON kijko.habits (organization_id, skill_id);
-- The scheduler's claim: due active habits, oldest due first (across organizations).
CREATE INDEX habits_due_idx ON kijko.habits (next_run_at) WHERE is_active AND next_run_at IS NOT NULL;

CREATE TABLE kijko.reflexes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    skill_id uuid NOT NULL,
    user_id uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    trigger_type text NOT NULL CHECK (trigger_type ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    -- The trigger type's configuration, without its secret (never stored in clear).
    trigger_config jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(trigger_config) = 'object'),
    conditions jsonb CHECK (conditions IS NULL OR jsonb_typeof(conditions) = 'object'),
    -- The signing secret, encrypted with the keyring; after a regeneration the previous one
    -- stays valid until previous_secret_expires_at.
    secret_ciphertext bytea,
    previous_secret_ciphertext bytea,
    previous_secret_expires_at timestamptz,
    is_active boolean NOT NULL DEFAULT true,
    trigger_count bigint NOT NULL DEFAULT 0 CHECK (trigger_count >= 0),
    last_triggered_at timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    last_error_message text CHECK (char_length(last_error_message) <= 4000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, skill_id) REFERENCES kijko.skills (organization_id, id) ON DELETE CASCADE,
    CONSTRAINT reflexes_previous_secret_expires CHECK (
        (previous_secret_ciphertext IS NULL) = (previous_secret_expires_at IS NULL)
    ),
    UNIQUE (organization_id, id)
);
CREATE INDEX reflexes_list_idx ON kijko.reflexes (organization_id, created_at DESC, id DESC);
CREATE INDEX reflexes_skill_idx ON kijko.reflexes (organization_id, skill_id);
-- Event triggers: the active reflexes listening to one event name in an organization.
CREATE INDEX reflexes_event_idx ON kijko.reflexes (organization_id, (trigger_config ->> 'eventName'))
    WHERE trigger_type = 'event' AND is_active;

ALTER TABLE kijko.skills ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.skills FORCE ROW LEVEL SECURITY;
CREATE POLICY skills_tenant ON kijko.skills
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
-- Created by whoever is in the context (NULL for a service actor), like a project.
CREATE POLICY skills_creator ON kijko.skills AS RESTRICTIVE FOR INSERT
    WITH CHECK (user_id IS NOT DISTINCT FROM (SELECT kijko.current_user_id()));

ALTER TABLE kijko.skill_executions ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.skill_executions FORCE ROW LEVEL SECURITY;
CREATE POLICY skill_executions_tenant ON kijko.skill_executions
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
-- A member runs as themselves; a service actor (scheduler, webhook receiver) on behalf of the
-- habit's or reflex's creator.
CREATE POLICY skill_executions_runner ON kijko.skill_executions AS RESTRICTIVE FOR INSERT
    WITH CHECK (
        user_id IS NOT DISTINCT FROM (SELECT kijko.current_user_id())
        OR (SELECT kijko.current_user_id()) IS NULL
    );

ALTER TABLE kijko.llm_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.llm_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY llm_usage_tenant ON kijko.llm_usage
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

ALTER TABLE kijko.habits ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.habits FORCE ROW LEVEL SECURITY;
CREATE POLICY habits_tenant ON kijko.habits
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
CREATE POLICY habits_creator ON kijko.habits AS RESTRICTIVE FOR INSERT
    WITH CHECK (user_id IS NOT DISTINCT FROM (SELECT kijko.current_user_id()));

ALTER TABLE kijko.reflexes ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.reflexes FORCE ROW LEVEL SECURITY;
CREATE POLICY reflexes_tenant ON kijko.reflexes
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
CREATE POLICY reflexes_creator ON kijko.reflexes AS RESTRICTIVE FOR INSERT
    WITH CHECK (user_id IS NOT DISTINCT FROM (SELECT kijko.current_user_id()));

-- Tenants (members' requests, service sessions of jobs) read and write their organization's
-- rows; the system role finds due habits and webhook targets across organizations.
GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.skills, kijko.skill_executions, kijko.habits, kijko.reflexes
    TO :app_role, :system_role;
GRANT SELECT, INSERT, DELETE ON kijko.llm_usage TO :app_role, :system_role;
