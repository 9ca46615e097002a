"""Git-provider connections: the authorization code flow with PKCE and a server-side state
bound to the member who started it (docs/decisions/0066-git-provider-connections.md).

1. ``start``: a fresh state (stored hashed, with the PKCE verifier encrypted, for
   ``KIJKO_GIT_OAUTH_STATE_TTL_SECONDS``) and the provider's authorization URL.
2. ``finish``: the state is consumed (single use) and must have been started by this member of
   this organization for this provider; the code is exchanged with the verifier, the user's
   name and avatar read, and the tokens stored encrypted with the keyring.
3. ``usable_token``: the access token for a provider call, refreshed first when it is about
   to expire and the provider issued a refresh token.

A connection belongs to one user in one organization: another member never uses it, and
leaving the organization deletes it (foreign key to the membership).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx

from kijko_core.auth.keycloak.oauth import pkce_pair
from kijko_core.config import Settings
from kijko_core.crypto import DecryptionFailed, Keyring, digest_secret
from kijko_core.db.session import TenantSession
from kijko_core.sources import repository
from kijko_core.sources.cache import ProviderCache
from kijko_core.sources.models import (
    CONNECTABLE,
    AuthUrl,
    ConnectionCodeRejected,
    ConnectionRecord,
    InvalidConnectionState,
    NotAuthenticated,
    OAuthCallback,
    OAuthConnection,
)
from kijko_core.sources.providers import Provider, TokenGrant, provider

#: Opens the caller's tenant session (``kijko_server.uow.tenant`` in the web layer).
OpenSession = Callable[..., AbstractAsyncContextManager[TenantSession]]
#: A token this close to its expiry is refreshed before use.
REFRESH_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class Caller:
    """Who asked, and the token to ask the provider with (None: anonymously)."""

    org_id: UUID
    user_id: UUID
    token: str | None


class Connections:
    def __init__(self, settings: Settings, keyring: Keyring, client: httpx.AsyncClient, cache: ProviderCache) -> None:
        self.settings = settings
        self.keyring = keyring
        self.client = client
        self.cache = cache

    def provider(self, name: str) -> Provider:
        return provider(name, self.settings, self.client)

    async def list(self, db: TenantSession) -> list[OAuthConnection]:
        """Every connectable provider, connected or not, in a fixed order."""
        connected = {record.provider: record for record in await repository.connections(db)}
        return [
            connected[name].wire() if name in connected else OAuthConnection(provider=name, connected=False)
            for name in CONNECTABLE
        ]

    async def start(self, db: TenantSession, name: str) -> AuthUrl:
        chosen = self.provider(name)
        chosen.configured()  # 409 before anything is stored
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        await repository.insert_state(
            db,
            digest_secret(state),
            chosen.name,
            self.keyring.encrypt(verifier),
            self.settings.git_oauth_state_ttl_seconds,
        )
        return AuthUrl(
            auth_url=chosen.authorization_url(
                state=state, challenge=challenge, redirect_uri=self.settings.git_oauth_redirect_url
            )
        )

    async def finish(self, open_session: OpenSession, data: OAuthCallback) -> OAuthConnection:
        # Consumed in its own transaction: whatever happens next, the state cannot be replayed.
        async with open_session() as db:
            chosen = self.provider(data.provider)
            chosen.configured()
            ciphertext = await repository.take_state(db, digest_secret(data.state), chosen.name)
            principal = db.principal
        if ciphertext is None:
            raise InvalidConnectionState()
        try:
            verifier = self.keyring.decrypt(ciphertext)
        except DecryptionFailed:
            raise InvalidConnectionState() from None
        grant = await chosen.exchange(data.code, verifier, self.settings.git_oauth_redirect_url)
        profile = await chosen.profile(grant.access_token)
        async with open_session() as db:
            record = await repository.save_connection(
                db,
                chosen.name,
                {
                    "username": profile.username[:200],
                    # A cut URL is a broken one: an over-long avatar is dropped instead.
                    "avatar_url": profile.avatar_url if len(profile.avatar_url or "") <= 2000 else None,
                    "scope": grant.scope,
                    **self._encrypted(grant),
                },
            )
        await self.cache.forget_user(principal.org_id, principal.user_id)
        return record.wire()

    def _encrypted(self, grant: TokenGrant) -> dict[str, object]:
        return {
            "access_token_ciphertext": self.keyring.encrypt(grant.access_token),
            "refresh_token_ciphertext": self.keyring.encrypt(grant.refresh_token) if grant.refresh_token else None,
            "expires_at": datetime.now(UTC) + timedelta(seconds=grant.expires_in) if grant.expires_in else None,
        }

    async def disconnect(self, db: TenantSession, name: str) -> None:
        """Forget the connection (idempotent). The grant at the provider is the user's to
        revoke there (docs/providers.md)."""
        chosen = self.provider(name)
        await repository.delete_connection(db, chosen.name)
        await self.cache.forget_user(db.principal.org_id, db.principal.user_id)

    async def caller(self, open_session: OpenSession, chosen: Provider | str) -> tuple[Caller, Provider]:
        """The caller and their usable token at ``chosen`` (None when not connected). A
        provider named by the request is resolved inside the session: a revoked token is a
        401 before anything about the request is judged."""
        async with open_session() as db:
            principal = db.principal
            if isinstance(chosen, str):
                chosen = self.provider(chosen)
            record = await repository.connection(db, chosen.name)
            if record is not None and _expiring(record):
                record = await repository.connection(db, chosen.name, for_update=True)
                if record is not None and _expiring(record):
                    refreshed = await self._refresh(db, chosen, record)
                    return Caller(principal.org_id, principal.user_id, refreshed), chosen
        token = self._access_token(record) if record is not None else None
        return Caller(principal.org_id, principal.user_id, token), chosen

    def _access_token(self, record: ConnectionRecord) -> str:
        try:
            return self.keyring.decrypt(record.access_token_ciphertext)
        except DecryptionFailed:  # its key was retired from the keyring
            raise NotAuthenticated("Your connection cannot be read any more; connect again") from None

    async def _refresh(self, db: TenantSession, chosen: Provider, record: ConnectionRecord) -> str:
        """Refresh under the row's lock (a rotated refresh token is spent once)."""
        expired = NotAuthenticated(f"Your {chosen.title} connection has expired; connect again")
        if record.refresh_token_ciphertext is None:
            raise expired
        try:
            refresh_token = self.keyring.decrypt(record.refresh_token_ciphertext)
        except DecryptionFailed:
            raise expired from None
        try:
            grant = await chosen.refresh(refresh_token)
        except ConnectionCodeRejected:
            raise expired from None
        values = self._encrypted(grant)
        # A provider that does not rotate its refresh tokens keeps the one it gave.
        await repository.update_tokens(
            db,
            chosen.name,
            str(values["access_token_ciphertext"]),
            str(values["refresh_token_ciphertext"] or record.refresh_token_ciphertext),
            values["expires_at"],  # type: ignore[arg-type]
        )
        return grant.access_token


def _expiring(record: ConnectionRecord) -> bool:
    return record.expires_at is not None and record.expires_at - REFRESH_MARGIN <= datetime.now(UTC)
