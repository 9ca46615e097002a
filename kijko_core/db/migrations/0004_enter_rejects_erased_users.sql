-- kijko.enter() now also rejects tokens of a user who no longer exists (erased while the
-- token was still valid): before, that fell through to the membership check and answered
-- 403 where the token is simply no longer valid (401, so the frontend drops it).
-- A session Kijko never saw is still accepted: with Keycloak, other clients of the realm
-- (a frontend signing in with keycloak-js, say) open sessions without passing through Kijko.

CREATE OR REPLACE FUNCTION kijko.enter(p_user_id uuid, p_org_id uuid, p_session_id text)
    RETURNS text[]
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_roles text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kijko_private.users u WHERE u.id = p_user_id)
       OR EXISTS (
            SELECT 1 FROM kijko_private.sessions s
            WHERE s.id = p_session_id AND (s.revoked_at IS NOT NULL OR s.user_id <> p_user_id)
       ) THEN
        RAISE EXCEPTION 'user gone or session revoked' USING ERRCODE = 'KJ401';
    END IF;
    PERFORM set_config('kijko.org_id', p_org_id::text, true);
    PERFORM set_config('kijko.user_id', p_user_id::text, true);
    SELECT array_agg(m.role) INTO v_roles
    FROM kijko.memberships m
    WHERE m.organization_id = p_org_id AND m.user_id = p_user_id;
    IF v_roles IS NULL THEN
        PERFORM set_config('kijko.org_id', '', true);
        PERFORM set_config('kijko.user_id', '', true);
        RAISE EXCEPTION 'no membership' USING ERRCODE = 'KJ403';
    END IF;
    RETURN v_roles;
END
$$;
REVOKE EXECUTE ON FUNCTION kijko.enter(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kijko.enter(uuid, uuid, text) TO :app_role;
