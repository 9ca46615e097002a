"""Public key discovery of the local provider: JWKS and OpenID configuration."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from kijko_core.errors import NotFound
from kijko_server.uow import runtime

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")


def _local_keys() -> Any:
    identity = runtime().identity
    keys = getattr(identity, "keys", None)
    if identity.name != "local" or keys is None:
        raise NotFound("Keys are published by the identity provider")
    return keys


@bp.get("/jwks.json")
async def jwks() -> dict[str, Any]:
    """The public signing keys, including retired ones whose tokens may still be valid."""
    return await _local_keys().jwks()


@bp.get("/openid-configuration")
async def openid_configuration() -> dict[str, Any]:
    """OpenID discovery for services that verify Kijko's tokens themselves."""
    _local_keys()
    settings = runtime().settings
    return {
        "issuer": settings.issuer,
        "jwks_uri": f"{settings.base_url}/.well-known/jwks.json",
        "token_endpoint": f"{settings.base_url}/api/v1/auth/login",
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    }

