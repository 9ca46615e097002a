"""Contract §2.1: signup, login, refresh, logout, me (snake_case by contract)."""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint
from quart_schema import validate_request

from kijko_core.auth import service
from kijko_core.auth.accounts import AccountExists
from kijko_core.auth.models import (
    LoginRequest,
    RefreshRequest,
    SignupRequest,
    SwitchOrganizationRequest,
    TokenPair,
    UserProfile,
)
from kijko_core.errors import (
    BadRequest,
    Forbidden,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    KijkoError,
    TryAgain,
    UpstreamError,
)
from kijko_core.wire import Success
from kijko_server.caching import no_store
from kijko_server.openapi import responds
from kijko_server.ratelimits import AuthLimits, rate_limit
from kijko_server.responses import validate_response
from kijko_server.security import (
    accepts_expired_token,
    bearer_token,
    current_identity,
    ends_session,
    public,
    revocation_checked,
)
from kijko_server.uow import runtime, tenant

#: What completing a Keycloak sign-in can answer (KeycloakProvider._complete): Keycloak failed
#: or is misconfigured; its fresh tokens were refused or name a revoked session; the account
#: lost its organizations; a first sign-in without an email, or whose email is taken.
KEYCLOAK_SIGN_IN: tuple[type[KijkoError], ...] = (
    UpstreamError,
    InvalidToken,
    InvalidCredentials,
    BadRequest,
    AccountExists,
)


def auth_blueprint(limits: AuthLimits) -> Blueprint:
    bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")
    bp.after_request(no_store)  # tokens and the profile: never cached

    @bp.post("/signup")
    @public
    # Keycloak: 502, and 401 if completing the sign-in is refused (as in KEYCLOAK_SIGN_IN).
    @responds(AccountExists, UpstreamError, InvalidToken, TryAgain)
    @rate_limit(limits.per_address)
    @validate_request(SignupRequest)
    @validate_response(TokenPair, 201)
    async def signup(data: SignupRequest) -> tuple[TokenPair, int]:
        """Create an account and its organization, and sign in."""
        return await runtime().identity.signup(data), 201

    @bp.post("/login")
    @public
    @responds(InvalidCredentials, TryAgain, *KEYCLOAK_SIGN_IN)
    @rate_limit(limits.per_address, limits.per_account)
    @validate_request(LoginRequest)
    @validate_response(TokenPair)
    async def login(data: LoginRequest) -> TokenPair:
        """Sign in with email and password."""
        return await runtime().identity.login(data.email, data.password)

    @bp.post("/refresh")
    @public
    @responds(InvalidRefreshToken, TryAgain, *KEYCLOAK_SIGN_IN)
    @rate_limit(limits.refresh)
    @validate_request(RefreshRequest)
    @validate_response(TokenPair)
    async def refresh(data: RefreshRequest) -> TokenPair:
        """Trade a refresh token for a new access token and a new refresh token."""
        return await runtime().identity.refresh(data.refresh_token)

    @bp.post("/logout")
    @responds()  # Keycloak failing to end its copy of the session only logs
    @ends_session
    @accepts_expired_token
    @validate_response(Success)
    async def logout() -> Success:
        """End the session: its refresh tokens and its access tokens stop working."""
        await runtime().identity.logout(current_identity(), bearer_token())
        return Success()

    @bp.post("/switch-organization")
    # 403: not a member (an unknown organization alike); keycloak: 400 without the refresh
    # token, 401 for a refresh token Keycloak refuses, 502 if Keycloak fails.
    @responds(Forbidden, BadRequest, InvalidRefreshToken, UpstreamError)
    @validate_request(SwitchOrganizationRequest)
    @validate_response(TokenPair)
    async def switch_organization(data: SwitchOrganizationRequest) -> TokenPair:
        """New tokens for another organization of the caller (the session stays the same)."""
        try:
            org_id = UUID(data.organization_id)
        except ValueError:
            # No organization has the nil id: the provider checks the session first (401), then
            # answers the same 403 as for an unknown organization.
            org_id = UUID(int=0)
        pair = await runtime().identity.switch_organization(current_identity(), org_id, data.refresh_token or None)
        revocation_checked()  # the provider checked the session as kijko.enter does
        return pair

    @bp.get("/me")
    @responds(Forbidden)  # the tenant session: the membership is gone
    @validate_response(UserProfile)
    async def me() -> UserProfile:
        """The signed-in user's profile in the active organization."""
        async with tenant(readonly=True) as db:
            return await service.me(db)

    return bp
