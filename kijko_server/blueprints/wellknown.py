"""Public key discovery of the local provider: JWKS and OpenID configuration."""

from __future__ import annotations

from quart import Blueprint

from kijko_core.auth.local.provider import LocalProvider
from kijko_core.auth.models import JsonWebKeySet, OpenIDConfiguration
from kijko_core.errors import NotFound
from kijko_server.openapi import responds
from kijko_server.responses import validate_response
from kijko_server.security import public
from kijko_server.uow import runtime

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")


def _local_provider() -> LocalProvider:
    identity = runtime().identity
    if not isinstance(identity, LocalProvider):
        raise NotFound("Keys are published by the identity provider")
    return identity


@bp.get("/jwks.json")
@public
@responds(NotFound)  # another identity provider publishes the keys
@validate_response(JsonWebKeySet)
async def jwks() -> JsonWebKeySet:
    """The public signing keys, including retired ones whose tokens may still be valid."""
    return JsonWebKeySet.model_validate(await _local_provider().keys.jwks())


@bp.get("/openid-configuration")
@public
@responds(NotFound)
@validate_response(OpenIDConfiguration)
async def openid_configuration() -> OpenIDConfiguration:
    """OpenID discovery for services that verify Kijko's tokens themselves."""
    _local_provider()
    settings = runtime().settings
    return OpenIDConfiguration(
        issuer=settings.issuer,
        jwks_uri=f"{settings.base_url}/.well-known/jwks.json",
        token_endpoint=f"{settings.base_url}/api/v1/auth/login",
        id_token_signing_alg_values_supported=["RS256"],
        response_types_supported=["token"],
        subject_types_supported=["public"],
    )
