"""Social sign-in through Keycloak identity brokering (public routes, ARCHITECTURE §7).

``GET /oauth/{provider}`` sends the browser to Keycloak, ``GET /oauth/callback`` finishes the
sign-in and sends the browser to the frontend with a one-time code, and
``POST /oauth/exchange`` trades that code for the token pair, once.
"""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import validate_querystring, validate_request

from kijko_core.auth.keycloak.oauth import OAuthCallbackQuery, OAuthSignIn, UnknownOAuthProvider
from kijko_core.auth.models import OAuthExchangeRequest, TokenPair
from kijko_server.openapi import redirects
from kijko_server.responses import validate_response
from kijko_server.security import public
from kijko_server.uow import runtime

bp = Blueprint("oauth", __name__, url_prefix="/api/v1/auth/oauth")


def _oauth() -> OAuthSignIn:
    flow = getattr(runtime().identity, "oauth", None)
    if not isinstance(flow, OAuthSignIn):
        raise UnknownOAuthProvider("Social sign-in needs the Keycloak identity provider")
    return flow


def _redirect(location: str) -> Response:
    response = Response("", status=302)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/callback")
@public
@redirects("To the frontend, with a one-time `code` (or `error`) in the query")
@validate_querystring(OAuthCallbackQuery)
async def oauth_callback(query_args: OAuthCallbackQuery) -> Response:
    """Keycloak returns here; answers 302 to the frontend with a one-time ``code``."""
    flow = _oauth()
    return _redirect(
        await flow.callback(code=query_args.code, state=query_args.state, error=query_args.error)
    )


@bp.post("/exchange")
@public
@validate_request(OAuthExchangeRequest)
@validate_response(TokenPair)
async def oauth_exchange(data: OAuthExchangeRequest) -> TokenPair:
    """Trade the one-time code from the callback redirect for the token pair (works once)."""
    return await _oauth().exchange(data.code)


@bp.get("/<provider>")
@public
@redirects("To Keycloak's authorization endpoint for that identity provider")
async def oauth_start(provider: str) -> Response:
    """Start signing in with ``google`` or ``github``: answers 302 to Keycloak."""
    return _redirect(await _oauth().authorization_url(provider))
