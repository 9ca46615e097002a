"""Keycloak sessions Kijko has not seen yet are recorded when their first token is verified.

``kijko.enter`` accepts only sessions it knows (decision 0016). A frontend signing in with
keycloak-js gets tokens straight from Keycloak, so their ``sid`` never passed through Kijko's
login: the verifier records it, through the system pool, before the request enters its tenant
context. Only a token Keycloak signed can name a session here, so SQL on the app role still
cannot invent one. The record's expiry follows the newest token seen, and a revoked record
stays revoked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
from databases import Database

from kijko_core.auth.accounts import open_session
from kijko_core.auth.principal import TokenIdentity
from kijko_core.auth.tokens import KeySource, TokenVerifier
from kijko_core.config import Settings
from kijko_core.db.session import system_session
from kijko_core.errors import InvalidToken


class KnownSessions:
    """Records Keycloak sessions; remembers per process what it recorded, so a token costs
    one system-pool statement the first time it is seen, and none after."""

    #: Past this many remembered sessions the memory starts over (it is only a shortcut).
    MAX_REMEMBERED = 10_000

    def __init__(self, system_db: Database, *, leeway_seconds: int) -> None:
        self._db = system_db
        self._leeway = timedelta(seconds=leeway_seconds)
        self._recorded: dict[str, datetime] = {}

    async def record(self, identity: TokenIdentity) -> None:
        until = identity.expires_at + self._leeway
        known = self._recorded.get(identity.session_id)
        if known is not None and known >= until:
            return
        try:
            async with system_session(self._db) as db:
                await open_session(
                    db,
                    session_id=identity.session_id,
                    user_id=identity.user_id,
                    org_id=identity.org_id,
                    provider="keycloak",
                    expires_at=until,
                )
        except asyncpg.ForeignKeyViolationError:
            # No Kijko user with this id: erased, or never signed in through Kijko.
            raise InvalidToken() from None
        if len(self._recorded) >= self.MAX_REMEMBERED:
            self._recorded.clear()
        self._recorded[identity.session_id] = until


class SessionRecordingVerifier(TokenVerifier):
    """A ``TokenVerifier`` that records the session of every valid access token it returns."""

    sessions: KnownSessions

    @classmethod
    def recording(cls, source: KeySource, settings: Settings, sessions: KnownSessions) -> SessionRecordingVerifier:
        """The verifier ``for_settings`` builds, recording into ``sessions``."""
        verifier = cls.for_settings(source, settings)
        assert isinstance(verifier, cls)
        verifier.sessions = sessions
        return verifier

    async def verify(self, token: str, *, allow_expired: bool = False) -> TokenIdentity:
        identity = await super().verify(token, allow_expired=allow_expired)
        if not allow_expired:  # logout names a session to end, it does not use it
            await self.sessions.record(identity)
        return identity
