-- The Stripe webhook inbox (issue 9 §3; docs/billing.md "Webhooks: the inbox", decision 0165):
-- every verified event Stripe delivers, stored once by its id before the delivery is answered,
-- then processed by the job ``billing.stripe_event`` (kijko_core/billing/webhooks.py).
--
-- The inbox is the operators' (``kijko billing inbox list|replay``) and the system role's: events name
-- customers of every organization and carry their billing addresses, so the table is in the
-- private schema, which the app role cannot read (tenants never see it).

CREATE TABLE kijko_private.stripe_events (
    id text PRIMARY KEY CHECK (id ~ '^evt_[A-Za-z0-9_]+$'),
    type text NOT NULL CHECK (length(type) BETWEEN 1 AND 200),
    livemode boolean NOT NULL,
    api_version text CHECK (length(api_version) <= 100),
    -- When Stripe made the event (its ``created``).
    stripe_created timestamptz NOT NULL,
    -- The event as delivered (verified): what a replay processes again.
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- Processing attempts made, and when the next one is due (NULL: none scheduled).
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz,
    -- Done: 'processed' (Kijko's state brought up to Stripe's) or 'ignored' (a type Kijko does
    -- not act on, a customer that is not one of ours, the other mode's event), with why.
    processed_at timestamptz,
    outcome text CHECK (outcome IN ('processed', 'ignored')),
    note text CHECK (length(note) <= 500),
    last_error text CHECK (length(last_error) <= 2000),
    -- The organization the event turned out to be about (NULL: none of ours, or not known yet).
    organization_id uuid REFERENCES kijko.organizations (id) ON DELETE SET NULL,
    CHECK ((processed_at IS NULL) = (outcome IS NULL))
);

-- The operators' "what is not done yet", newest first.
CREATE INDEX stripe_events_pending ON kijko_private.stripe_events (received_at DESC) WHERE processed_at IS NULL;
CREATE INDEX stripe_events_received ON kijko_private.stripe_events (received_at DESC);

GRANT SELECT, INSERT, UPDATE, DELETE ON kijko_private.stripe_events TO :system_role;

-- The owners' billing mails already sent (a payment failure per invoice, a dispute): a replayed
-- or repeated event finds its key here and mails nothing. Written in the same transaction as
-- the mail, by service sessions only (a member's session inserting a key first would suppress
-- the owners' mail).
CREATE TABLE kijko.billing_notices (
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, key)
);

ALTER TABLE kijko.billing_notices ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.billing_notices FORCE ROW LEVEL SECURITY;
CREATE POLICY billing_notices_tenant ON kijko.billing_notices
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
CREATE POLICY billing_notices_writer ON kijko.billing_notices AS RESTRICTIVE FOR INSERT
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);

GRANT SELECT, INSERT ON kijko.billing_notices TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.billing_notices TO :system_role;
