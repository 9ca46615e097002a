"""Authentication for every route that is not on the one explicit public list (ARCHITECTURE §7).

``authenticate`` runs before every request: public routes pass, all others need a valid
``Authorization: Bearer`` access token. What the caller may do is decided later, in the tenant
session, from memberships in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final, TypeVar

from quart import current_app, g, request

from kijko_core.auth.principal import TokenIdentity
from kijko_core.errors import InvalidToken


@dataclass(frozen=True)
class PublicRoute:
    methods: frozenset[str]
    pattern: str  # matched against the route template, e.g. "/api/v1/webhooks/*"

    def matches(self, method: str, rule: str) -> bool:
        return (method in self.methods or "*" in self.methods) and fnmatchcase(rule, self.pattern)


def _public(methods: str, pattern: str) -> PublicRoute:
    return PublicRoute(frozenset(methods.split()), pattern)


#: Every route reachable without a token. The route meta-test reads this constant.
PUBLIC_ROUTES: Final = (
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
    _public("*", "/api/v1/webhooks/*"),
    _public("POST", "/api/analytics/events"),
    _public("POST", "/api/v1/analytics/events"),
)

_EXPIRED_OK = "_kijko_accepts_expired_token"
F = TypeVar("F", bound=Callable[..., Any])


def is_public(method: str, rule: str) -> bool:
    return method == "OPTIONS" or any(route.matches(method, rule) for route in PUBLIC_ROUTES)


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


async def authenticate() -> None:
    """``before_request`` hook: set ``g.identity`` or answer 401."""
    rule = request.url_rule
    if rule is None or is_public(request.method, rule.rule):
        return
    view = current_app.view_functions.get(request.endpoint or "")
    allow_expired = bool(getattr(view, _EXPIRED_OK, False))
    g.identity = await current_app.kijko.identity.verifier.verify(  # type: ignore[attr-defined]
        bearer_token(), allow_expired=allow_expired
    )


def current_identity() -> TokenIdentity:
    identity: TokenIdentity = g.identity
    return identity
