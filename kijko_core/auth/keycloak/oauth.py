"""Social sign-in (Google, GitHub) through Keycloak identity brokering.

1. ``authorization_url(provider)``: a fresh ``state`` and PKCE verifier are stored server-side
   (state hashed, verifier encrypted, both with a TTL) and the browser is sent to Keycloak's
   authorization endpoint with ``kc_idp_hint`` so Keycloak goes straight to the provider.
   The caller also binds the state to the browser (the web layer: a short-lived cookie).
2. ``callback(code, state, bound_state)``: the state is consumed (single use) and must be the
   one bound to this browser (login CSRF: an attacker's code and state, planted in a victim's
   browser, would sign the victim in as the attacker); the code is exchanged with the
   verifier, the provider completes the sign-in (provisioning the Kijko user and
   organization on a first broker login), and the token pair is parked under a one-time code.
3. ``exchange(code)``: the browser's frontend trades that code, once, for the token pair.
Tokens never appear in a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Final
from urllib.parse import urlencode
from uuid import UUID

from databases import Database
from pydantic import BaseModel, ConfigDict, Field

from kijko_core.auth.keycloak.client import GrantRejected, KeycloakClient, KeycloakTokens
from kijko_core.auth.models import TokenPair
from kijko_core.crypto import DecryptionFailed, Keyring, digest_secret
from kijko_core.db.session import system_session
from kijko_core.errors import BadRequest, InvalidToken, NotFound

#: Our provider names → the identity-provider aliases in the realm (deploy/keycloak).
IDENTITY_PROVIDERS: Final = {"google": "google", "github": "github"}


class UnknownOAuthProvider(NotFound):
    code = "OAUTH_PROVIDER_NOT_FOUND"
    default_message = "Sign-in with this provider is not available"


class InvalidOAuthState(BadRequest):
    code = "INVALID_OAUTH_STATE"
    default_message = "The sign-in attempt is unknown or has expired; please start again"


class OAuthCodeRejected(BadRequest):
    code = "OAUTH_CODE_REJECTED"
    default_message = "The identity provider did not accept the sign-in; please start again"


@dataclass(frozen=True)
class OAuthStart:
    """Where to send the browser, and the state to bind to that browser."""

    location: str
    state: str


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (RFC 7636: 43–128 characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


class OAuthSignIn:
    def __init__(
        self,
        client: KeycloakClient,
        system_db: Database,
        keyring: Keyring,
        *,
        callback_url: str,
        frontend_url: str,
        state_ttl_seconds: int,
        handoff_ttl_seconds: int,
        complete: Callable[[KeycloakTokens], Awaitable[tuple[TokenPair, UUID]]],
    ) -> None:
        self._client = client
        self._db = system_db
        self._keyring = keyring
        self.callback_url = callback_url
        self._frontend_url = frontend_url
        self._state_ttl = state_ttl_seconds
        self._handoff_ttl = handoff_ttl_seconds
        self._complete = complete

    @property
    def state_ttl_seconds(self) -> int:
        return self._state_ttl

    async def authorization_url(self, provider: str) -> OAuthStart:
        alias = IDENTITY_PROVIDERS.get(provider)
        if alias is None:
            raise UnknownOAuthProvider()
        authorize = (await self._client.discovery()).authorization_endpoint
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        async with system_session(self._db) as db:
            await db.execute("DELETE FROM kijko_private.oauth_states WHERE expires_at < now()")
            await db.execute(
                "INSERT INTO kijko_private.oauth_states"
                " (state_hash, provider, verifier_ciphertext, expires_at)"
                " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
                digest_secret(state),
                provider,
                self._keyring.encrypt(verifier),
                self._state_ttl,
            )
        query = urlencode(
            {
                "client_id": self._client.client_id,
                "response_type": "code",
                "scope": "openid email profile",
                "redirect_uri": self.callback_url,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "kc_idp_hint": alias,
            }
        )
        return OAuthStart(f"{authorize}?{query}", state)

    async def _take_state(self, state: str) -> str:
        """Consume a state (single use); returns its PKCE verifier."""
        async with system_session(self._db) as db:
            ciphertext = await db.fetchval(
                "DELETE FROM kijko_private.oauth_states WHERE state_hash = $1"
                " RETURNING CASE WHEN expires_at > now() THEN verifier_ciphertext END",
                digest_secret(state),
            )
        if ciphertext is None:
            raise InvalidOAuthState()
        try:
            return self._keyring.decrypt(ciphertext)
        except DecryptionFailed:
            raise InvalidOAuthState() from None

    async def callback(self, *, code: str | None, state: str, error: str | None, bound_state: str | None) -> str:
        """Finish the sign-in; returns where to send the browser (never carrying tokens).

        ``bound_state`` is the state this browser started with (``None``: it started none).
        """
        verifier = await self._take_state(state)  # consumed, whether bound here or not
        if bound_state is None or not hmac.compare_digest(digest_secret(bound_state), digest_secret(state)):
            raise InvalidOAuthState()
        if error is not None or not code:
            # Cancelled at Keycloak or at the provider: tell the frontend, without details.
            return self._frontend("error", "oauth_failed")
        try:
            tokens = await self._client.code_grant(code, self.callback_url, verifier)
        except GrantRejected:
            raise OAuthCodeRejected() from None
        pair, user_id = await self._complete(tokens)
        return self._frontend("code", await self._park(pair, user_id))

    async def _park(self, pair: TokenPair, user_id: UUID) -> str:
        handoff = secrets.token_urlsafe(32)
        async with system_session(self._db) as db:
            await db.execute("DELETE FROM kijko_private.oauth_handoffs WHERE expires_at < now()")
            await db.execute(
                "INSERT INTO kijko_private.oauth_handoffs (code_hash, user_id, tokens_ciphertext, expires_at)"
                " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
                digest_secret(handoff),
                user_id,
                self._keyring.encrypt(pair.model_dump_json()),
                self._handoff_ttl,
            )
        return handoff

    async def exchange(self, code: str) -> TokenPair:
        """Trade a hand-off code for its token pair, once."""
        async with system_session(self._db) as db:
            ciphertext = await db.fetchval(
                "DELETE FROM kijko_private.oauth_handoffs WHERE code_hash = $1"
                " RETURNING CASE WHEN expires_at > now() THEN tokens_ciphertext END",
                digest_secret(code),
            )
        if ciphertext is None:
            raise InvalidToken("The sign-in code is unknown, used or expired")
        try:
            return TokenPair.model_validate_json(self._keyring.decrypt(ciphertext))
        except DecryptionFailed:
            raise InvalidToken("The sign-in code is unknown, used or expired") from None

    def _frontend(self, name: str, value: str) -> str:
        separator = "&" if "?" in self._frontend_url else "?"
        return f"{self._frontend_url}{separator}{urlencode({name: value})}"


class OAuthCallbackQuery(BaseModel):
    """What Keycloak appends to the callback URL (RFC 6749 §4.1.2)."""

    model_config = ConfigDict(extra="ignore")

    state: Annotated[str, Field(min_length=1, max_length=512)]
    code: Annotated[str | None, Field(default=None, min_length=1, max_length=4096)] = None
    error: Annotated[str | None, Field(default=None, max_length=200)] = None
