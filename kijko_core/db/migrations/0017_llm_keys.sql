-- An organization's own LLM provider keys (docs/llm-providers.md, decision 0104): one per
-- provider, encrypted with the keyring (kijko_core/crypto.py) and never returned — the API shows
-- the last four characters only. An organization's key takes precedence over the platform's,
-- and its runs are then recorded with key_source 'organization' (not counted against the
-- platform's spend cap). base_url is user-supplied: every call to it goes through the egress guard.

CREATE TABLE kijko.llm_keys (
    organization_id uuid NOT NULL REFERENCES kijko.organizations (id) ON DELETE CASCADE,
    provider text NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_-]{0,39}$'),
    key_ciphertext text NOT NULL CHECK (char_length(key_ciphertext) <= 8000),
    last4 text NOT NULL CHECK (char_length(last4) BETWEEN 1 AND 4),
    base_url text CHECK (char_length(base_url) BETWEEN 8 AND 2000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Who set it last (NULL once that user is erased, decision 0018).
    updated_by uuid REFERENCES kijko_private.users (id) ON DELETE SET NULL,
    PRIMARY KEY (organization_id, provider)
);

ALTER TABLE kijko.llm_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.llm_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY llm_keys_tenant ON kijko.llm_keys
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));

-- Members' requests set and remove keys; runs (service sessions of jobs) read them.
GRANT SELECT, INSERT, UPDATE, DELETE ON kijko.llm_keys TO :app_role, :system_role;
