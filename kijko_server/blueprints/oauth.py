"""Social sign-in through Keycloak identity brokering (public routes, ARCHITECTURE §7).

``GET /oauth/{provider}`` sends the browser to Keycloak, ``GET /oauth/callback`` finishes the
sign-in and sends the browser to the frontend with a one-time code, and
``POST /oauth/exchange`` trades that code for the token pair, once.

The start sets a short-lived ``HttpOnly``, ``SameSite=Lax`` cookie holding the state; the
callback accepts only the state of that cookie and clears it, so a sign-in started in one
browser cannot be finished in another (login CSRF, docs/decisions/0041-oauth-state-cookie.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from quart import Blueprint, Response, after_this_request, request
from quart.typing import ResponseTypes
from quart_schema import validate_querystring, validate_request
from werkzeug.sansio.response import Response as AnyResponse

from kijko_core.auth.keycloak.oauth import (
    InvalidOAuthState,
    OAuthCallbackQuery,
    OAuthCodeRejected,
    OAuthSignIn,
    UnknownOAuthProvider,
)
from kijko_core.auth.models import OAuthExchangeRequest, TokenPair
from kijko_core.errors import InvalidToken, TryAgain, UpstreamError
from kijko_server.blueprints.auth import KEYCLOAK_SIGN_IN
from kijko_server.caching import no_store
from kijko_server.openapi import redirects, responds
from kijko_server.responses import validate_response
from kijko_server.security import public
from kijko_server.uow import runtime

bp = Blueprint("oauth", __name__, url_prefix="/api/v1/auth/oauth")
STATE_COOKIE = "kijko_oauth_state"
bp.after_request(no_store)  # tokens (exchange) and one-time codes (redirects): never cached


def _oauth() -> OAuthSignIn:
    flow = getattr(runtime().identity, "oauth", None)
    if not isinstance(flow, OAuthSignIn):
        raise UnknownOAuthProvider("Social sign-in needs the Keycloak identity provider")
    return flow


@dataclass(frozen=True)
class StateCookie:
    """Where the state cookie lives. Over https it is ``__Host-`` prefixed (Secure, path ``/``,
    no domain), so a sibling subdomain cannot plant one; over plain http (development) it is
    scoped to the OAuth routes."""

    name: str
    path: str
    secure: bool

    @classmethod
    def of(cls, flow: OAuthSignIn) -> StateCookie:
        if flow.callback_url.startswith("https://"):
            return cls(f"__Host-{STATE_COOKIE}", "/", True)
        return cls(STATE_COOKIE, bp.url_prefix or "/", False)

    def set(self, response: AnyResponse, state: str, max_age: int) -> None:
        response.set_cookie(
            self.name,
            state,
            max_age=max_age,
            path=self.path,
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def clear(self, response: AnyResponse) -> None:
        response.delete_cookie(self.name, path=self.path, secure=self.secure, httponly=True, samesite="Lax")


def _redirect(location: str) -> Response:
    response = Response("", status=302)
    response.headers["Location"] = location
    return response


@bp.get("/callback")
@public
# 404 with the local provider; a bad state, a code Keycloak refuses, then completing the sign-in.
@responds(UnknownOAuthProvider, InvalidOAuthState, OAuthCodeRejected, TryAgain, *KEYCLOAK_SIGN_IN)
@redirects("To the frontend, with a one-time `code` (or `error`) in the query")
@validate_querystring(OAuthCallbackQuery)
async def oauth_callback(query_args: OAuthCallbackQuery) -> Response:
    """Keycloak returns here; answers 302 to the frontend with a one-time ``code``."""
    flow = _oauth()
    cookie = StateCookie.of(flow)

    @after_this_request
    async def clear_state_cookie(response: ResponseTypes) -> ResponseTypes:
        cookie.clear(response)  # one attempt per start, whatever its outcome
        return response

    return _redirect(
        await flow.callback(
            code=query_args.code,
            state=query_args.state,
            error=query_args.error,
            bound_state=request.cookies.get(cookie.name),
        )
    )


@bp.post("/exchange")
@public
@responds(UnknownOAuthProvider, InvalidToken, TryAgain)  # 401: the code is unknown, used or expired
@validate_request(OAuthExchangeRequest)
@validate_response(TokenPair)
async def oauth_exchange(data: OAuthExchangeRequest) -> TokenPair:
    """Trade the one-time code from the callback redirect for the token pair (works once)."""
    return await _oauth().exchange(data.code)


@bp.get("/<provider>")
@public
@responds(UnknownOAuthProvider, UpstreamError)  # 502: Keycloak's discovery failed
@redirects("To Keycloak's authorization endpoint for that identity provider")
async def oauth_start(provider: str) -> Response:
    """Start signing in with ``google`` or ``github``: answers 302 to Keycloak."""
    flow = _oauth()
    start = await flow.authorization_url(provider)
    response = _redirect(start.location)
    StateCookie.of(flow).set(response, start.state, flow.state_ttl_seconds)
    return response
