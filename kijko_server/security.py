"""Authentication for every route that is not public (ARCHITECTURE §7).

``authenticate`` runs before every request: public routes pass, all others need a valid
``Authorization: Bearer`` access token. A route is public when its view is marked ``@public``
*and* the route is on the one explicit allowlist ``PUBLIC_ROUTES``: the marker says what the
author meant, the list is what review approved; either alone leaves the route authenticated
(and the route meta-test reports the mismatch).

What the caller may do is decided later, in the tenant session, from memberships in the
database; opening it is also what checks that the token's session is not revoked. A request
that was authenticated but never had its session checked is refused after the view
(``require_revocation_check``) — a route that forgot the tenant session fails closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final, TypeVar

import structlog
from quart import Response, current_app, g, request
from werkzeug.routing import Rule

from kijko_core.auth.principal import TokenIdentity
from kijko_core.errors import InvalidToken, KijkoError
from kijko_server.errors import error_response
from kijko_server.observability import current_request_id


@dataclass(frozen=True)
class PublicRoute:
    methods: frozenset[str]
    pattern: str  # matched against the route template, e.g. "/api/v1/webhooks/*"

    def matches(self, method: str, rule: str) -> bool:
        return (method in self.methods or "*" in self.methods) and fnmatchcase(rule, self.pattern)


def _public(methods: str, pattern: str) -> PublicRoute:
    return PublicRoute(frozenset(methods.split()), pattern)


#: Every route that may be reachable without a token (and only when its view is ``@public``).
#: The route meta-test reads this constant.
PUBLIC_ROUTES: Final = (
    _public("GET HEAD", "/"),
    _public("GET HEAD", "/api/v1"),
    _public("GET HEAD", "/health"),
    _public("GET HEAD", "/health/*"),
    _public("GET HEAD", "/.well-known/*"),
    _public("GET HEAD", "/openapi.json"),
    _public("GET HEAD", "/docs"),
    _public("GET HEAD", "/docs/assets/*"),
    _public("POST", "/api/v1/auth/signup"),
    _public("POST", "/api/v1/auth/login"),
    _public("POST", "/api/v1/auth/refresh"),
    _public("GET POST", "/api/v1/auth/oauth/*"),
    _public("GET HEAD", "/api/v1/invitations/<token>"),  # the invitation link's look-up
    _public("POST", "/api/v1/webhooks/*"),
    _public("POST", "/api/analytics/events"),
    _public("POST", "/api/v1/analytics/events"),
    _public("GET HEAD", "/api/v1/billing/plans"),  # the plans and prices, as the pricing page shows them
)

_EXPIRED_OK = "_kijko_accepts_expired_token"
_PUBLIC = "_kijko_public"
_ENDS_SESSION = "_kijko_ends_session"
F = TypeVar("F", bound=Callable[..., Any])
log = structlog.get_logger("kijko.security")


def public(func: F) -> F:
    """Mark a view as reachable without a token; its routes must also be on ``PUBLIC_ROUTES``."""
    setattr(func, _PUBLIC, True)
    return func


def is_marked_public(view: Callable[..., Any] | None) -> bool:
    return bool(getattr(view, _PUBLIC, False))


def is_allowed_public(method: str, rule: str) -> bool:
    """Whether the allowlist permits ``method`` on the route template ``rule`` to be public."""
    return method == "OPTIONS" or any(route.matches(method, rule) for route in PUBLIC_ROUTES)


def is_public(method: str, rule: Rule, view: Callable[..., Any] | None) -> bool:
    """Whether a request to ``rule`` with ``method``, served by ``view``, needs no token."""
    if method == "OPTIONS":  # CORS preflights carry no credentials by design
        return True
    return is_marked_public(view) and is_allowed_public(method, rule.rule)


def ends_session(func: F) -> F:
    """Mark a view (logout) whose whole effect is to revoke the caller's session: on an already
    revoked session it changes nothing, so it need not open a tenant session first."""
    setattr(func, _ENDS_SESSION, True)
    return func


def is_ending_session(view: Callable[..., Any] | None) -> bool:
    return bool(getattr(view, _ENDS_SESSION, False))


def accepts_expired_token(func: F) -> F:
    """Mark a route (logout) that accepts a validly signed but expired access token."""
    setattr(func, _EXPIRED_OK, True)
    return func


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken()
    return token.strip()


async def optional_identity() -> TokenIdentity | None:
    """For a public route that attributes when it can (analytics): the verified identity of a
    Bearer token if one is sent and valid, else None — a missing, invalid or expired token is
    never an error there. The session's revocation is not checked here: the caller must check
    it where it uses the identity (the analytics write does, in SQL)."""
    if "Authorization" not in request.headers:
        return None
    try:
        return await current_app.kijko.identity.verifier.verify(bearer_token())  # type: ignore[attr-defined,no-any-return]
    except KijkoError:
        return None


async def authenticate() -> None:
    """``before_request`` hook: set ``g.identity`` or answer 401."""
    rule = request.url_rule
    view = current_app.view_functions.get(request.endpoint or "")
    if rule is None or is_public(request.method, rule, view):
        return
    allow_expired = bool(getattr(view, _EXPIRED_OK, False))
    g.identity = await current_app.kijko.identity.verifier.verify(  # type: ignore[attr-defined]
        bearer_token(), allow_expired=allow_expired
    )


def current_identity() -> TokenIdentity:
    identity: TokenIdentity = g.identity
    return identity


def revocation_checked() -> None:
    """Record that the caller's session was checked against revocation (the tenant session
    does this on opening)."""
    g.revocation_checked = True


async def require_revocation_check(response: Response) -> Response:
    """``after_request`` hook: an authenticated request whose session was never checked against
    revocation must not succeed — its token may belong to a revoked session."""
    if (
        g.get("identity") is not None
        and not g.get("revocation_checked", False)
        and response.status_code < 400
        and not is_ending_session(current_app.view_functions.get(request.endpoint or ""))
    ):
        log.error("revocation_not_checked", endpoint=request.endpoint, method=request.method)
        # The answer of any crash, keeping the headers already set (CORS, no-store, request id)
        # so the browser can read it.
        kept = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        return error_response(KijkoError(details={"requestId": current_request_id()}), kept)
    return response
