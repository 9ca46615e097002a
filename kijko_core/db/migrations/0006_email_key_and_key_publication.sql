-- One rule for "the same email address", used by the lookup at login and by the unique index
-- at signup; kijko_core/auth/emails.py implements the same rule for the login rate limit
-- (a test checks the two agree). Before, the index was on lower(email): ``dİmİtrİ@…`` and
-- ``dimitri@…`` were two accounts and two rate-limit budgets.
--
-- NFKD, then drop the combining marks of these blocks (İ → I + U+0307 → I), then lower-case.
-- lower() follows the database's LC_CTYPE: use a Unicode-aware one (C.UTF-8, en_US.UTF-8…).

CREATE FUNCTION kijko_private.email_key(email text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT pg_catalog.lower(pg_catalog.regexp_replace(
            pg_catalog.normalize(pg_catalog.btrim(email, E' \t\r\n'), 'NFKD'),
            '[\u0300-\u036F\u1AB0-\u1AFF\u1DC0-\u1DFF\u20D0-\u20FF\uFE20-\uFE2F]', '', 'g'))
    $$;
REVOKE EXECUTE ON FUNCTION kijko_private.email_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kijko_private.email_key(text) TO :system_role;

-- Fails (unique violation) if two existing accounts share a key: merge them first.
DROP INDEX kijko_private.users_email_key;
CREATE UNIQUE INDEX users_email_key ON kijko_private.users (kijko_private.email_key(email));

-- Publish a signing key before signing with it: `kijko keys rotate` inserts the new key with
-- active_from one JWKS refresh interval ahead (and retires the current key at that moment),
-- so every running instance has loaded the new key before any token is signed with it.
ALTER TABLE kijko_private.signing_keys ADD COLUMN active_from timestamptz NOT NULL DEFAULT now();
UPDATE kijko_private.signing_keys SET active_from = created_at;
