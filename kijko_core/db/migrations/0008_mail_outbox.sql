-- The mail outbox (docs/mail.md, decision 0055): a mail is rendered and written here in the
-- transaction of the change that caused it, and a `mail.deliver` job (written in the same
-- transaction) delivers it. The row is a queue entry, not an archive: its bodies (which may
-- carry one-time links) are erased when it is sent or refused for good.
--
-- Tenant mail has its organization and is confined to it by row-level security like every
-- tenant table. System mail (organization_id NULL: nothing of a tenant caused it) matches no
-- tenant's policy, so only the system role (which bypasses RLS) can write or read it.

CREATE TABLE kijko.mail_outbox (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    recipient text NOT NULL CHECK (char_length(recipient) BETWEEN 3 AND 320),
    template text NOT NULL CHECK (template ~ '^[a-z][a-z0-9_]{0,63}$'),
    subject text NOT NULL CHECK (char_length(subject) <= 998),
    text_body text,
    html_body text,
    state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error text CHECK (char_length(last_error) <= 2000),
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK ((state = 'queued') = (finished_at IS NULL)),
    CHECK ((text_body IS NULL) = (html_body IS NULL)),
    -- A queued mail has its bodies, a sent one has none; a failed one keeps them only when
    -- an operator's retry of its job could still send it (decision 0055).
    CHECK (state <> 'queued' OR text_body IS NOT NULL),
    CHECK (state <> 'sent' OR text_body IS NULL),
    -- Target of composite foreign keys of later tables (a mail's bounces, say).
    UNIQUE (organization_id, id)
);
CREATE INDEX mail_outbox_queued_idx ON kijko.mail_outbox (created_at) WHERE state = 'queued';

ALTER TABLE kijko.mail_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.mail_outbox FORCE ROW LEVEL SECURITY;
-- The context read once per statement (a sub-select), as in migration 0005.
CREATE POLICY mail_outbox_tenant ON kijko.mail_outbox
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.mail_outbox TO :app_role, :system_role;
