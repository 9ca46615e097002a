"""Keycloak over its real wire formats: OIDC discovery, the token endpoint and the admin REST API.

Every method is one or two HTTP calls and nothing else; callers never hold a database
transaction across them (ARCHITECTURE §2). Transport failures and unexpected answers become
``UpstreamError`` (502); Keycloak's ``invalid_grant`` becomes ``GrantRejected`` so the provider
can map it to the right 401.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import structlog

from kijko_core.errors import UpstreamError

log = structlog.get_logger("kijko.keycloak")

# Renew the service-account token this long before Keycloak says it expires.
_TOKEN_MARGIN_SECONDS = 30


class GrantRejected(Exception):
    """The token endpoint answered ``invalid_grant`` (wrong password, dead refresh token, bad
    code or PKCE verifier)."""


class UserExists(Exception):
    """The admin API answered 409: the username or email is taken."""


class PasswordRejected(Exception):
    """The admin API refused a password (the realm's password policy)."""


class SessionNotFound(Exception):
    """The admin API does not know the session (already ended or expired)."""


@dataclass(frozen=True)
class KeycloakTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int


@dataclass(frozen=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class KeycloakClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout: float | None = None,
        base_url: str,
        realm: str,
        client_id: str,
        client_secret: str,
    ) -> None:
        self._http = http
        self._timeout = timeout  # per request; the client's own default applies otherwise
        self._base = base_url.rstrip("/")
        self._realm = realm
        self._client_id = client_id
        self._client_secret = client_secret
        self._discovery: Discovery | None = None
        self._service_token: str | None = None
        self._service_token_expires = 0.0
        self._service_lock = asyncio.Lock()

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def discovery_url(self) -> str:
        return f"{self._base}/realms/{self._realm}/.well-known/openid-configuration"

    def _admin(self, path: str) -> str:
        return f"{self._base}/admin/realms/{self._realm}{path}"

    # -- discovery -------------------------------------------------------------------------

    async def discovery(self, *, fresh: bool = False) -> Discovery:
        """The realm's OIDC metadata; cached once it has been read successfully."""
        if self._discovery is not None and not fresh:
            return self._discovery
        body = await self._json("GET", self.discovery_url)
        try:
            found = Discovery(
                issuer=str(body["issuer"]),
                authorization_endpoint=str(body["authorization_endpoint"]),
                token_endpoint=str(body["token_endpoint"]),
                jwks_uri=str(body["jwks_uri"]),
            )
        except (KeyError, TypeError):
            raise UpstreamError("Keycloak's OpenID configuration is incomplete") from None
        self._discovery = found
        return found

    async def jwks(self) -> dict[str, Any]:
        return await self._json("GET", (await self.discovery()).jwks_uri)

    # -- token endpoint --------------------------------------------------------------------

    async def password_grant(self, username: str, password: str) -> KeycloakTokens:
        return await self._grant(
            {"grant_type": "password", "username": username, "password": password, "scope": "openid"}
        )

    async def refresh_grant(self, refresh_token: str) -> KeycloakTokens:
        return await self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def code_grant(self, code: str, redirect_uri: str, code_verifier: str) -> KeycloakTokens:
        return await self._grant(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    async def _grant(self, form: dict[str, str]) -> KeycloakTokens:
        endpoint = (await self.discovery()).token_endpoint
        body = await self._token_request(endpoint, form)
        try:
            return KeycloakTokens(
                access_token=str(body["access_token"]),
                refresh_token=str(body["refresh_token"]),
                expires_in=int(body["expires_in"]),
                refresh_expires_in=int(body.get("refresh_expires_in") or 0),
            )
        except (KeyError, TypeError, ValueError):
            raise UpstreamError("Keycloak's token response is incomplete") from None

    async def _token_request(self, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
        # client_secret_post: unambiguous for any characters in the secret.
        data = {**form, "client_id": self._client_id, "client_secret": self._client_secret}
        response = await self._send("POST", endpoint, data=data)
        if response.status_code in (400, 401):
            error = _error_code(response)
            if error == "invalid_grant":
                raise GrantRejected()
            # invalid_client, unauthorized_client…: our configuration is wrong, not the user.
            log.error("keycloak_token_error", status=response.status_code, error=error)
            raise UpstreamError("The identity provider refused Kijko's client")
        return _ok_json(response)

    # -- service account and admin API -----------------------------------------------------

    async def _admin_token(self) -> str:
        async with self._service_lock:
            if self._service_token is None or time.monotonic() >= self._service_token_expires:
                endpoint = (await self.discovery()).token_endpoint
                try:
                    body = await self._token_request(endpoint, {"grant_type": "client_credentials"})
                except GrantRejected:
                    raise UpstreamError("The identity provider refused Kijko's service account") from None
                try:
                    token, lifetime = str(body["access_token"]), int(body["expires_in"])
                except (KeyError, TypeError, ValueError):
                    raise UpstreamError("Keycloak's token response is incomplete") from None
                self._service_token = token
                self._service_token_expires = time.monotonic() + max(0, lifetime - _TOKEN_MARGIN_SECONDS)
            return self._service_token

    async def _admin_call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(2):
            token = await self._admin_token()
            response = await self._send(
                method, self._admin(path), headers={"Authorization": f"Bearer {token}"}, **kwargs
            )
            if response.status_code != 401 or attempt:
                return response
            self._service_token = None  # revoked or expired early: fetch a new one once
        raise AssertionError("unreachable")

    async def create_user(self, *, email: str, first_name: str, last_name: str) -> UUID:
        """POST …/users → 201 with the new user's URL in ``Location``."""
        response = await self._admin_call(
            "POST",
            "/users",
            json={
                "username": email,
                "email": email,
                "firstName": first_name,
                "lastName": last_name,
                "enabled": True,
            },
        )
        if response.status_code == 409:
            raise UserExists()
        _expect(response, 201)
        location = response.headers.get("Location", "")
        try:
            return UUID(location.rstrip("/").rsplit("/", 1)[-1])
        except ValueError:
            raise UpstreamError("Keycloak created a user without a usable Location") from None

    async def set_password(self, user_id: UUID, password: str) -> None:
        response = await self._admin_call(
            "PUT",
            f"/users/{user_id}/reset-password",
            json={"type": "password", "value": password, "temporary": False},
        )
        if response.status_code == 400:
            raise PasswordRejected()
        _expect(response, 204)

    async def get_user(self, user_id: UUID) -> dict[str, Any]:
        response = await self._admin_call("GET", f"/users/{user_id}")
        return _ok_json(response)

    async def set_attribute(self, user_id: UUID, name: str, value: str) -> None:
        """Set one user attribute and check Keycloak kept it.

        Keycloak ≥ 24 silently drops attributes its user profile does not declare, which would
        leave every token without the claim; that is a realm misconfiguration we report loudly.
        """
        user = await self.get_user(user_id)
        attributes = dict(user.get("attributes") or {})
        attributes[name] = [value]
        # The user representation is replaced as a whole, so send it back complete.
        response = await self._admin_call("PUT", f"/users/{user_id}", json={**user, "attributes": attributes})
        _expect(response, 204)
        kept = (await self.get_user(user_id)).get("attributes") or {}
        if kept.get(name) != [value]:
            log.error("keycloak_attribute_dropped", attribute=name)
            raise UpstreamError(
                f"Keycloak did not keep the user attribute {name}; declare it in the realm's user profile"
            )

    async def delete_user(self, user_id: UUID) -> None:
        response = await self._admin_call("DELETE", f"/users/{user_id}")
        if response.status_code not in (204, 404):
            _expect(response, 204)

    async def delete_session(self, session_id: str) -> None:
        """End a user session (``DELETE /admin/realms/{realm}/sessions/{id}``)."""
        response = await self._admin_call("DELETE", f"/sessions/{session_id}")
        if response.status_code == 404:
            raise SessionNotFound()
        _expect(response, 204)

    # -- transport -------------------------------------------------------------------------

    async def _json(self, method: str, url: str) -> dict[str, Any]:
        return _ok_json(await self._send(method, url))

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            if self._timeout is not None:
                kwargs.setdefault("timeout", self._timeout)
            return await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            log.warning("keycloak_unreachable", error=type(error).__name__)
            raise UpstreamError("The identity provider is unreachable") from None


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        log.error("keycloak_unexpected_status", status=response.status_code, expected=status)
        raise UpstreamError()


def _ok_json(response: httpx.Response) -> dict[str, Any]:
    _expect(response, 200)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UpstreamError("Keycloak answered with something other than a JSON object")
    return body
