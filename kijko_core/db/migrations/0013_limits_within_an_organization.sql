-- Limits within an organization (the review of issue 6; decision 0074). Row-level security
-- keeps organizations apart; these grants and restrictive policies also keep one member's SQL
-- on the app role (an injected statement in their tenant session) from taking another
-- member's things or forging what only the server writes.

-- Jobs: a tenant only enqueues. State, attempts and the lease are the worker's (system role).
REVOKE INSERT ON kijko.jobs FROM :app_role;
GRANT INSERT (id, organization_id, kind, payload, max_attempts, lease_seconds, run_after)
    ON kijko.jobs TO :app_role;

-- Mail: delivery (a service session) moves a row through its states and erases its bodies;
-- nobody rewrites a queued mail's recipient, subject or template.
REVOKE UPDATE ON kijko.mail_outbox FROM :app_role;
GRANT UPDATE (state, attempts, last_error, finished_at, text_body, html_body)
    ON kijko.mail_outbox TO :app_role;
-- The per-organization budget of invitation mails counts the last hour's rows.
CREATE INDEX mail_outbox_org_created_idx ON kijko.mail_outbox (organization_id, created_at);

-- Project members: the app adds pending invitees (no user yet) and, at creation, the
-- project's creator as its admin. Anyone else becomes a member by accepting an invitation,
-- which runs on the system role (decision 0059).
CREATE POLICY project_members_insert ON kijko.project_members AS RESTRICTIVE FOR INSERT
    WITH CHECK (
        user_id IS NULL
        OR (
            user_id = (SELECT kijko.current_user_id())
            AND role = 'admin'
            AND EXISTS (
                SELECT 1 FROM kijko.projects p
                WHERE p.organization_id = project_members.organization_id
                  AND p.id = project_members.project_id
                  AND p.user_id = (SELECT kijko.current_user_id())
            )
        )
    );

-- Git-provider connections and their states are personal: a member reaches only their own.
-- A service session (no user; jobs such as ingestion) reaches those of its organization.
CREATE POLICY git_connections_own ON kijko.git_connections AS RESTRICTIVE
    USING (user_id = (SELECT kijko.current_user_id()) OR (SELECT kijko.current_user_id()) IS NULL)
    WITH CHECK (user_id = (SELECT kijko.current_user_id()) OR (SELECT kijko.current_user_id()) IS NULL);
CREATE POLICY git_oauth_states_own ON kijko.git_oauth_states AS RESTRICTIVE
    USING (user_id = (SELECT kijko.current_user_id()))
    WITH CHECK (user_id = (SELECT kijko.current_user_id()));
REVOKE UPDATE ON kijko.git_connections, kijko.git_oauth_states FROM :app_role;
GRANT UPDATE (username, avatar_url, scope, access_token_ciphertext, refresh_token_ciphertext,
              expires_at, connected_at, updated_at)
    ON kijko.git_connections TO :app_role;

-- Uploaded files are written once; what they are and where their bytes live does not change.
REVOKE UPDATE ON kijko.uploaded_files FROM :app_role;
