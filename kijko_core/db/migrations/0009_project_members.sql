-- Project members and their invitations (contract §2.2.3, §2.2.4, §3.1 ProjectMember;
-- decisions 0058–0061). A member is a user of the organization (user_id set, accepted_at set)
-- or a pending invitee known only by email (user_id NULL until the invitation is accepted).

CREATE TABLE kijko.project_members (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    project_id uuid NOT NULL,
    -- Erasing the user ends their memberships (decision 0018).
    user_id uuid REFERENCES kijko_private.users (id) ON DELETE CASCADE,
    email text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320),
    -- The member's name as known when they joined (the app role cannot read users).
    name text CHECK (char_length(name) <= 201),
    role text NOT NULL CHECK (role IN ('admin', 'manager', 'developer', 'viewer', 'auditor')),
    notify_on_ingestion boolean NOT NULL DEFAULT true,
    notify_on_error boolean NOT NULL DEFAULT true,
    notify_on_team_changes boolean NOT NULL DEFAULT true,
    invited_by uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    invited_at timestamptz NOT NULL DEFAULT now(),
    accepted_at timestamptz,
    last_active_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, project_id)
        REFERENCES kijko.projects (organization_id, id) ON DELETE CASCADE,
    -- An accepted member is a member of the organization; leaving (or being removed from) the
    -- organization ends their project memberships too, so rejoining restores none of them.
    FOREIGN KEY (organization_id, user_id)
        REFERENCES kijko.memberships (organization_id, user_id) ON DELETE CASCADE,
    -- A member is either pending (no user, not accepted) or a user who accepted.
    CHECK ((user_id IS NULL) = (accepted_at IS NULL)),
    UNIQUE (organization_id, id)
);
-- One row per address and project, compared case-insensitively (MEMBER_EXISTS).
CREATE UNIQUE INDEX project_members_email_key ON kijko.project_members (project_id, lower(email));
CREATE UNIQUE INDEX project_members_user_key ON kijko.project_members (project_id, user_id)
    WHERE user_id IS NOT NULL;
-- The readable condition of kijko_core/permissions.py looks members up by user.
CREATE INDEX project_members_user_idx ON kijko.project_members (organization_id, user_id, project_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX project_members_list_idx ON kijko.project_members (organization_id, project_id, invited_at, id);

ALTER TABLE kijko.project_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.project_members FORCE ROW LEVEL SECURITY;
CREATE POLICY project_members_tenant ON kijko.project_members
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

-- The one-time token of a pending member. Only its SHA-256 is stored; a resend replaces the
-- hash (the old link stops working). Kept after acceptance so a reused link answers
-- ALREADY_ACCEPTED instead of "unknown".
CREATE TABLE kijko.project_invitations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    project_id uuid NOT NULL,
    member_id uuid NOT NULL,
    token_hash bytea NOT NULL CHECK (length(token_hash) = 32),
    invited_by uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    accepted_at timestamptz,
    -- Resend bookkeeping: how many mails were sent, and the resends in the current hour.
    sent_count integer NOT NULL DEFAULT 1 CHECK (sent_count >= 1),
    last_sent_at timestamptz NOT NULL DEFAULT now(),
    resend_window_started_at timestamptz,
    resends_in_window integer NOT NULL DEFAULT 0 CHECK (resends_in_window >= 0),
    FOREIGN KEY (organization_id, project_id)
        REFERENCES kijko.projects (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, member_id)
        REFERENCES kijko.project_members (organization_id, id) ON DELETE CASCADE,
    UNIQUE (member_id),
    UNIQUE (organization_id, id)
);
CREATE UNIQUE INDEX project_invitations_token_key ON kijko.project_invitations (token_hash);
CREATE INDEX project_invitations_project_idx ON kijko.project_invitations (organization_id, project_id);

ALTER TABLE kijko.project_invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.project_invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY project_invitations_tenant ON kijko.project_invitations
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

GRANT SELECT, INSERT, DELETE ON kijko.project_members TO :app_role;
-- Who a member is (user, email, invitation) is not the app's to rewrite: accepting runs on the
-- system role (decision 0059).
GRANT UPDATE (role, notify_on_ingestion, notify_on_error, notify_on_team_changes, last_active_at,
              updated_at)
    ON kijko.project_members TO :app_role;
GRANT SELECT, INSERT, DELETE ON kijko.project_invitations TO :app_role;
GRANT UPDATE (token_hash, expires_at, sent_count, last_sent_at, resend_window_started_at,
              resends_in_window)
    ON kijko.project_invitations TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.project_members, kijko.project_invitations
    TO :system_role;

-- Decision 0013's stopgap ends: every existing project's creator becomes its admin member.
-- Forced RLS binds the owner running this file too (no organization in context): lifted for
-- the copy and restored in the same transaction, so no other session ever sees it lifted.
ALTER TABLE kijko.projects NO FORCE ROW LEVEL SECURITY;
ALTER TABLE kijko.memberships NO FORCE ROW LEVEL SECURITY;
ALTER TABLE kijko.project_members NO FORCE ROW LEVEL SECURITY;
INSERT INTO kijko.project_members
    (organization_id, project_id, user_id, email, name, role, invited_by, invited_at, accepted_at)
SELECT p.organization_id, p.id, p.user_id, u.email,
       btrim(u.first_name || ' ' || u.last_name), 'admin', p.user_id, p.created_at, p.created_at
FROM kijko.projects p
JOIN kijko_private.users u ON u.id = p.user_id
-- Only creators still in the organization (memberships has forced RLS too, lifted likewise).
JOIN kijko.memberships m ON m.organization_id = p.organization_id AND m.user_id = p.user_id;
ALTER TABLE kijko.projects FORCE ROW LEVEL SECURITY;
ALTER TABLE kijko.memberships FORCE ROW LEVEL SECURITY;
ALTER TABLE kijko.project_members FORCE ROW LEVEL SECURITY;
