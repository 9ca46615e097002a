-- The monthly spend cap's mails (docs/executions.md#spend-cap, decision 0109): one row per
-- organization, month (its first day, UTC) and threshold mailed (80 or 100 % of the cap). The
-- key makes the mail once-only: two workers recording the same crossing insert one row, and
-- only the one whose insert returned a row sends the mail (in the same transaction).

CREATE TABLE kijko.llm_spend_alerts (
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    period date NOT NULL CHECK (extract(day FROM period) = 1),
    threshold smallint NOT NULL CHECK (threshold IN (80, 100)),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, period, threshold)
);

ALTER TABLE kijko.llm_spend_alerts ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.llm_spend_alerts FORCE ROW LEVEL SECURITY;
CREATE POLICY llm_spend_alerts_tenant ON kijko.llm_spend_alerts
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

GRANT SELECT, INSERT ON kijko.llm_spend_alerts TO :app_role;
GRANT SELECT, INSERT, DELETE ON kijko.llm_spend_alerts TO :system_role;
