-- Quotas (issue 9 §5; decision 0151, docs/billing.md#quotas): per organization and period, the
-- counters a plan limits (api_calls and ingestions per billing period, oracle_queries per UTC
-- day), a daily rollup for the usage trend, and the 80/100 % mails sent. Storage and seats are
-- gauges computed from the data and have no counter.
--
-- A counter is consumed by one statement that checks and increments (INSERT … ON CONFLICT DO
-- UPDATE … WHERE used + n <= limit), so concurrent requests at the limit let exactly the limit
-- through. The app role writes the counters in members' tenant sessions (a search, a manual
-- run), so these grants and the trigger keep SQL in such a session (an injected statement, a
-- bug) from lowering them: only a service session (kijko.current_user_id() IS NULL: the
-- scheduler's runs returning what they did not use) may; nobody on the app role deletes one.

CREATE TABLE kijko.usage_counters (
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    metric text NOT NULL CHECK (metric IN ('api_calls', 'ingestions', 'oracle_queries')),
    -- The period's first day (UTC): the month's for api_calls and ingestions, the day for
    -- oracle_queries.
    period_start date NOT NULL,
    used bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    -- What the last consuming statement granted (a batch of habit runs may get part of it).
    granted bigint NOT NULL DEFAULT 0 CHECK (granted >= 0),
    -- The count of the row's current UTC day (the usage trend). The first consumption of a new
    -- day moves the previous day's count (rolled_*) to usage_daily in the same statement.
    day date NOT NULL,
    day_used bigint NOT NULL DEFAULT 0 CHECK (day_used >= 0),
    rolled_day date,
    rolled_used bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, metric, period_start)
);

-- One row per organization, metric and UTC day before the current one: counters' days moved
-- here from usage_counters, and gauges' last measured value of the day (bytes of storage, seats).
CREATE TABLE kijko.usage_daily (
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    metric text NOT NULL CHECK (metric IN ('api_calls', 'ingestions', 'storage', 'seats', 'oracle_queries')),
    day date NOT NULL,
    value bigint NOT NULL CHECK (value >= 0),
    PRIMARY KEY (organization_id, metric, day)
);

-- The owners' mails at 80 and 100 % of a metric, once per period: the key makes them once-only
-- (the worker that inserts the row sends the mail, in the same transaction).
CREATE TABLE kijko.usage_alerts (
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    metric text NOT NULL CHECK (metric IN ('api_calls', 'ingestions', 'storage', 'seats', 'oracle_queries')),
    period_start date NOT NULL,
    threshold smallint NOT NULL CHECK (threshold IN (80, 100)),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, metric, period_start, threshold)
);

ALTER TABLE kijko.usage_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.usage_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY usage_counters_tenant ON kijko.usage_counters
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

ALTER TABLE kijko.usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.usage_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY usage_daily_tenant ON kijko.usage_daily
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

ALTER TABLE kijko.usage_alerts ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.usage_alerts FORCE ROW LEVEL SECURITY;
CREATE POLICY usage_alerts_tenant ON kijko.usage_alerts
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
-- Written by the alert job (a service session) only: a member's session inserting the row first
-- would suppress the owners' mail.
CREATE POLICY usage_alerts_writer ON kijko.usage_alerts AS RESTRICTIVE FOR INSERT
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);

-- Counters: created and raised by anyone's session; the period and metric are as created, and a
-- decrease is a service session's (the trigger below). No DELETE on the app role.
GRANT SELECT ON kijko.usage_counters TO :app_role;
GRANT INSERT (organization_id, metric, period_start, used, granted, day, day_used) ON kijko.usage_counters
    TO :app_role;
GRANT UPDATE (used, granted, day, day_used, rolled_day, rolled_used, updated_at) ON kijko.usage_counters
    TO :app_role;
GRANT SELECT ON kijko.usage_daily TO :app_role;
GRANT INSERT (organization_id, metric, day, value) ON kijko.usage_daily TO :app_role;
GRANT UPDATE (value) ON kijko.usage_daily TO :app_role;
GRANT SELECT, INSERT ON kijko.usage_alerts TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.usage_counters, kijko.usage_daily, kijko.usage_alerts
    TO :system_role;

-- A member's session never lowers what was used: not a period's counter, not a day's count
-- (a gauge's daily value is a measurement and may go down).
CREATE FUNCTION kijko.usage_counters_never_lowered() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF (NEW.used < OLD.used OR (NEW.day = OLD.day AND NEW.day_used < OLD.day_used) OR NEW.day < OLD.day)
       AND (SELECT kijko.current_user_id()) IS NOT NULL THEN
        RAISE EXCEPTION 'usage is lowered by the server only' USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION kijko.usage_daily_never_lowered() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NEW.value < OLD.value AND NEW.metric IN ('api_calls', 'ingestions', 'oracle_queries')
       AND (SELECT kijko.current_user_id()) IS NOT NULL THEN
        RAISE EXCEPTION 'usage is lowered by the server only' USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION kijko.usage_counters_never_lowered(), kijko.usage_daily_never_lowered() FROM PUBLIC;
CREATE TRIGGER usage_counters_never_lowered BEFORE UPDATE ON kijko.usage_counters
    FOR EACH ROW EXECUTE FUNCTION kijko.usage_counters_never_lowered();
CREATE TRIGGER usage_daily_never_lowered BEFORE UPDATE ON kijko.usage_daily
    FOR EACH ROW EXECUTE FUNCTION kijko.usage_daily_never_lowered();
