-- A tenant context SQL cannot forge (decision 0016), the service actor (decision 0017) and
-- erasable project creators (decision 0018).
--
-- Before: kijko.current_org_id() read a setting any statement can write with set_config(), and
-- kijko.enter() accepted session ids it had never seen. Now the context is the settings
-- kijko.org_id, kijko.user_id and kijko.actor plus kijko.context, an HMAC over them, this
-- backend and this transaction's start, keyed with a secret the app role cannot read. Only the
-- enter functions write a valid one; the kijko.current_*() functions return NULL unless it
-- verifies, so a hand-made, edited or replayed context shows no rows at all.

-- The HMAC key (pre-xored with the HMAC pads, so a call is two sha256 and no byte loop) and
-- the service capability. One row; no role but the owner reads the pads.
CREATE TABLE kijko_private.context_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    inner_pad bytea NOT NULL CHECK (length(inner_pad) = 64),
    outer_pad bytea NOT NULL CHECK (length(outer_pad) = 64),
    service_capability text NOT NULL CHECK (char_length(service_capability) >= 64)
);

-- Makes (or, run again by the owner, rotates) the key and the capability. Contexts of
-- transactions running at that moment stop verifying: they see no rows from then on.
CREATE FUNCTION kijko_private.rotate_context_key() RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    -- 64 bytes from pg_strong_random (gen_random_uuid is core; 488 random bits).
    v_key bytea := uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
                   || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid());
    v_inner bytea := v_key;
    v_outer bytea := v_key;
BEGIN
    FOR i IN 0..63 LOOP
        v_inner := set_byte(v_inner, i, get_byte(v_key, i) # 54);  -- 0x36
        v_outer := set_byte(v_outer, i, get_byte(v_key, i) # 92);  -- 0x5c
    END LOOP;
    INSERT INTO kijko_private.context_key (inner_pad, outer_pad, service_capability)
    VALUES (
        v_inner,
        v_outer,
        encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
               || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'hex')
    )
    ON CONFLICT (singleton) DO UPDATE
    SET inner_pad = EXCLUDED.inner_pad, outer_pad = EXCLUDED.outer_pad,
        service_capability = EXCLUDED.service_capability;
END
$$;
SELECT kijko_private.rotate_context_key();

-- The runtime reads the capability through the system pool to open service sessions.
GRANT SELECT (service_capability) ON kijko_private.context_key TO :system_role;

-- HMAC-SHA256 of the context, bound to this backend and this transaction. A parallel worker
-- has another pid: PARALLEL RESTRICTED keeps the callers in the leader.
-- Cost (measured, docs/performance.md): plpgsql keeps its statements' plans for the session,
-- where a non-inlined SQL function is planned again in every query that calls it; and these
-- kijko_private helpers, executable by the owner only and called only from the SECURITY
-- DEFINER functions below (whose search_path is pinned), do not pin their own: each pinned
-- call costs a search-path switch, about half of a context check.
CREATE FUNCTION kijko_private.context_mac(p_org text, p_user text, p_actor text) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
    AS $$
DECLARE
    v_inner bytea;
    v_outer bytea;
BEGIN
    SELECT k.inner_pad, k.outer_pad INTO v_inner, v_outer FROM kijko_private.context_key k;
    RETURN encode(sha256(v_outer || sha256(v_inner || convert_to(
        jsonb_build_array(
            pg_backend_pid(),
            (extract(epoch FROM transaction_timestamp()) * 1000000)::bigint,
            p_org, p_user, p_actor
        )::text, 'UTF8'))), 'hex');
END
$$;

-- One verified setting of the context, or NULL.
CREATE FUNCTION kijko_private.context_value(p_name text) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
    AS $$
DECLARE
    v_mac text := current_setting('kijko.context', true);
BEGIN
    IF v_mac IS NULL OR v_mac = '' OR v_mac IS DISTINCT FROM kijko_private.context_mac(
        current_setting('kijko.org_id', true),
        current_setting('kijko.user_id', true),
        current_setting('kijko.actor', true))
    THEN
        RETURN NULL;
    END IF;
    RETURN NULLIF(current_setting(p_name, true), '');
END
$$;

CREATE FUNCTION kijko_private.set_context(p_org uuid, p_user uuid, p_actor text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED
    AS $$
DECLARE
    v_org text := coalesce(p_org::text, '');
    v_user text := coalesce(p_user::text, '');
    v_actor text := coalesce(p_actor, '');
BEGIN
    PERFORM set_config('kijko.org_id', v_org, true);
    PERFORM set_config('kijko.user_id', v_user, true);
    PERFORM set_config('kijko.actor', v_actor, true);
    PERFORM set_config('kijko.context', kijko_private.context_mac(v_org, v_user, v_actor), true);
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA kijko_private FROM PUBLIC;

-- The context as policies and queries see it: owner's rights to read the key, NULL unless it
-- verifies. Policies call them as (SELECT kijko.current_org_id()): an initplan, once a query.
CREATE OR REPLACE FUNCTION kijko.current_org_id() RETURNS uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN kijko_private.context_value('kijko.org_id')::uuid; END $$;
CREATE OR REPLACE FUNCTION kijko.current_user_id() RETURNS uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN kijko_private.context_value('kijko.user_id')::uuid; END $$;
-- Who does the work: 'user:<id>' or 'service:<kind>:<job id>' (a column can default to it).
CREATE FUNCTION kijko.current_actor() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN RETURN kijko_private.context_value('kijko.actor'); END $$;
REVOKE EXECUTE ON FUNCTION kijko.current_actor() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kijko.current_actor() TO :app_role, :system_role;

-- Enter a user's tenant context. Only a session Kijko knows (local sessions, identity-provider
-- sessions registered when their first token was verified) of that very user, unexpired and
-- unrevoked, opens it; anything else is KJ401, whatever the user and organization. So KJ403
-- (no membership) reaches only the holder of a real session of that user: no oracle of other
-- tenants' users or memberships.
CREATE OR REPLACE FUNCTION kijko.enter(p_user_id uuid, p_org_id uuid, p_session_id text)
    RETURNS text[]
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_roles text[];
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM kijko_private.sessions s
        WHERE s.id = p_session_id AND s.user_id = p_user_id
          AND s.revoked_at IS NULL AND s.expires_at > now()
    ) THEN
        RAISE EXCEPTION 'unknown, expired or revoked session' USING ERRCODE = 'KJ401';
    END IF;
    -- memberships has forced RLS, for the owner too: read it inside the context. A failure
    -- below aborts the transaction (or the caller's savepoint), and the context with it.
    PERFORM kijko_private.set_context(p_org_id, p_user_id, 'user:' || p_user_id::text);
    SELECT array_agg(m.role ORDER BY m.role) INTO v_roles
    FROM kijko.memberships m
    WHERE m.organization_id = p_org_id AND m.user_id = p_user_id;
    IF v_roles IS NULL THEN
        RAISE EXCEPTION 'no membership' USING ERRCODE = 'KJ403';
    END IF;
    RETURN v_roles;
END
$$;

-- Enter an organization as a service actor (jobs, scheduler, webhooks): no user, still under
-- RLS on the app role. The capability is a secret in kijko_private that the runtime reads
-- through the system pool; a statement on the app role can neither read it nor find it in
-- pg_stat_activity (it travels as a bind parameter). KJ401: wrong capability; KJ404: no such
-- organization; 22023: a kind or job id that would make the actor ambiguous.
CREATE FUNCTION kijko.enter_service(p_org_id uuid, p_kind text, p_job_id text, p_capability text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM kijko_private.context_key k
        -- Hashes compared, so the comparison's timing says nothing about the secret.
        WHERE sha256(convert_to(k.service_capability, 'UTF8'))
              = sha256(convert_to(coalesce(p_capability, ''), 'UTF8'))
    ) THEN
        RAISE EXCEPTION 'not a service capability' USING ERRCODE = 'KJ401';
    END IF;
    IF p_kind IS NULL OR p_kind !~ '^[a-z][a-z0-9_.-]{0,62}$'
       OR p_job_id IS NULL OR p_job_id !~ '^[A-Za-z0-9_.-]{1,128}$' THEN
        RAISE EXCEPTION 'service kind or job id malformed' USING ERRCODE = '22023';
    END IF;
    PERFORM kijko_private.set_context(p_org_id, NULL, 'service:' || p_kind || ':' || p_job_id);
    IF NOT EXISTS (SELECT 1 FROM kijko.organizations o WHERE o.id = p_org_id) THEN
        RAISE EXCEPTION 'no such organization' USING ERRCODE = 'KJ404';
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION kijko.enter_service(uuid, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kijko.enter_service(uuid, text, text, text) TO :app_role;

-- Policies: the same predicates, with the context read once per statement (initplan).
DROP POLICY organizations_tenant ON kijko.organizations;
CREATE POLICY organizations_tenant ON kijko.organizations
    USING (id = (SELECT kijko.current_org_id()))
    WITH CHECK (id = (SELECT kijko.current_org_id()));
DROP POLICY memberships_tenant ON kijko.memberships;
CREATE POLICY memberships_tenant ON kijko.memberships
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
DROP POLICY projects_tenant ON kijko.projects;
CREATE POLICY projects_tenant ON kijko.projects
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
-- A new project is created by whoever is in the context (NULL for a service actor).
CREATE POLICY projects_creator ON kijko.projects AS RESTRICTIVE FOR INSERT
    WITH CHECK (user_id IS NOT DISTINCT FROM (SELECT kijko.current_user_id()));

-- Grants: memberships are written only by the functions that own their rules (none on the app
-- role yet: signup runs on the system role); identity columns are not the app's to change.
REVOKE INSERT, UPDATE, DELETE ON kijko.memberships FROM :app_role;
REVOKE UPDATE ON kijko.organizations FROM :app_role;
GRANT UPDATE (name, updated_at) ON kijko.organizations TO :app_role;
REVOKE UPDATE ON kijko.projects FROM :app_role;
GRANT UPDATE (name, description, type, status, privacy, chunking_strategy, include_metadata,
              anonymize_secrets, total_repos, total_files, original_tokens, optimized_tokens,
              ingestion_time_seconds, updated_at)
    ON kijko.projects TO :app_role;

-- Erasure (decision 0018): a user's projects stay with the organization, creator unknown.
ALTER TABLE kijko.projects ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE kijko.projects DROP CONSTRAINT projects_user_id_fkey;
ALTER TABLE kijko.projects ADD CONSTRAINT projects_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES kijko_private.users (id) ON DELETE SET NULL;
