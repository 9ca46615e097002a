"""The interface every identity provider implements (chosen by ``KIJKO_AUTH_PROVIDER``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol
from uuid import UUID

from kijko_core.auth.models import SignupRequest, TokenPair
from kijko_core.auth.principal import TokenIdentity
from kijko_core.auth.tokens import TokenVerifier


@dataclass(frozen=True)
class ProviderHealth:
    status: Literal["ok", "degraded"]
    detail: str | None = None


class IdentityProvider(Protocol):
    name: str
    verifier: TokenVerifier

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def signup(self, data: SignupRequest) -> TokenPair:
        """Create the user, their organization and owner membership; return tokens."""
        ...

    async def login(self, email: str, password: str) -> TokenPair: ...

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: a new access and a new refresh token."""
        ...

    async def switch_organization(self, identity: TokenIdentity, org_id: UUID, refresh_token: str | None) -> TokenPair:
        """New tokens of the caller's session for another organization of theirs: 403 if the
        caller is not a member of it (an unknown organization likewise), 401 for a session that
        is no longer valid."""
        ...

    async def logout(self, identity: TokenIdentity, access_token: str) -> None:
        """End the session: its refresh family and its access tokens until they expire."""
        ...

    async def health(self) -> ProviderHealth: ...
