-- Limits within an organization for the automation engine (the review of issue 8; decision
-- 0132, in the style of 0074). Row-level security keeps organizations apart; these grants and
-- restrictive policies also keep SQL on the app role in a member's tenant session (an injected
-- statement, a bug) from forging what only the server writes: the money ledger, an
-- execution's outcome, who created a skill, habit or reflex, the organization's provider keys.
--
-- A tenant session has a user (kijko.current_user_id() is set); a service session (the worker's
-- runs, the webhook receiver) has none. Both are the app role, so what only runs may write is
-- told apart by the session's user, as for git connections in 0013.

-- The usage ledger: the spend cap sums it. Nothing on the app role deletes a row (an
-- organization's removal cascades as the table owner), and a member's session adds only the
-- usage of its own test runs; the row's time is the database's.
REVOKE DELETE ON kijko.llm_usage FROM :app_role;
REVOKE INSERT ON kijko.llm_usage FROM :app_role;
GRANT INSERT (organization_id, execution_id, user_id, provider, model, key_source, prompt_tokens,
              completion_tokens, cost, currency, is_test)
    ON kijko.llm_usage TO :app_role;
CREATE POLICY llm_usage_writer ON kijko.llm_usage AS RESTRICTIVE FOR INSERT
    WITH CHECK (
        (SELECT kijko.current_user_id()) IS NULL
        OR (user_id = (SELECT kijko.current_user_id()) AND is_test AND execution_id IS NULL)
    );

-- Executions: created pending (or failed, refused by the spend cap) with no outcome; the
-- outcome columns are written by runs only. No session changes its input, snapshot, runner,
-- type or times once created.
REVOKE INSERT ON kijko.skill_executions FROM :app_role;
GRANT INSERT (id, organization_id, skill_id, user_id, execution_type, reference_id, scheduled_for,
              source_execution_id, input, snapshot, job_id, status, error_code, error_message,
              completed_at)
    ON kijko.skill_executions TO :app_role;
CREATE POLICY skill_executions_created ON kijko.skill_executions AS RESTRICTIVE FOR INSERT
    WITH CHECK (status IN ('pending', 'failed'));
REVOKE UPDATE ON kijko.skill_executions FROM :app_role;
GRANT UPDATE (status, output, prompt_tokens, completion_tokens, duration_ms, cost, currency,
              key_source, error_message, error_code, job_id, started_at, completed_at, updated_at)
    ON kijko.skill_executions TO :app_role;
-- What a member's session may change in an existing execution needs the row before and after
-- (a policy sees one or the other; and SELECT … FOR UPDATE, which retry and cleanup use on
-- finished rows, is filtered by UPDATE policies): a trigger. A member's session cancels an
-- unfinished execution or records its job; a skill's deletion clears skill_id (its foreign
-- key's action, which fires this trigger too). Everything else is the run's (service session).
CREATE FUNCTION kijko.skill_executions_tenant_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF (SELECT kijko.current_user_id()) IS NULL THEN
        RETURN NEW;
    END IF;
    IF (NEW.output, NEW.cost, NEW.currency, NEW.key_source, NEW.prompt_tokens, NEW.completion_tokens,
        NEW.error_code, NEW.started_at)
       IS DISTINCT FROM
       (OLD.output, OLD.cost, OLD.currency, OLD.key_source, OLD.prompt_tokens, OLD.completion_tokens,
        OLD.error_code, OLD.started_at)
       OR (NEW.status IS DISTINCT FROM OLD.status
           AND NOT (OLD.status IN ('pending', 'running') AND NEW.status = 'cancelled'))
       OR (NEW.status = OLD.status
           AND ((NEW.completed_at, NEW.duration_ms, NEW.error_message)
                IS DISTINCT FROM (OLD.completed_at, OLD.duration_ms, OLD.error_message)
                OR (NEW.job_id IS DISTINCT FROM OLD.job_id AND OLD.status NOT IN ('pending', 'running'))))
    THEN
        RAISE EXCEPTION 'an execution''s outcome is written by its run' USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER skill_executions_tenant_update BEFORE UPDATE ON kijko.skill_executions
    FOR EACH ROW EXECUTE FUNCTION kijko.skill_executions_tenant_update();
-- History is removed by owners and admins only (DELETE /executions/cleanup).
CREATE POLICY skill_executions_cleanup ON kijko.skill_executions AS RESTRICTIVE FOR DELETE
    USING (
        (SELECT kijko.current_user_id()) IS NULL
        OR EXISTS (
            SELECT 1 FROM kijko.memberships m
            WHERE m.organization_id = (SELECT kijko.current_org_id())
              AND m.user_id = (SELECT kijko.current_user_id())
              AND m.role IN ('owner', 'admin')
        )
    );

-- Creators and identities: the restrictive INSERT policies of 0016 make the creator whoever
-- is in the context; no UPDATE may then hand a skill, habit or reflex to someone else (a
-- habit's and a reflex's runs are their creator's) or move it in time.
REVOKE UPDATE ON kijko.skills FROM :app_role;
GRANT UPDATE (name, description, category, skill_type, type_config, prompt_template, system_prompt,
              model, parameters, input_schema, output_format, is_active, execution_count,
              last_executed_at, version, updated_at)
    ON kijko.skills TO :app_role;
REVOKE UPDATE ON kijko.habits FROM :app_role;
GRANT UPDATE (schedule_cron, schedule_description, timezone, config, is_active, next_run_at,
              last_run_at, run_count, consecutive_failures, last_error_message, updated_at)
    ON kijko.habits TO :app_role;
REVOKE UPDATE ON kijko.reflexes FROM :app_role;
GRANT UPDATE (trigger_config, conditions, secret_ciphertext, previous_secret_ciphertext,
              previous_secret_expires_at, is_active, trigger_count, last_triggered_at,
              consecutive_failures, last_error_message, updated_at)
    ON kijko.reflexes TO :app_role;

-- Webhook deliveries are the receiver's (a service session): a member's session neither reads
-- nor forgets them (forgetting one would let a captured delivery run again).
CREATE POLICY reflex_deliveries_receiver ON kijko.reflex_deliveries AS RESTRICTIVE
    USING ((SELECT kijko.current_user_id()) IS NULL)
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);

-- The organization's provider keys: set and removed by owners and admins only (a key with its
-- base URL decides where every prompt of the organization is sent). Runs (service sessions)
-- and members' skill checks still read them: the ciphertext is useless without the keyring.
CREATE POLICY llm_keys_insert ON kijko.llm_keys AS RESTRICTIVE FOR INSERT
    WITH CHECK (
        (SELECT kijko.current_user_id()) IS NULL
        OR (updated_by = (SELECT kijko.current_user_id()) AND EXISTS (
            SELECT 1 FROM kijko.memberships m
            WHERE m.organization_id = (SELECT kijko.current_org_id())
              AND m.user_id = (SELECT kijko.current_user_id())
              AND m.role IN ('owner', 'admin')
        ))
    );
CREATE POLICY llm_keys_update ON kijko.llm_keys AS RESTRICTIVE FOR UPDATE
    USING (
        (SELECT kijko.current_user_id()) IS NULL
        OR EXISTS (
            SELECT 1 FROM kijko.memberships m
            WHERE m.organization_id = (SELECT kijko.current_org_id())
              AND m.user_id = (SELECT kijko.current_user_id())
              AND m.role IN ('owner', 'admin')
        )
    )
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL OR updated_by = (SELECT kijko.current_user_id()));
CREATE POLICY llm_keys_delete ON kijko.llm_keys AS RESTRICTIVE FOR DELETE
    USING (
        (SELECT kijko.current_user_id()) IS NULL
        OR EXISTS (
            SELECT 1 FROM kijko.memberships m
            WHERE m.organization_id = (SELECT kijko.current_org_id())
              AND m.user_id = (SELECT kijko.current_user_id())
              AND m.role IN ('owner', 'admin')
        )
    );
REVOKE UPDATE ON kijko.llm_keys FROM :app_role;
GRANT UPDATE (key_ciphertext, last4, base_url, updated_at, updated_by) ON kijko.llm_keys TO :app_role;
