-- Organization members (decision 0070): listing them with their profile, changing a role and
-- removing a member. The app role still has no INSERT/UPDATE/DELETE on kijko.memberships
-- (migration 0005): the two functions below are the only writers on that role, and each holds
-- the rules itself, so SQL on the app role cannot promote its caller or strip the last owner.
--
-- memberships and organizations have forced RLS, for the owner too: these functions see only
-- the organization of the verified context (kijko.current_org_id()).
--
-- SQLSTATEs: KJ403 the caller may not do this, KJ404 no such member here, KJ409 the change
-- would leave the organization without an owner, 22023 an unknown role.

-- The members of the current organization with their profile (users live in kijko_private,
-- which the app role cannot read).
CREATE FUNCTION kijko.organization_members()
    RETURNS TABLE (user_id uuid, email text, first_name text, last_name text, role text,
                   joined_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT u.id, u.email, u.first_name, u.last_name, m.role, m.created_at
        FROM kijko.memberships m
        JOIN kijko_private.users u ON u.id = m.user_id
        WHERE m.organization_id = kijko.current_org_id()
    $$;

-- Shared checks of the two writers: the organization row is locked first, so every change that
-- could remove an owner is serialised per organization (two owners demoting each other at once:
-- the second sees one owner left and fails). Returns the target's current role.
CREATE FUNCTION kijko_private.check_member_change(p_user_id uuid, p_new_role text)
    RETURNS text
    LANGUAGE plpgsql VOLATILE
    AS $$
DECLARE
    v_org uuid := kijko.current_org_id();
    v_caller uuid := kijko.current_user_id();
    v_caller_role text;
    v_target_role text;
BEGIN
    IF v_org IS NULL OR v_caller IS NULL THEN
        RAISE EXCEPTION 'no user in the context' USING ERRCODE = 'KJ403';
    END IF;
    IF p_new_role IS NOT NULL AND p_new_role NOT IN ('owner', 'admin', 'member', 'viewer') THEN
        RAISE EXCEPTION 'unknown role' USING ERRCODE = '22023';
    END IF;
    PERFORM 1 FROM kijko.organizations o WHERE o.id = v_org FOR NO KEY UPDATE;
    SELECT m.role INTO v_caller_role FROM kijko.memberships m
    WHERE m.organization_id = v_org AND m.user_id = v_caller;
    IF v_caller_role IS NULL OR v_caller_role NOT IN ('owner', 'admin') THEN
        RAISE EXCEPTION 'only owners and admins manage members' USING ERRCODE = 'KJ403';
    END IF;
    SELECT m.role INTO v_target_role FROM kijko.memberships m
    WHERE m.organization_id = v_org AND m.user_id = p_user_id;
    IF v_target_role IS NULL THEN
        RAISE EXCEPTION 'no such member' USING ERRCODE = 'KJ404';
    END IF;
    -- Only owners touch owners; in an organization left without one (its only owner was
    -- erased, decision 0018) an admin may name one.
    IF v_caller_role <> 'owner' AND (v_target_role = 'owner' OR p_new_role = 'owner')
       AND EXISTS (SELECT 1 FROM kijko.memberships m WHERE m.organization_id = v_org AND m.role = 'owner') THEN
        RAISE EXCEPTION 'only owners change owners' USING ERRCODE = 'KJ403';
    END IF;
    IF v_target_role = 'owner' AND p_new_role IS DISTINCT FROM 'owner' AND NOT EXISTS (
        SELECT 1 FROM kijko.memberships m
        WHERE m.organization_id = v_org AND m.role = 'owner' AND m.user_id <> p_user_id
    ) THEN
        RAISE EXCEPTION 'the last owner stays' USING ERRCODE = 'KJ409';
    END IF;
    RETURN v_target_role;
END
$$;
REVOKE EXECUTE ON FUNCTION kijko_private.check_member_change(uuid, text) FROM PUBLIC;

CREATE FUNCTION kijko.change_member_role(p_user_id uuid, p_role text)
    RETURNS TABLE (user_id uuid, email text, first_name text, last_name text, role text,
                   joined_at timestamptz)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF p_role IS NULL THEN
        RAISE EXCEPTION 'unknown role' USING ERRCODE = '22023';
    END IF;
    PERFORM kijko_private.check_member_change(p_user_id, p_role);
    UPDATE kijko.memberships m SET role = p_role
    WHERE m.organization_id = kijko.current_org_id() AND m.user_id = p_user_id;
    RETURN QUERY
        SELECT u.id, u.email, u.first_name, u.last_name, m.role, m.created_at
        FROM kijko.memberships m
        JOIN kijko_private.users u ON u.id = m.user_id
        WHERE m.organization_id = kijko.current_org_id() AND m.user_id = p_user_id;
END
$$;

-- Access ends with the membership: kijko.enter checks it on every request (403 from then on).
-- The member's sessions are left alone: a refresh moves them to another organization of theirs
-- (or fails when none is left), see decision 0070.
CREATE FUNCTION kijko.remove_member(p_user_id uuid)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM kijko_private.check_member_change(p_user_id, NULL);
    DELETE FROM kijko.memberships m
    WHERE m.organization_id = kijko.current_org_id() AND m.user_id = p_user_id;
END
$$;

REVOKE EXECUTE ON FUNCTION kijko.organization_members() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kijko.change_member_role(uuid, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kijko.remove_member(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kijko.organization_members() TO :app_role;
GRANT EXECUTE ON FUNCTION kijko.change_member_role(uuid, text) TO :app_role;
GRANT EXECUTE ON FUNCTION kijko.remove_member(uuid) TO :app_role;
