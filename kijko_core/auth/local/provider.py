"""The local identity provider: argon2id passwords, RS256 access tokens signed with keys from
the database, rotating refresh tokens stored hashed, with reuse detection and a grace window.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from uuid import UUID

from databases import Database
from joserfc import jwt

from kijko_core.auth import accounts
from kijko_core.auth.local.keys import ALGORITHM, SigningKeyStore
from kijko_core.auth.models import SignupRequest, TokenPair
from kijko_core.auth.passwords import PasswordHashing
from kijko_core.auth.principal import TokenIdentity
from kijko_core.auth.provider import ProviderHealth
from kijko_core.auth.tokens import ACCESS_TOKEN_TYP, TokenVerifier
from kijko_core.config import Settings
from kijko_core.crypto import Keyring
from kijko_core.db.session import SystemSession, system_session
from kijko_core.errors import Forbidden, InvalidCredentials, InvalidRefreshToken


def _hash_token(token: str) -> bytes:
    # Refresh tokens carry 256 random bits, so a fast hash is as good as a slow one here.
    return hashlib.sha256(token.encode()).digest()


class LocalProvider:
    name = "local"

    def __init__(
        self,
        settings: Settings,
        system_db: Database,
        keyring: Keyring,
        *,
        passwords: PasswordHashing | None = None,
    ) -> None:
        self._settings = settings
        self._db = system_db
        self._keyring = keyring
        self._passwords = passwords or PasswordHashing(settings.password_hash_threads)
        self.keys = SigningKeyStore(
            system_db,
            keyring,
            retired_visible_seconds=settings.access_token_ttl_seconds
            + settings.jwt_leeway_seconds
            + settings.jwks_refresh_interval_seconds,
            recheck_seconds=settings.jwks_refresh_interval_seconds,
            # A second more than the interval: every verifier has reloaded its keys by then.
            publish_ahead_seconds=settings.jwks_refresh_interval_seconds + 1,
        )
        self.verifier = TokenVerifier.for_settings(self.keys, settings)
        self._signing_kid: str | None = None

    async def start(self) -> None:
        self._signing_kid = (await self.keys.active()).kid

    async def close(self) -> None:
        self._passwords.close()

    async def health(self) -> ProviderHealth:
        return ProviderHealth("ok")

    async def create_user(self, *, email: str, password: str, first_name: str, last_name: str) -> tuple[UUID, UUID]:
        """Create a user with a password, their organization and owner membership."""
        password_hash = await self._passwords.hash(password)  # outside the transaction
        async with system_session(self._db) as db:
            user_id, org_id = await accounts.create_account(db, email=email, first_name=first_name, last_name=last_name)
            await db.execute(
                "INSERT INTO kijko_private.password_credentials (user_id, password_hash) VALUES ($1, $2)",
                user_id,
                password_hash,
            )
        return user_id, org_id

    async def signup(self, data: SignupRequest) -> TokenPair:
        user_id, org_id = await self.create_user(
            email=str(data.email),
            password=data.password,
            first_name=data.first_name,
            last_name=data.last_name,
        )
        return await self._new_session(user_id, org_id)

    async def login(self, email: str, password: str) -> TokenPair:
        async with system_session(self._db, readonly=True) as db:
            row = await accounts.find_user_by_email(db, email)
        # Verified outside the transaction; unknown users are checked against a dummy hash.
        if not await self._passwords.verify(row["password_hash"] if row else None, password):
            raise InvalidCredentials()
        assert row is not None
        async with system_session(self._db, readonly=True) as db:
            org_id = await accounts.default_organization(db, row["id"])
        if org_id is None:
            raise InvalidCredentials()
        return await self._new_session(row["id"], org_id)

    async def _new_session(self, user_id: UUID, org_id: UUID) -> TokenPair:
        session_id = str(uuid.uuid4())
        refresh_token = secrets.token_urlsafe(32)
        async with system_session(self._db) as db:
            expires_at = await db.fetchval(
                "SELECT now() + make_interval(secs => $1)", self._settings.refresh_token_ttl_seconds
            )
            await accounts.open_session(
                db,
                session_id=session_id,
                user_id=user_id,
                org_id=org_id,
                provider=self.name,
                expires_at=expires_at,
            )
            await self._store_refresh_token(db, session_id, refresh_token)
        return await self._pair(user_id, org_id, session_id, refresh_token)

    async def _store_refresh_token(self, db: SystemSession, session_id: str, token: str) -> UUID:
        return await db.fetchval(
            "INSERT INTO kijko_private.refresh_tokens (session_id, token_hash, expires_at)"
            " SELECT $1, $2, expires_at FROM kijko_private.sessions WHERE id = $1 RETURNING id",
            session_id,
            _hash_token(token),
        )

    async def _pair(self, user_id: UUID, org_id: UUID, session_id: str, refresh_token: str) -> TokenPair:
        key = await self.keys.active()
        if key.kid != self._signing_kid:
            # Rotated here or by another process: our own new tokens must verify right away.
            self.verifier.expect_new_key()
            self._signing_kid = key.kid
        now = int(time.time())
        ttl = self._settings.access_token_ttl_seconds
        claims = {
            "iss": self._settings.issuer,
            "aud": self._settings.jwt_audience,
            "sub": str(user_id),
            "org_id": str(org_id),
            "sid": session_id,
            "jti": str(uuid.uuid4()),
            "typ": ACCESS_TOKEN_TYP,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        }
        access = jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}, claims, key.private)
        return TokenPair(access_token=access, refresh_token=refresh_token, expires_in=ttl)

    async def refresh(self, refresh_token: str) -> TokenPair:
        grace = self._settings.refresh_reuse_grace_seconds
        async with system_session(self._db) as db:
            row = await db.fetchrow(
                "SELECT t.id, t.session_id, t.used_at, t.successor_ciphertext,"
                "       t.expires_at <= now() AS expired,"
                "       t.used_at IS NOT NULL AND t.used_at > now() - make_interval(secs => $2)"
                "         AS within_grace,"
                "       s.user_id, s.organization_id, s.revoked_at IS NOT NULL AS revoked"
                " FROM kijko_private.refresh_tokens t"
                " JOIN kijko_private.sessions s ON s.id = t.session_id"
                " WHERE t.token_hash = $1"
                " FOR UPDATE OF t, s",
                _hash_token(refresh_token),
                grace,
            )
            if row is None or row["revoked"] or row["expired"]:
                raise InvalidRefreshToken()
            org_id = await self._still_a_member(db, row["session_id"], row["user_id"], row["organization_id"])
            successor: str | None = None
            if row["used_at"] is None:
                successor = secrets.token_urlsafe(32)
                successor_id = await self._store_refresh_token(db, row["session_id"], successor)
                await db.execute(
                    "UPDATE kijko_private.refresh_tokens"
                    " SET used_at = now(), successor_id = $2, successor_ciphertext = $3"
                    " WHERE id = $1",
                    row["id"],
                    successor_id,
                    self._keyring.encrypt(successor),
                )
            elif row["within_grace"] and row["successor_ciphertext"] is not None:
                # A parallel refresh with the same token: hand out the same successor.
                successor = self._keyring.decrypt(row["successor_ciphertext"])
        if successor is None:
            # Reuse after the grace window: assume theft and end the whole family.
            await self._revoke_family(row["session_id"])
            raise InvalidRefreshToken()
        return await self._pair(row["user_id"], org_id, row["session_id"], successor)

    async def _still_a_member(self, db: SystemSession, session_id: str, user_id: UUID, org_id: UUID) -> UUID:
        """The session's organization, or, when the user was removed from it, the organization
        a fresh login would land in (the session moves there); none left: the refresh fails."""
        if await accounts.is_member(db, user_id, org_id):
            return org_id
        fallback = await accounts.default_organization(db, user_id)
        if fallback is None:
            raise InvalidRefreshToken()
        await db.execute("UPDATE kijko_private.sessions SET organization_id = $2 WHERE id = $1", session_id, fallback)
        return fallback

    async def switch_organization(self, identity: TokenIdentity, org_id: UUID, refresh_token: str | None) -> TokenPair:
        """Move the caller's session to ``org_id`` and rotate its refresh token (decision 0072).

        The session stays one session (logout still ends everything); its refresh tokens not
        yet used now lead to the new one, so a refresh racing the switch inside the grace window
        gets the same successor, for the new organization, and a later reuse is a reuse.
        ``refresh_token`` is not needed here: the access token names the session.
        """
        successor = secrets.token_urlsafe(32)
        async with system_session(self._db) as db:
            # Locks in refresh's order (its token, then the session): a refresh racing the
            # switch waits, it does not deadlock.
            await db.execute(
                "SELECT 1 FROM kijko_private.refresh_tokens WHERE session_id = $1 AND used_at IS NULL FOR UPDATE",
                identity.session_id,
            )
            await accounts.require_live_session(db, identity, lock=True)
            if not await accounts.is_member(db, identity.user_id, org_id):
                raise Forbidden("You are not a member of this organization")
            await db.execute(
                "UPDATE kijko_private.sessions SET organization_id = $2 WHERE id = $1",
                identity.session_id,
                org_id,
            )
            successor_id = await self._store_refresh_token(db, identity.session_id, successor)
            await db.execute(
                "UPDATE kijko_private.refresh_tokens"
                " SET used_at = now(), successor_id = $2, successor_ciphertext = $3"
                " WHERE session_id = $1 AND used_at IS NULL AND id <> $2",
                identity.session_id,
                successor_id,
                self._keyring.encrypt(successor),
            )
        return await self._pair(identity.user_id, org_id, identity.session_id, successor)

    async def _revoke_family(self, session_id: str) -> None:
        # Its own transaction: the refresh that detected the reuse fails, the revocation stays.
        async with system_session(self._db) as db:
            await db.execute(
                "UPDATE kijko_private.sessions SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1",
                session_id,
            )

    async def logout(self, identity: TokenIdentity, access_token: str) -> None:
        async with system_session(self._db) as db:
            await accounts.revoke_session(db, identity, provider=self.name)
