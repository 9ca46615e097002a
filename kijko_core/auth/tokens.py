"""Access-token verification (ARCHITECTURE §4): pinned algorithms, exact issuer, required
audience, ``exp``/``nbf`` with a small leeway, access tokens only, keys from a ``KeySource``
that is asked again once the keys are an interval old (so retired keys are dropped, new ones
learnt), and never more often than that.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key

from kijko_core.auth.principal import TokenIdentity
from kijko_core.config import Settings
from kijko_core.errors import InvalidToken

log = structlog.get_logger("kijko.auth")

ALGORITHMS = ("RS256", "ES256")
# The ``typ`` claim of an access token, as Keycloak and the local provider write it;
# ID tokens say "ID" and refresh tokens "Refresh".
ACCESS_TOKEN_TYP = "Bearer"


class KeySource(Protocol):
    """Where verification keys come from: the database (local) or a JWKS URL (Keycloak)."""

    async def load(self) -> Mapping[str, Key]:
        """Every currently valid public key by ``kid``."""
        ...


def unverified_header(token: str) -> dict[str, Any]:
    try:
        segment = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, UnicodeDecodeError, RecursionError):  # deeply nested JSON: RecursionError
        raise InvalidToken() from None
    if not isinstance(header, dict):
        raise InvalidToken()
    return header


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token this verifier accepted: whom it names, and what made it valid."""

    identity: TokenIdentity
    kid: str
    key: Key
    exp: int


class TokenVerifier:
    #: Tokens remembered after a full verification. A client sends the same access token on
    #: every call until it expires, so signature and claims are checked once per token, not
    #: once per request; revocation is still checked per request (``kijko.enter``).
    CACHE_SIZE = 4096

    def __init__(
        self,
        source: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: int,
        refresh_interval_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._interval = refresh_interval_seconds
        self._clock = clock
        self._keys: Mapping[str, Key] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._verified: dict[str, _Verified] = {}

    def expect_new_key(self) -> None:
        """The source now holds a key we have not loaded (we just started signing with it):
        let the next unknown ``kid`` reload at once instead of waiting for the interval."""
        self._loaded_at = float("-inf")

    @classmethod
    def for_settings(cls, source: KeySource, settings: Settings) -> TokenVerifier:
        """The verifier of the configured issuer and audience, over ``source``'s keys."""
        return cls(
            source,
            issuer=settings.issuer,
            audience=settings.jwt_audience,
            leeway_seconds=settings.jwt_leeway_seconds,
            refresh_interval_seconds=settings.jwks_refresh_interval_seconds,
        )

    def _stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= self._interval

    async def _key(self, kid: str) -> Key:
        # The key set is reloaded once it is an interval old, known ``kid`` or not: new keys
        # are learnt, and keys that left the set (retired long enough ago, or withdrawn) stop
        # verifying within one interval. While one task reloads, others that know their key
        # go on with the set they have instead of queueing behind a slow source.
        if self._stale() and not (self._lock.locked() and kid in self._keys):
            async with self._lock:
                if self._stale():
                    # Marked first: a failing source is asked again after an interval, not
                    # on every request.
                    self._loaded_at = time.monotonic()
                    try:
                        self._keys = await self._source.load()
                    except Exception:
                        # A blip of the source does not fail requests whose key we know.
                        if kid not in self._keys:
                            raise
                        log.warning("token_keys_reload_failed", exc_info=True)
        key = self._keys.get(kid)
        if key is None and self._lock.locked():
            # The set is loading (marked fresh before the load, so _stale() said no): the first
            # burst of a new process must wait for it rather than be refused.
            async with self._lock:
                key = self._keys.get(kid)
        if key is None:
            raise InvalidToken()
        return key

    async def verify(self, token: str, *, allow_expired: bool = False) -> TokenIdentity:
        """Return the identity of a valid access token, or raise ``InvalidToken``.

        ``allow_expired`` serves logout only: an expired but validly signed token still names
        the session to end.
        """
        if not allow_expired and (known := self._still_valid(token)) is not None:
            return known
        header = unverified_header(token)
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") not in ALGORITHMS:
            raise InvalidToken()
        key = await self._key(kid)
        try:
            decoded = jwt.decode(token, key, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError, TypeError):
            raise InvalidToken() from None
        claims = decoded.claims
        now = int(self._clock())
        registry = jwt.JWTClaimsRegistry(
            now=now if not allow_expired else min(now, _int(claims.get("exp")) - 1),
            leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": self._audience},
            exp={"essential": True},
            sub={"essential": True},
            sid={"essential": True},
            typ={"essential": True, "value": ACCESS_TOKEN_TYP},
            org_id={"essential": True},
        )
        try:
            registry.validate(claims)
            exp = int(claims["exp"])
            identity = TokenIdentity(
                user_id=UUID(str(claims["sub"])),
                org_id=UUID(str(claims["org_id"])),
                session_id=str(claims["sid"]),
                expires_at=datetime.fromtimestamp(exp, UTC),
            )
        except (JoseError, ValueError, TypeError, KeyError):
            raise InvalidToken() from None
        if not allow_expired:
            self._remember(token, _Verified(identity, kid, key, exp))
        return identity

    def _still_valid(self, token: str) -> TokenIdentity | None:
        """The identity of a token verified before, if nothing that made it valid has changed:
        not expired, and its key is still the one the current key set has for its ``kid`` (a
        reloaded set without it, or with another key, sends the token through in full)."""
        known = self._verified.get(token)
        if known is None or self._stale() or self._keys.get(known.kid) is not known.key:
            return None
        if self._clock() > known.exp + self._leeway:
            del self._verified[token]
            return None
        return known.identity

    def _remember(self, token: str, verified: _Verified) -> None:
        if len(self._verified) >= self.CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = verified


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidToken()
    return value
