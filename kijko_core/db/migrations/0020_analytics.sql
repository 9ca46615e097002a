-- Product analytics events (contract §2.7, §3.9; docs/analytics.md, decisions 0125–0127).
-- The browser posts them anonymously; a valid token attaches its user and organization.
-- Rows are written in bulk by the intake's flush on the system role, which attaches the
-- organization only if the token's session is live and the user a member (checked in the
-- same INSERT); anything else is stored anonymously (organization_id NULL).
--
-- Row-level security: forced like every table here. The tenant policy reaches an
-- organization's own rows only; anonymous rows match no tenant (NULL = x is never true), so
-- only the system role (BYPASSRLS: the flush, the retention sweep, operators) sees them.
-- No client address is stored (personal data; the rate limiter keys on it in memory/Redis
-- only, and those keys expire within a minute).

CREATE TABLE kijko.analytics_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    user_id uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    type text NOT NULL CHECK (type IN (
        'project_creation_started', 'project_step_completed', 'ingestion_started',
        'ingestion_phase_completed', 'ingestion_completed', 'conversion_signal',
        'error_occurred', 'error_recovered', 'persona_detected', 'persona_override'
    )),
    -- The browser's clock (validated to a window at intake); received_at is the database's.
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    persona text CHECK (persona IN ('alex', 'maya', 'sam')),
    session_id text NOT NULL CHECK (char_length(session_id) BETWEEN 1 AND 128),
    properties jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(properties) = 'object' AND octet_length(properties::text) <= 16384),
    -- A user belongs to an organization's row only.
    CONSTRAINT analytics_events_user_has_org CHECK (user_id IS NULL OR organization_id IS NOT NULL)
);
-- The summary: one organization's events by time.
CREATE INDEX analytics_events_org_idx ON kijko.analytics_events (organization_id, occurred_at)
    WHERE organization_id IS NOT NULL;
-- Retention: the oldest rows first, across organizations.
CREATE INDEX analytics_events_received_idx ON kijko.analytics_events (received_at);

ALTER TABLE kijko.analytics_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.analytics_events FORCE ROW LEVEL SECURITY;
CREATE POLICY analytics_events_tenant ON kijko.analytics_events
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

-- Tenants only read their organization's rows (the summary); the system role writes (the
-- intake's flush) and deletes (retention).
GRANT SELECT ON kijko.analytics_events TO :app_role;
GRANT SELECT, INSERT, DELETE ON kijko.analytics_events TO :system_role;
