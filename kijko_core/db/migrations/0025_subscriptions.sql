-- Stripe customers and subscriptions (issue 9 §2; docs/billing.md, decision 0162): one Stripe
-- Customer per organization, and the organization's current subscription as Kijko last read it
-- from Stripe (Stripe is the source of truth; this row is its mirror, re-read on every webhook).
--
-- Both are tenant tables (RLS keeps organizations apart; owners and admins read them through
-- the service, kijko_core/billing/subscriptions.py) but only service sessions write them
-- (kijko.current_user_id() IS NULL: the webhook job, and a request's own service session after
-- Stripe answered it): a member's SQL session must never give itself a plan. The system role
-- reads them to find an organization by its Stripe customer.

CREATE TABLE kijko.billing_customers (
    organization_id uuid PRIMARY KEY REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    stripe_customer_id text NOT NULL UNIQUE CHECK (stripe_customer_id ~ '^cus_[A-Za-z0-9_]+$'),
    livemode boolean NOT NULL,
    -- Stripe said the customer was deleted (customer.deleted): a new checkout makes a new one.
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The organization's current subscription: the newest Stripe subscription of its customer (an
-- older one's late events do not replace a newer one, kijko_core/billing/subscriptions.py).
CREATE TABLE kijko.subscriptions (
    organization_id uuid PRIMARY KEY REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    stripe_subscription_id text NOT NULL UNIQUE CHECK (stripe_subscription_id ~ '^sub_[A-Za-z0-9_]+$'),
    stripe_customer_id text NOT NULL,
    plan_id text NOT NULL CHECK (plan_id IN ('free', 'pro', 'teams', 'enterprise')),
    billing_interval text NOT NULL CHECK (billing_interval IN ('monthly', 'annually')),
    -- Stripe's own status; the contract's five are a mapping of it (docs/billing.md).
    stripe_status text NOT NULL CHECK (stripe_status IN (
        'incomplete', 'incomplete_expired', 'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused')),
    current_period_start timestamptz NOT NULL,
    current_period_end timestamptz NOT NULL CHECK (current_period_end >= current_period_start),
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    trial_end timestamptz,
    -- The first payment is a SEPA debit still processing: the plan is granted meanwhile
    -- (decision 0162).
    payment_processing boolean NOT NULL DEFAULT false,
    -- Since when a payment failed and is still unpaid, and until when the plan stays granted
    -- (KIJKO_BILLING_GRACE_DAYS); both NULL while payments are fine.
    payment_failed_at timestamptz,
    grace_until timestamptz,
    -- A downgrade or interval change waiting for the period's end (a subscription schedule).
    stripe_schedule_id text,
    scheduled_plan_id text CHECK (scheduled_plan_id IN ('free', 'pro', 'teams', 'enterprise')),
    scheduled_interval text CHECK (scheduled_interval IN ('monthly', 'annually')),
    -- The Stripe subscription's creation time: a newer subscription replaces an older one's row.
    stripe_created timestamptz NOT NULL,
    -- Who started it (checkout), NULL once that user is erased (decision 0018).
    created_by uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE kijko.billing_customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.billing_customers FORCE ROW LEVEL SECURITY;
CREATE POLICY billing_customers_tenant ON kijko.billing_customers
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
CREATE POLICY billing_customers_writer ON kijko.billing_customers AS RESTRICTIVE FOR INSERT
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);
CREATE POLICY billing_customers_changer ON kijko.billing_customers AS RESTRICTIVE FOR UPDATE
    USING ((SELECT kijko.current_user_id()) IS NULL)
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);

ALTER TABLE kijko.subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.subscriptions FORCE ROW LEVEL SECURITY;
CREATE POLICY subscriptions_tenant ON kijko.subscriptions
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
CREATE POLICY subscriptions_writer ON kijko.subscriptions AS RESTRICTIVE FOR INSERT
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);
CREATE POLICY subscriptions_changer ON kijko.subscriptions AS RESTRICTIVE FOR UPDATE
    USING ((SELECT kijko.current_user_id()) IS NULL)
    WITH CHECK ((SELECT kijko.current_user_id()) IS NULL);

GRANT SELECT, INSERT, UPDATE ON kijko.billing_customers TO :app_role;
GRANT SELECT, INSERT, UPDATE ON kijko.subscriptions TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.billing_customers, kijko.subscriptions TO :system_role;
