"""Signing keys of the local provider: generated once, kept in the database with the private
half encrypted, rotatable (docs/decisions/0037-signing-key-publication.md).

A rotated-in key is published first and signs only from ``active_from``, one JWKS refresh
interval later, when every running instance has loaded it; the key it replaces is retired at
that moment and stays in the key set until the tokens it signed have expired.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from databases import Database
from joserfc.jwk import Key, RSAKey

from kijko_core.crypto import Keyring
from kijko_core.db.session import SystemSession, system_session

ALGORITHM = "RS256"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Key


@dataclass(frozen=True)
class Rotation:
    kid: str
    active_from: datetime


class SigningKeyStore:
    """Implements ``KeySource`` for the verifier and hands the active key to the token issuer."""

    def __init__(
        self,
        database: Database,
        keyring: Keyring,
        *,
        retired_visible_seconds: int,
        recheck_seconds: float,
        publish_ahead_seconds: float,
    ) -> None:
        self._database = database
        self._keyring = keyring
        self._retired_visible = retired_visible_seconds
        self._recheck = recheck_seconds
        self._publish_ahead = publish_ahead_seconds
        self._active: SigningKey | None = None
        self._checked_at = float("-inf")

    async def load(self) -> Mapping[str, Key]:
        # Published: keys not yet signing, the signing key, and retired keys whose tokens may
        # still be valid.
        async with system_session(self._database, readonly=True) as db:
            rows = await db.fetch(
                "SELECT kid, public_jwk AS jwk FROM kijko_private.signing_keys"
                " WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1)",
                self._retired_visible,
            )
        return {row["kid"]: RSAKey.import_key(row["jwk"]) for row in rows}

    async def jwks(self) -> dict[str, object]:
        keys = await self.load()
        return {"keys": [key.as_dict(private=False, use="sig", alg=ALGORITHM) for key in keys.values()]}

    async def active(self) -> SigningKey:
        # Re-read now and then: another process may have rotated the key.
        if self._active is None or time.monotonic() - self._checked_at > self._recheck:
            self._active = await self._ensure_active()
            self._checked_at = time.monotonic()
        return self._active

    async def _ensure_active(self) -> SigningKey:
        async with system_session(self._database) as db:
            # Serialise first start-ups of several processes so exactly one key is generated.
            await db.execute("SELECT pg_advisory_xact_lock(hashtext('kijko.signing_keys'))")
            row = await db.fetchrow(
                "SELECT kid, private_key_ciphertext FROM kijko_private.signing_keys"
                " WHERE active_from <= now() AND (retired_at IS NULL OR retired_at > now())"
                " ORDER BY active_from DESC LIMIT 1"
            )
            if row is None:
                # The very first key: no instance can have tokens to verify yet.
                key, _ = await self._insert_new(db, ahead_seconds=0)
                return key
        return self._open(row["kid"], row["private_key_ciphertext"])

    async def rotate(self) -> Rotation:
        """Publish a new key that signs from one refresh interval on, when the current key
        is retired. Tokens keep being signed with the current key until then."""
        async with system_session(self._database) as db:
            await db.execute("SELECT pg_advisory_xact_lock(hashtext('kijko.signing_keys'))")
            key, active_from = await self._insert_new(db, ahead_seconds=self._publish_ahead)
            await db.execute(
                "UPDATE kijko_private.signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND kid <> $2",
                active_from,
                key.kid,
            )
        return Rotation(key.kid, active_from)

    async def _insert_new(self, db: SystemSession, *, ahead_seconds: float) -> tuple[SigningKey, datetime]:
        private = RSAKey.generate_key(2048, auto_kid=True)
        kid = private.kid
        assert kid is not None
        # clock_timestamp(), not now(): the transaction's start may be a while ago.
        active_from = await db.fetchval(
            "INSERT INTO kijko_private.signing_keys"
            " (kid, algorithm, public_jwk, private_key_ciphertext, active_from)"
            " VALUES ($1, $2, $3::jsonb, $4, clock_timestamp() + make_interval(secs => $5))"
            " RETURNING active_from",
            kid,
            ALGORITHM,
            dict(private.as_dict(private=False)),
            self._keyring.encrypt(json.dumps(private.as_dict(private=True))),
            float(ahead_seconds),
        )
        return SigningKey(kid, private), active_from

    def _open(self, kid: str, ciphertext: str) -> SigningKey:
        return SigningKey(kid, RSAKey.import_key(json.loads(self._keyring.decrypt(ciphertext))))
