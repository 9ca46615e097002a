"""The Keycloak identity provider (``KIJKO_AUTH_PROVIDER=keycloak``).

Keycloak owns credentials and sessions; Kijko keeps its own user row (same id as the
Keycloak user), organizations and memberships, and a local record of each Keycloak session
(``sid``), made at sign-in or when its first token is verified, so logout takes effect at once
in every Kijko process and ``kijko.enter`` accepts only sessions it knows. Every HTTP call to Keycloak
happens outside any database transaction (ARCHITECTURE §2).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import structlog
from databases import Database
from joserfc import jwt
from joserfc.errors import JoseError

from kijko_core.auth import accounts
from kijko_core.auth.keycloak.client import (
    GrantRejected,
    KeycloakClient,
    KeycloakTokens,
    PasswordRejected,
    SessionNotFound,
    UserExists,
)
from kijko_core.auth.keycloak.jwks import JwksKeySource
from kijko_core.auth.keycloak.oauth import OAuthSignIn
from kijko_core.auth.keycloak.sessions import KnownSessions, SessionRecordingVerifier
from kijko_core.auth.models import SignupRequest, TokenPair
from kijko_core.auth.principal import TokenIdentity
from kijko_core.auth.provider import ProviderHealth
from kijko_core.auth.tokens import ACCESS_TOKEN_TYP, ALGORITHMS, TokenVerifier, unverified_header
from kijko_core.config import Settings
from kijko_core.crypto import Keyring
from kijko_core.db.session import system_session
from kijko_core.errors import (
    BadRequest,
    Forbidden,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    UpstreamError,
    ValidationFailed,
)

log = structlog.get_logger("kijko.keycloak")

#: The Keycloak user attribute (declared in the realm's user profile) and access-token claim
#: naming the user's active organization.
ORG_ID_ATTRIBUTE = "org_id"
OAUTH_CALLBACK_PATH = "/api/v1/auth/oauth/callback"


class KeycloakProvider:
    name = "keycloak"

    def __init__(self, settings: Settings, system_db: Database, keyring: Keyring, http: httpx.AsyncClient) -> None:
        """``http`` is the runtime's outbound client (``kijko.http``); the runtime closes it."""
        assert settings.keycloak_url is not None and settings.keycloak_client_secret is not None
        self._settings = settings
        self._db = system_db
        self.client = KeycloakClient(
            http,
            timeout=settings.keycloak_timeout_seconds,
            base_url=settings.keycloak_url,
            realm=settings.keycloak_realm,
            client_id=settings.keycloak_client_id,
            client_secret=settings.keycloak_client_secret.get_secret_value(),
        )
        self._jwks = JwksKeySource(self.client)
        self.verifier: TokenVerifier = SessionRecordingVerifier.recording(
            self._jwks, settings, KnownSessions(system_db, leeway_seconds=settings.jwt_leeway_seconds)
        )
        self.oauth = OAuthSignIn(
            self.client,
            system_db,
            keyring,
            callback_url=settings.base_url + OAUTH_CALLBACK_PATH,
            frontend_url=settings.oauth_redirect_url,
            state_ttl_seconds=settings.oauth_state_ttl_seconds,
            handoff_ttl_seconds=settings.oauth_handoff_ttl_seconds,
            complete=self._complete,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # Warm the discovery and key caches, but start even when Keycloak is down: readiness
        # reports it as degraded and the caches fill on first use.
        try:
            discovery = await self.client.discovery()
            await self._jwks.load()
        except UpstreamError:
            log.warning("keycloak_unavailable_at_start")
            return
        if discovery.issuer != self._settings.issuer:
            log.warning("keycloak_issuer_differs", expected=self._settings.issuer, found=discovery.issuer)

    async def close(self) -> None:
        pass  # the HTTP client is the runtime's

    async def health(self) -> ProviderHealth:
        try:
            await self.client.discovery(fresh=True)
            document = await self.client.jwks()
        except Exception:  # noqa: BLE001 - health reports, it never raises
            return ProviderHealth("degraded", "Keycloak discovery or JWKS is unreachable")
        if not document.get("keys"):
            return ProviderHealth("degraded", "Keycloak publishes no signing keys")
        return ProviderHealth("ok")

    # -- the IdentityProvider operations ---------------------------------------------------

    async def signup(self, data: SignupRequest) -> TokenPair:
        email = str(data.email)
        try:
            user_id = await self.client.create_user(email=email, first_name=data.first_name, last_name=data.last_name)
        except UserExists:
            raise accounts.AccountExists(field="email") from None
        try:
            await self.client.set_password(user_id, data.password)
            async with system_session(self._db) as db:
                _, org_id = await accounts.create_account(
                    db, email=email, first_name=data.first_name, last_name=data.last_name, user_id=user_id
                )
        except Exception as error:
            # Undo the half-made Keycloak user so the email can be used again.
            await self._forget_user(user_id)
            if isinstance(error, PasswordRejected):
                raise ValidationFailed("password: does not meet the password policy", field="password") from None
            raise
        await self.client.set_attribute(user_id, ORG_ID_ATTRIBUTE, str(org_id))
        try:
            tokens = await self.client.password_grant(email, data.password)
        except GrantRejected:
            # e.g. a realm that requires actions (verify email) before the first login.
            raise UpstreamError("The identity provider did not sign in the new account") from None
        pair, _ = await self._complete(tokens)
        return pair

    async def login(self, email: str, password: str) -> TokenPair:
        try:
            tokens = await self.client.password_grant(email, password)
        except GrantRejected:
            raise InvalidCredentials() from None
        pair, _ = await self._complete(tokens)
        return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        try:
            tokens = await self.client.refresh_grant(refresh_token)
        except GrantRejected:
            raise InvalidRefreshToken() from None
        try:
            pair, _ = await self._complete(tokens)
        except InvalidToken:  # the session was revoked here (logout)
            raise InvalidRefreshToken() from None
        return pair

    async def logout(self, identity: TokenIdentity, access_token: str) -> None:
        """Revoke the session here first (effective at once, in every process), then end the
        Keycloak session through the admin API so its refresh token dies too."""
        async with system_session(self._db) as db:
            await accounts.revoke_session(db, identity, provider=self.name)
        try:
            await self.client.delete_session(identity.session_id)
        except SessionNotFound:
            pass  # already ended (expired, or logged out elsewhere)
        except UpstreamError:
            # Kijko no longer accepts the session; Keycloak's copy times out on its own.
            log.warning("keycloak_logout_incomplete")

    # -- completing a sign-in --------------------------------------------------------------

    async def _complete(self, tokens: KeycloakTokens) -> tuple[TokenPair, UUID]:
        """Turn tokens fresh from Keycloak into Kijko's token pair.

        Provisions the Kijko user and organization on a first sign-in (first broker login, or a
        user created in the Keycloak console), makes sure the access token carries ``org_id``,
        and records the session so a revoked one cannot be refreshed back to life.
        """
        claims = await self._claims(tokens.access_token)
        user_id = UUID(str(claims["sub"]))
        claimed = claims.get(ORG_ID_ATTRIBUTE)
        org_id = await self._organization(user_id, claimed)
        # No org_id yet, a new organization, or one the user was removed from (decision 0070):
        # point the attribute at the organization the sign-in lands in and take fresh tokens.
        if claimed != str(org_id):
            await self.client.set_attribute(user_id, ORG_ID_ATTRIBUTE, str(org_id))
            try:
                tokens = await self.client.refresh_grant(tokens.refresh_token)
            except GrantRejected:
                raise InvalidToken() from None
            claims = await self._claims(tokens.access_token)
            if claims.get(ORG_ID_ATTRIBUTE) != str(org_id):
                log.error("keycloak_org_id_not_in_token")
                raise UpstreamError("Keycloak does not put org_id into access tokens; check the realm's mapper")
        session_id = str(claims["sid"])
        lifetime = tokens.refresh_expires_in or self._settings.refresh_token_ttl_seconds
        async with system_session(self._db) as db:
            await accounts.open_session(
                db,
                session_id=session_id,
                user_id=user_id,
                org_id=UUID(str(claims[ORG_ID_ATTRIBUTE])),
                provider=self.name,
                expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
            )
            revoked = await db.fetchval(
                "SELECT revoked_at IS NOT NULL FROM kijko_private.sessions WHERE id = $1", session_id
            )
        if revoked:
            raise InvalidToken()
        pair = TokenPair(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_in=tokens.expires_in,
        )
        return pair, user_id

    async def _organization(self, user_id: UUID, claimed: Any) -> UUID:
        """The organization a sign-in lands in: the one the token claims while the user is still
        a member of it, else the oldest membership; provisions user and organization if Kijko
        has neither."""
        known, org_id = await self._account(user_id, claimed)
        if org_id is not None:
            return org_id
        if known:
            raise InvalidCredentials("This account belongs to no organization")
        user = await self.client.get_user(user_id)
        email = user.get("email")
        if not isinstance(email, str) or not email:
            raise BadRequest("The identity provider did not share an email address")
        try:
            async with system_session(self._db) as db:
                _, org_id = await accounts.create_account(
                    db,
                    email=email,
                    first_name=str(user.get("firstName") or "")[:100],
                    last_name=str(user.get("lastName") or "")[:100],
                    user_id=user_id,
                )
        except accounts.AccountExists:
            # A parallel first sign-in of the same user won the race: use its organization.
            known, org_id = await self._account(user_id, None)
            if org_id is None:
                raise
            return org_id
        log.info("keycloak_user_provisioned", user_id=str(user_id))
        return org_id

    async def _account(self, user_id: UUID, claimed: Any) -> tuple[bool, UUID | None]:
        try:
            claimed_org = UUID(str(claimed)) if claimed is not None else None
        except ValueError:
            claimed_org = None
        async with system_session(self._db, readonly=True) as db:
            known = await db.fetchval("SELECT EXISTS (SELECT 1 FROM kijko_private.users WHERE id = $1)", user_id)
            if not known:
                return False, None
            if claimed_org is not None and await db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM kijko.memberships WHERE organization_id = $1 AND user_id = $2)",
                claimed_org,
                user_id,
            ):
                return True, claimed_org
            return True, await accounts.default_organization(db, user_id)

    async def switch_organization(self, identity: TokenIdentity, org_id: UUID, refresh_token: str | None) -> TokenPair:
        """Point the user's ``org_id`` attribute at ``org_id`` and refresh the caller's session
        with its refresh token, so Keycloak's mapper writes the new organization (decision
        0072). The attribute is the user's: their other sessions land there on their next
        refresh too."""
        if refresh_token is None:
            raise BadRequest(
                "refresh_token: required to switch organizations with this identity provider",
                field="refresh_token",
            )
        if not _names_session(refresh_token, identity):
            raise InvalidRefreshToken()  # another session's: do not even touch the attribute
        async with system_session(self._db) as db:
            await accounts.require_live_session(db, identity)
            if not await accounts.is_member(db, identity.user_id, org_id):
                raise Forbidden("You are not a member of this organization")
        await self.client.set_attribute(identity.user_id, ORG_ID_ATTRIBUTE, str(org_id))
        try:
            tokens = await self.client.refresh_grant(refresh_token)
        except GrantRejected:
            raise InvalidRefreshToken() from None
        fresh = await self._claims(tokens.access_token)
        if fresh.get("sub") != str(identity.user_id) or fresh.get("sid") != identity.session_id:
            # Another session's refresh token (or another user's): not this caller's to switch.
            raise InvalidRefreshToken()
        try:
            pair, _ = await self._complete(tokens)
        except InvalidToken:  # the session was revoked here meanwhile (logout)
            raise InvalidRefreshToken() from None
        if (await self._claims(pair.access_token)).get(ORG_ID_ATTRIBUTE) != str(org_id):
            # Removed from it while switching: the sign-in landed elsewhere.
            raise Forbidden("You are not a member of this organization")
        return pair

    async def _claims(self, token: str) -> dict[str, Any]:
        """Verify an access token fresh from Keycloak; ``org_id`` may still be missing.

        A failure here means the realm and Kijko's settings disagree (issuer, audience
        mapper…), so it is reported as an upstream error, not as the user's fault.
        """
        kid = unverified_header(token).get("kid")
        key = self._jwks.known.get(kid) if isinstance(kid, str) else None
        if key is None and isinstance(kid, str):
            key = (await self._jwks.load()).get(kid)  # Keycloak rotated its keys
        try:
            if key is None:
                raise ValueError("unknown kid")
            claims = jwt.decode(token, key, algorithms=list(ALGORITHMS)).claims
            jwt.JWTClaimsRegistry(
                now=int(time.time()),
                leeway=self._settings.jwt_leeway_seconds,
                iss={"essential": True, "value": self._settings.issuer},
                aud={"essential": True, "value": self._settings.jwt_audience},
                exp={"essential": True},
                sub={"essential": True},
                sid={"essential": True},
                typ={"essential": True, "value": ACCESS_TOKEN_TYP},
            ).validate(claims)
            UUID(str(claims["sub"]))
        except (JoseError, ValueError, TypeError) as error:
            log.error("keycloak_token_unusable", reason=type(error).__name__, detail=str(error)[:200])
            raise UpstreamError("Keycloak issued a token Kijko cannot use; check the realm") from None
        return dict(claims)

    async def _forget_user(self, user_id: UUID) -> None:
        try:
            await self.client.delete_user(user_id)
        except UpstreamError:
            log.error("keycloak_orphan_user", user_id=str(user_id))


def _names_session(refresh_token: str, identity: TokenIdentity) -> bool:
    """Whether a Keycloak refresh token (a JWT Keycloak signs with a key of its own, which Kijko
    cannot check) says it belongs to the caller's session. Only a guard against side effects;
    Keycloak judges the token, and the fresh access token is checked again afterwards."""
    try:
        segment = refresh_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError, RecursionError):
        return True  # not a JWT: leave it to Keycloak
    if not isinstance(claims, dict):
        return True
    return claims.get("sid") in (None, identity.session_id) and claims.get("sub") in (None, str(identity.user_id))
