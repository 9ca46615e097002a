-- OAuth sign-in through Keycloak identity brokering (Google, GitHub).
-- Both tables hold short-lived, single-use secrets: only hashes are keys, and what must be
-- read back (the PKCE verifier, the token pair) is encrypted with the keyring.

-- The server-side ``state`` of an authorization request, with its PKCE verifier.
CREATE TABLE kijko_private.oauth_states (
    state_hash bytea PRIMARY KEY,
    provider text NOT NULL CHECK (provider IN ('google', 'github')),
    verifier_ciphertext text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX oauth_states_expiry_idx ON kijko_private.oauth_states (expires_at);

-- The one-time code handed to the browser after the callback; traded once for the tokens.
CREATE TABLE kijko_private.oauth_handoffs (
    code_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES kijko_private.users (id) ON DELETE CASCADE,
    tokens_ciphertext text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX oauth_handoffs_expiry_idx ON kijko_private.oauth_handoffs (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE
    ON kijko_private.oauth_states, kijko_private.oauth_handoffs TO :system_role;
