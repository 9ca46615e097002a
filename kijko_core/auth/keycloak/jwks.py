"""Keycloak's signing keys, read from the ``jwks_uri`` of OIDC discovery.

``TokenVerifier`` decides *when* to load (on an unknown ``kid``, at most once per interval);
this source only fetches and parses. A failed fetch keeps the keys we already had, so a
Keycloak outage leaves known tokens verifiable and unknown ones rejected with 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey

from kijko_core.auth.keycloak.client import KeycloakClient
from kijko_core.auth.tokens import ALGORITHMS
from kijko_core.errors import UpstreamError

log = structlog.get_logger("kijko.keycloak")


class JwksKeySource:
    def __init__(self, client: KeycloakClient) -> None:
        self._client = client
        self._keys: Mapping[str, Key] = {}

    @property
    def known(self) -> Mapping[str, Key]:
        """The keys of the last successful fetch."""
        return self._keys

    async def load(self) -> Mapping[str, Key]:
        try:
            document = await self._client.jwks()
        except UpstreamError:
            return self._keys
        self._keys = parse_jwks(document)
        return self._keys


def parse_jwks(document: Mapping[str, Any]) -> dict[str, Key]:
    """Signature keys by ``kid``; encryption keys and algorithms we do not accept are skipped."""
    found: dict[str, Key] = {}
    entries = document.get("keys")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") not in ALGORITHMS:
            continue
        try:
            if entry.get("kty") == "RSA":
                found[entry["kid"]] = RSAKey.import_key(entry)
            elif entry.get("kty") == "EC":
                found[entry["kid"]] = ECKey.import_key(entry)
        except (JoseError, ValueError, TypeError):
            log.warning("keycloak_jwk_skipped", kid=entry["kid"])
    return found
