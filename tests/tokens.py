"""Forging access tokens for tests: with the real signing key read from the database through
the keyring, with a fresh key, or hand-built where joserfc (rightly) refuses to build them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from kijko_core.runtime import Kijko


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a token, without checking anything (to copy ``sid``, ``kid``…)."""
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
    )


async def private_key(kijko: Kijko, kid: str) -> RSAKey:
    """The private half of a stored signing key, decrypted with the runtime's keyring."""
    async with kijko.system_db.connection() as handle:
        ciphertext = await handle.raw_connection.fetchval(
            "SELECT private_key_ciphertext FROM kijko_private.signing_keys WHERE kid = $1", kid
        )
    assert ciphertext is not None, "no such signing key"
    return RSAKey.import_key(json.loads(kijko.keyring.decrypt(ciphertext)))


def claims_from(access_token: str, **overrides: Any) -> dict[str, Any]:
    """The claims of a real access token, refreshed in time, with ``overrides`` applied;
    an override of ``None`` removes the claim."""
    _, claims = unverified_parts(access_token)
    now = int(time.time())
    claims.update(iat=now, nbf=now, exp=now + 300)
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign(claims: dict[str, Any], key: RSAKey, *, kid: str | None = None, **header: Any) -> str:
    """An RS256 token signed with ``key``; ``kid`` defaults to the key's own."""
    values = {"alg": "RS256", "typ": "JWT", "kid": key.kid if kid is None else kid, **header}
    return jwt.encode(values, claims, key)


def unsigned(claims: dict[str, Any], kid: str) -> str:
    """``alg: none`` (joserfc refuses to make one)."""
    return f"{_b64json({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_b64json(claims)}."


def hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 with an arbitrary secret, e.g. the RSA public key (algorithm confusion)."""
    signing_input = f"{_b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def fresh_key() -> RSAKey:
    return RSAKey.generate_key(2048, auto_kid=True)


async def forge(kijko: Kijko, access_token: str, **overrides: Any) -> str:
    """A token signed with the real key that signed ``access_token``, claims overridden."""
    header, _ = unverified_parts(access_token)
    key = await private_key(kijko, header["kid"])
    return sign(claims_from(access_token, **overrides), key, kid=header["kid"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
