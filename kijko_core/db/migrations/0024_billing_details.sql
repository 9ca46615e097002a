-- An organization's billing details (issue 9 §4, contract §3.6 BillingDetails; docs/billing-details.md,
-- decisions 0160–0161): the company, its BTW/VAT and KVK numbers and its address, one row per
-- organization, created by the first save. Owners change it, owners and admins read it
-- (ARCHITECTURE §3); that rule is the service's (kijko_core/billing/details.py), row-level
-- security keeps organizations apart. Later the Stripe Customer is given the same name,
-- address and tax id (kijko_core.billing.details.customer_fields).
--
-- The checks repeat what the service validates (a BTW/VAT number is stored compact, with its
-- country prefix, after python-stdnum accepted its checksum; the KVK number is 8 digits; the
-- country an ISO 3166-1 alpha-2 code), so nothing else that writes here can store a malformed
-- value. Blank strings are stored as NULL ("not given").

CREATE TABLE kijko.billing_details (
    organization_id uuid PRIMARY KEY REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    company_name text CHECK (char_length(company_name) BETWEEN 1 AND 200),
    btw_number text CHECK (btw_number ~ '^[A-Z]{2}[0-9A-Z]{2,13}$'),
    kvk_number text CHECK (kvk_number ~ '^[0-9]{8}$'),
    address_line1 text CHECK (char_length(address_line1) BETWEEN 1 AND 200),
    address_line2 text CHECK (char_length(address_line2) BETWEEN 1 AND 200),
    postal_code text CHECK (char_length(postal_code) BETWEEN 1 AND 20),
    city text CHECK (char_length(city) BETWEEN 1 AND 100),
    country text NOT NULL DEFAULT 'NL' CHECK (country ~ '^[A-Z]{2}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Who saved it last (NULL once that user is erased, decision 0018).
    updated_by uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL
);

ALTER TABLE kijko.billing_details ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.billing_details FORCE ROW LEVEL SECURITY;
CREATE POLICY billing_details_tenant ON kijko.billing_details
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
-- Who saved the details is the session's user (NULL for a service session), never a value a
-- statement chooses.
CREATE POLICY billing_details_saved_by ON kijko.billing_details AS RESTRICTIVE FOR INSERT
    WITH CHECK (updated_by IS NOT DISTINCT FROM (SELECT kijko.current_user_id()));
CREATE POLICY billing_details_changed_by ON kijko.billing_details AS RESTRICTIVE FOR UPDATE
    USING (true)
    WITH CHECK (updated_by IS NOT DISTINCT FROM (SELECT kijko.current_user_id()));

-- Members' requests read and save them (nothing on the app role deletes a row: an
-- organization's removal cascades as the table owner); the system role for operators and
-- erasure.
GRANT SELECT ON kijko.billing_details TO :app_role;
GRANT INSERT (organization_id, updated_by) ON kijko.billing_details TO :app_role;
GRANT UPDATE (company_name, btw_number, kvk_number, address_line1, address_line2, postal_code, city,
              country, updated_at, updated_by)
    ON kijko.billing_details TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.billing_details TO :system_role;
