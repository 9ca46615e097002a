-- Webhook deliveries a reflex received (docs/reflexes.md#deduplication): one row per
-- (reflex, webhook-id), so a delivery the sender repeats (a retry, a replay of a captured
-- request within the timestamp tolerance) runs nothing twice and is answered like the first.
-- Kept at least 7 days (the sweeper removes older rows: reflex_deliveries step).

CREATE TABLE kijko.reflex_deliveries (
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    reflex_id uuid NOT NULL,
    delivery_id text NOT NULL CHECK (char_length(delivery_id) BETWEEN 1 AND 200),
    -- false: the conditions did not match (nothing ran); true with the execution it started.
    matched boolean NOT NULL,
    execution_id uuid,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, reflex_id, delivery_id),
    FOREIGN KEY (organization_id, reflex_id) REFERENCES kijko.reflexes (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX reflex_deliveries_age_idx ON kijko.reflex_deliveries (received_at);

ALTER TABLE kijko.reflex_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.reflex_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY reflex_deliveries_tenant ON kijko.reflex_deliveries
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.reflex_deliveries TO :app_role;
-- The sweeper deletes old rows across organizations.
GRANT SELECT, DELETE ON kijko.reflex_deliveries TO :system_role;
