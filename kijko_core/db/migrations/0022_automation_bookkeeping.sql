-- The automation engine's bookkeeping and the spend mails, written by the server only (decision
-- 0136, the leftovers of 0132). As in 0021, a member's tenant session (kijko.current_user_id()
-- set) is told from a service session (the worker's runs, the scheduler, the webhook receiver:
-- no user); both are the app role.
--
-- - A skill's run count and a habit's run-now count are kept by the database itself: every
--   execution inserted counts once (a statement trigger on skill_executions, as the table
--   owner). No session on the app role writes skills.execution_count / last_executed_at.
-- - Habits and reflexes: a member's session may reset the failures (activate, reset-errors),
--   move a habit's next run into the future or clear it (schedule changes, activate,
--   deactivate), and count a failed run it has just recorded (a habit's run-now refused by the
--   spend cap); everything else of the bookkeeping is the runs' (a BEFORE UPDATE trigger, which
--   sees the row before and after).
-- - llm_spend_alerts: inserted by service sessions only (the owners' 80/100 % mails).

-- --- skills: counted by the database -----------------------------------------------------------

REVOKE INSERT ON kijko.skills FROM :app_role;
GRANT INSERT (id, organization_id, user_id, name, description, category, skill_type, type_config,
              prompt_template, system_prompt, model, parameters, input_schema, output_format,
              is_active, version, created_at, updated_at)
    ON kijko.skills TO :app_role;
REVOKE UPDATE (execution_count, last_executed_at) ON kijko.skills FROM :app_role;

-- Each statement's new executions counted on their skills (and a habit's runs started by hand,
-- which have no scheduled instant; the scheduler counts its fires when it advances the habit).
-- A count is no edit: updated_at stays (the failure rule below relies on it).
-- As the owner: the app role may not write the counts. The skills are locked in id order FOR NO
-- KEY UPDATE first, as the application did (0129's deadlock: the executions just inserted hold
-- key-share locks on their skill, which FOR UPDATE would wait for). Row-level security still
-- applies (the tables force it): only the session's organization is counted.
CREATE FUNCTION kijko.skill_executions_count_runs() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    WITH counted AS (
        SELECT organization_id, skill_id, count(*) AS runs FROM inserted
        WHERE skill_id IS NOT NULL GROUP BY organization_id, skill_id
    ), locked AS (
        SELECT k.organization_id, k.id FROM kijko.skills k
        JOIN counted c ON c.organization_id = k.organization_id AND c.skill_id = k.id
        ORDER BY k.organization_id, k.id FOR NO KEY UPDATE OF k
    )
    UPDATE kijko.skills k
    SET execution_count = k.execution_count + c.runs, last_executed_at = now()
    FROM counted c, locked l
    WHERE k.organization_id = c.organization_id AND k.id = c.skill_id
      AND l.organization_id = k.organization_id AND l.id = k.id;
    WITH ran AS (
        SELECT organization_id, reference_id, count(*) AS runs FROM inserted
        WHERE execution_type = 'habit' AND scheduled_for IS NULL AND reference_id IS NOT NULL
        GROUP BY organization_id, reference_id
    )
    UPDATE kijko.habits h
    SET run_count = h.run_count + r.runs, last_run_at = now()
    FROM ran r
    WHERE h.organization_id = r.organization_id AND h.id = r.reference_id;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION kijko.skill_executions_count_runs() FROM PUBLIC;
CREATE TRIGGER skill_executions_count_runs AFTER INSERT ON kijko.skill_executions
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION kijko.skill_executions_count_runs();

-- --- habits ---------------------------------------------------------------------------------

REVOKE INSERT ON kijko.habits FROM :app_role;
GRANT INSERT (id, organization_id, skill_id, user_id, schedule_cron, schedule_description, timezone,
              config, is_active, next_run_at, created_at, updated_at)
    ON kijko.habits TO :app_role;
-- A member's session never schedules a run in the past (it would fire at the next tick).
CREATE POLICY habits_next_run ON kijko.habits AS RESTRICTIVE FOR INSERT
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL OR next_run_at IS NULL OR next_run_at > now());

-- A failed run of this automation recorded by this transaction (executed_at is the transaction's
-- start and not the app role's to write): the only reason a member's session counts a failure.
CREATE FUNCTION kijko.failed_run_recorded_now(p_org uuid, p_reference uuid, p_type text) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT EXISTS (
        SELECT 1 FROM kijko.skill_executions e
        WHERE e.organization_id = p_org AND e.reference_id = p_reference AND e.execution_type = p_type
          AND e.status = 'failed' AND e.executed_at = now()
    )
$$;

-- What a member's session may change in the bookkeeping of a habit or reflex (the shared rule):
-- the failures back to 0 with the error cleared, or up by one — once per transaction (the
-- update sets updated_at to now(), which it may only keep or set to now()) — for a failed run it
-- has just recorded. Updates made by our own triggers (depth > 1: the run counting above, a
-- foreign key's action) are the database's.
CREATE FUNCTION kijko.automation_tenant_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF (SELECT kijko.current_user_id()) IS NULL OR pg_trigger_depth() > 1 THEN
        RETURN NEW;
    END IF;
    IF NEW.updated_at IS DISTINCT FROM OLD.updated_at AND NEW.updated_at IS DISTINCT FROM now() THEN
        RAISE EXCEPTION 'updated_at is the time of the change' USING ERRCODE = '42501';
    END IF;
    IF (NEW.consecutive_failures, NEW.last_error_message) IS DISTINCT FROM
       (OLD.consecutive_failures, OLD.last_error_message)
       AND NOT (NEW.consecutive_failures = 0 AND NEW.last_error_message IS NULL)
       AND NOT (NEW.consecutive_failures = OLD.consecutive_failures + 1
                AND OLD.updated_at IS DISTINCT FROM now()
                AND NEW.updated_at = now()
                AND kijko.failed_run_recorded_now(NEW.organization_id, NEW.id, TG_ARGV[0]))
    THEN
        RAISE EXCEPTION 'an automation''s failures are counted by its runs' USING ERRCODE = '42501';
    END IF;
    IF TG_ARGV[0] = 'habit' THEN
        IF (to_jsonb(NEW) -> 'run_count', to_jsonb(NEW) -> 'last_run_at')
           IS DISTINCT FROM (to_jsonb(OLD) -> 'run_count', to_jsonb(OLD) -> 'last_run_at')
        THEN
            RAISE EXCEPTION 'a habit''s runs are counted by the database' USING ERRCODE = '42501';
        END IF;
        IF to_jsonb(NEW) -> 'next_run_at' IS DISTINCT FROM to_jsonb(OLD) -> 'next_run_at'
           AND (to_jsonb(NEW) ->> 'next_run_at')::timestamptz <= now()
        THEN
            RAISE EXCEPTION 'a habit''s next run is in the future' USING ERRCODE = '42501';
        END IF;
    ELSIF (to_jsonb(NEW) -> 'trigger_count', to_jsonb(NEW) -> 'last_triggered_at')
          IS DISTINCT FROM (to_jsonb(OLD) -> 'trigger_count', to_jsonb(OLD) -> 'last_triggered_at')
    THEN
        RAISE EXCEPTION 'a reflex''s triggers are counted by its runs' USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER habits_tenant_update BEFORE UPDATE ON kijko.habits
    FOR EACH ROW EXECUTE FUNCTION kijko.automation_tenant_update('habit');

-- --- reflexes -------------------------------------------------------------------------------

REVOKE INSERT ON kijko.reflexes FROM :app_role;
GRANT INSERT (id, organization_id, skill_id, user_id, trigger_type, trigger_config, conditions,
              secret_ciphertext, previous_secret_ciphertext, previous_secret_expires_at, is_active,
              created_at, updated_at)
    ON kijko.reflexes TO :app_role;
CREATE TRIGGER reflexes_tenant_update BEFORE UPDATE ON kijko.reflexes
    FOR EACH ROW EXECUTE FUNCTION kijko.automation_tenant_update('reflex');

-- --- the spend mails -----------------------------------------------------------------------------

-- A row says "the owners were mailed": a member's session inserting this month's rows early
-- would keep the 80/100 % mails from ever going out. Only service sessions record them (the
-- worker's runs; an inline test records its alert in one of its own, kijko_core/executions/inline.py).
-- The app role has no UPDATE or DELETE on the table (0018).
CREATE POLICY llm_spend_alerts_service ON kijko.llm_spend_alerts AS RESTRICTIVE FOR INSERT
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);
