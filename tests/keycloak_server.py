"""A small Keycloak-shaped OIDC server for the tests, speaking Keycloak's real wire formats.

Started on a free 127.0.0.1 port in a background thread (``http.server``), it signs real RS256
JWTs with joserfc and implements what Kijko uses:

- discovery (``/realms/{realm}/.well-known/openid-configuration``) and certs (fetches counted);
- the token endpoint with client authentication of the confidential client and the
  ``password``, ``refresh_token``, ``authorization_code`` (PKCE S256 checked) and
  ``client_credentials`` grants, answering ``invalid_grant`` the way Keycloak does (401 for bad
  user credentials, 400 otherwise);
- the logout endpoint and admin session deletion;
- the admin users API (create → 201 + ``Location``, get, put, reset-password, delete) that drops
  attributes its user profile does not declare, like Keycloak ≥ 24;
- an authorization endpoint that simulates a brokered login (``kc_idp_hint``) and redirects
  back with a code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from tests.net import DispatchingHandler, HttpStandIn, Reply

REALM = "kijko"
CLIENT_ID = "kijko-api"
REALM_FILE = Path(__file__).resolve().parent.parent / "deploy" / "keycloak" / "realm-kijko.json"


@dataclass(frozen=True)
class RealmBehaviour:
    """What the fake takes from the shipped realm file, so the tests exercise that file."""

    declared_attributes: frozenset[str]
    access_token_audience: tuple[str, ...]
    org_id_mapper: bool
    pkce_method: str | None

    @classmethod
    def from_file(cls, path: Path = REALM_FILE) -> RealmBehaviour:
        realm = json.loads(path.read_text())
        client = next(c for c in realm["clients"] if c["clientId"] == CLIENT_ID)
        audience = ["account"]
        org_id_mapper = False
        for mapper in client.get("protocolMappers", []):
            config = mapper.get("config", {})
            if config.get("access.token.claim") != "true":
                continue
            if mapper["protocolMapper"] == "oidc-audience-mapper":
                audience.insert(0, config["included.client.audience"])
            if mapper["protocolMapper"] == "oidc-usermodel-attribute-mapper" and config.get("claim.name") == "org_id":
                org_id_mapper = config.get("user.attribute") == "org_id"
        provider = realm["components"]["org.keycloak.userprofile.UserProfileProvider"][0]
        profile = json.loads(provider["config"]["kc.user.profile.config"][0])
        builtin = {"username", "email", "firstName", "lastName"}
        declared = frozenset(a["name"] for a in profile["attributes"]) - builtin
        return cls(declared, tuple(audience), org_id_mapper, client["attributes"].get("pkce.code.challenge.method"))


@dataclass
class FakeUser:
    id: str
    username: str
    email: str
    first_name: str
    last_name: str
    enabled: bool = True
    attributes: dict[str, list[str]] = field(default_factory=dict)
    password: str | None = None
    federated: dict[str, str] = field(default_factory=dict)  # idp alias → subject there

    def representation(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "enabled": self.enabled,
            "emailVerified": False,
            "attributes": {name: list(values) for name, values in self.attributes.items()},
            "createdTimestamp": 0,
        }


@dataclass
class FakeSession:
    id: str
    user_id: str
    active: bool = True


class FakeKeycloak(HttpStandIn):
    def __init__(self, client_secret: str | None = None) -> None:
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "kc-" + secrets.token_hex(4)}, private=True)
        # Signs tokens with a kid Keycloak never published (unknown-kid tests).
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "rogue"}, private=True)
        realm = RealmBehaviour.from_file()
        self.declared_attributes: set[str] = set(realm.declared_attributes)  # the user profile
        self.org_id_mapper = realm.org_id_mapper
        self.audience = list(realm.access_token_audience)
        self.pkce_method = realm.pkce_method
        self.min_password_length = 8
        self.access_lifespan = 300
        self.sso_session_idle = 1800
        self.users: dict[str, FakeUser] = {}
        self.sessions: dict[str, FakeSession] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.broker_identities: dict[str, dict[str, str]] = {}
        self.jwks_fetches = 0
        self.token_requests: list[str] = []
        self.service_account_id = str(uuid.uuid4())
        self.lock = threading.RLock()
        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), _handler(self)))

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def issuer(self) -> str:
        return f"{self.url}/realms/{REALM}"

    # -- helpers for tests ----------------------------------------------------------------

    def user_by_email(self, email: str) -> FakeUser | None:
        with self.lock:
            return next((u for u in self.users.values() if u.email.lower() == email.lower()), None)

    def session_active(self, session_id: str) -> bool:
        with self.lock:
            session = self.sessions.get(session_id)
            return bool(session and session.active)

    def sign(self, claims: dict[str, Any], *, key: RSAKey | None = None) -> str:
        key = key or self.key
        return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.kid}, claims, key)

    def access_claims(self, user: FakeUser, session_id: str, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "exp": now + self.access_lifespan,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": self.issuer,
            "aud": list(self.audience),  # the realm's audience mapper adds kijko-api
            "sub": user.id,
            "typ": "Bearer",
            "azp": CLIENT_ID,
            "sid": session_id,
            "session_state": session_id,
            "scope": "openid email profile",
            "email": user.email,
            "preferred_username": user.username,
            "given_name": user.first_name,
            "family_name": user.last_name,
        }
        org = user.attributes.get("org_id")
        if self.org_id_mapper and org:
            claims["org_id"] = org[0]
        claims.update(extra)
        return claims

    def token_response(self, user: FakeUser, session_id: str) -> dict[str, Any]:
        access = self.access_claims(user, session_id)
        now = int(time.time())
        id_token = {**access, "typ": "ID", "aud": CLIENT_ID, "jti": str(uuid.uuid4())}
        refresh = {
            "exp": now + self.sso_session_idle,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": self.issuer,
            "aud": self.issuer,
            "sub": user.id,
            "typ": "Refresh",
            "azp": CLIENT_ID,
            "sid": session_id,
        }
        return {
            "access_token": self.sign(access),
            "expires_in": self.access_lifespan,
            "refresh_expires_in": self.sso_session_idle,
            "refresh_token": self.sign(refresh),
            "token_type": "Bearer",
            "id_token": self.sign(id_token),
            "not-before-policy": 0,
            "session_state": session_id,
            "scope": "openid email profile",
        }

    def new_session(self, user: FakeUser) -> str:
        session_id = str(uuid.uuid4())
        self.sessions[session_id] = FakeSession(session_id, user.id)
        return session_id

    def verify(self, token: str, typ: str) -> dict[str, Any] | None:
        try:
            claims = jwt.decode(token, self.key, algorithms=["RS256"]).claims
        except (JoseError, ValueError, TypeError):
            return None
        if claims.get("typ") != typ or claims.get("iss") != self.issuer or claims.get("exp", 0) < time.time():
            return None
        return claims


def _oauth_error(status: int, error: str, description: str) -> Reply:
    return Reply(status, {"error": error, "error_description": description})


def _handler(kc: FakeKeycloak) -> type[BaseHTTPRequestHandler]:
    realm_path = f"/realms/{REALM}"
    oidc = f"{realm_path}/protocol/openid-connect"
    admin = f"/admin/realms/{REALM}"

    class Handler(DispatchingHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                with kc.lock:
                    self._route(method, parts.path, parse_qs(parts.query), raw)
                raise Reply(404, {"error": "Unable to find matching target resource method"})
            except Reply as reply:
                self._send(reply)

        def _send(self, reply: Reply) -> None:
            data = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            if reply.body is not None:
                self.send_header("Content-Type", "application/json")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        # -- routing ----------------------------------------------------------------------

        def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
            if method == "GET" and path == f"{realm_path}/.well-known/openid-configuration":
                raise Reply(200, self._discovery())
            if method == "GET" and path == f"{oidc}/certs":
                kc.jwks_fetches += 1
                public = kc.key.as_dict(private=False, use="sig", alg="RS256")
                raise Reply(200, {"keys": [public]})
            if method == "POST" and path == f"{oidc}/token":
                self._token(_form(raw))
            if method == "POST" and path == f"{oidc}/logout":
                self._logout(_form(raw))
            if method == "GET" and path == f"{oidc}/auth":
                self._authorize({name: values[0] for name, values in query.items()})
            if path.startswith(admin + "/"):
                self._admin(method, path.removeprefix(admin), raw)

        def _discovery(self) -> dict[str, Any]:
            return {
                "issuer": kc.issuer,
                "authorization_endpoint": f"{kc.url}{oidc}/auth",
                "token_endpoint": f"{kc.url}{oidc}/token",
                "jwks_uri": f"{kc.url}{oidc}/certs",
                "end_session_endpoint": f"{kc.url}{oidc}/logout",
                "userinfo_endpoint": f"{kc.url}{oidc}/userinfo",
                "grant_types_supported": ["authorization_code", "refresh_token", "password", "client_credentials"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }

        # -- token endpoint ---------------------------------------------------------------

        def _client(self, form: dict[str, str]) -> None:
            client_id, secret = form.get("client_id"), form.get("client_secret")
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                decoded = base64.b64decode(header[6:]).decode()
                client_id, _, secret = decoded.partition(":")
            if client_id != CLIENT_ID or not secret or not secrets.compare_digest(secret, kc.client_secret):
                raise _oauth_error(401, "unauthorized_client", "Invalid client or Invalid client credentials")

        def _token(self, form: dict[str, str]) -> None:
            self._client(form)
            grant = form.get("grant_type", "")
            kc.token_requests.append(grant)
            if grant == "password":
                login = form.get("username", "").lower()
                user = next((u for u in kc.users.values() if login in (u.username.lower(), u.email.lower())), None)
                if user is None or user.password is None or user.password != form.get("password"):
                    raise _oauth_error(401, "invalid_grant", "Invalid user credentials")
                if not user.enabled:
                    raise _oauth_error(400, "invalid_grant", "Account disabled")
                raise Reply(200, kc.token_response(user, kc.new_session(user)))
            if grant == "refresh_token":
                claims = kc.verify(form.get("refresh_token", ""), "Refresh")
                if claims is None:
                    raise _oauth_error(400, "invalid_grant", "Invalid refresh token")
                session = kc.sessions.get(claims["sid"])
                user = kc.users.get(claims["sub"])
                if session is None or not session.active or user is None:
                    raise _oauth_error(400, "invalid_grant", "Session not active")
                raise Reply(200, kc.token_response(user, session.id))
            if grant == "authorization_code":
                self._code_grant(form)
            if grant == "client_credentials":
                now = int(time.time())
                claims = {
                    "exp": now + 300,
                    "iat": now,
                    "jti": str(uuid.uuid4()),
                    "iss": kc.issuer,
                    "aud": ["realm-management", "account"],
                    "sub": kc.service_account_id,
                    "typ": "Bearer",
                    "azp": CLIENT_ID,
                    "resource_access": {"realm-management": {"roles": ["manage-users", "view-users"]}},
                }
                raise Reply(200, {"access_token": kc.sign(claims), "expires_in": 300, "token_type": "Bearer"})
            raise _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")

        def _code_grant(self, form: dict[str, str]) -> None:
            record = kc.codes.pop(form.get("code", ""), None)
            if record is None or record["expires"] < time.time():
                raise _oauth_error(400, "invalid_grant", "Code not valid")
            if record["redirect_uri"] != form.get("redirect_uri"):
                raise _oauth_error(400, "invalid_grant", "Incorrect redirect_uri")
            verifier = form.get("code_verifier")
            if not verifier:
                raise _oauth_error(400, "invalid_grant", "PKCE code verifier not specified")
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not secrets.compare_digest(challenge, record["challenge"]):
                raise _oauth_error(400, "invalid_grant", "PKCE verification failed: Code mismatch")
            user = kc.users[record["user_id"]]
            raise Reply(200, kc.token_response(user, record["session_id"]))

        def _logout(self, form: dict[str, str]) -> None:
            self._client(form)
            claims = kc.verify(form.get("refresh_token", ""), "Refresh")
            if claims is None:
                raise _oauth_error(400, "invalid_grant", "Invalid refresh token")
            session = kc.sessions.get(claims["sid"])
            if session is not None:
                session.active = False
            raise Reply(204)

        # -- authorization endpoint (a brokered login, simulated) ------------------------

        def _authorize(self, params: dict[str, str]) -> None:
            if params.get("client_id") != CLIENT_ID or params.get("response_type") != "code":
                raise Reply(400, {"error": "invalid_request"})
            redirect_uri = params.get("redirect_uri", "")
            if not redirect_uri.startswith("http://kijko.test/api/v1/auth/oauth/callback"):
                raise Reply(400, {"error": "invalid_redirect_uri"})
            # The realm's client requires PKCE (pkce.code.challenge.method); only S256 is modelled.
            if kc.pkce_method != "S256":
                raise _oauth_error(400, "invalid_request", "fake models PKCE S256 only")
            if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
                raise _oauth_error(400, "invalid_request", "Missing parameter: code_challenge_method")
            hint = params.get("kc_idp_hint", "")
            identity = kc.broker_identities.get(hint)
            if identity is None:
                raise Reply(400, {"error": "login form not simulated; pass kc_idp_hint"})
            user = next((u for u in kc.users.values() if u.federated.get(hint) == identity["subject"]), None)
            if user is None:  # first broker login: Keycloak creates the user and links it
                user = kc.user_by_email(identity["email"])
                if user is None:
                    user = FakeUser(
                        id=str(uuid.uuid4()),
                        username=identity["email"].lower(),
                        email=identity["email"].lower(),
                        first_name=identity.get("firstName", ""),
                        last_name=identity.get("lastName", ""),
                    )
                    kc.users[user.id] = user
                user.federated[hint] = identity["subject"]
            session_id = kc.new_session(user)
            code = secrets.token_urlsafe(24)
            kc.codes[code] = {
                "user_id": user.id,
                "session_id": session_id,
                "redirect_uri": redirect_uri,
                "challenge": params["code_challenge"],
                "expires": time.time() + 60,
            }
            back = {"state": params.get("state", ""), "session_state": session_id, "iss": kc.issuer, "code": code}
            raise Reply(302, None, {"Location": f"{redirect_uri}?{urlencode(back)}"})

        # -- admin REST API ---------------------------------------------------------------

        def _admin_auth(self) -> None:
            header = self.headers.get("Authorization", "")
            claims = kc.verify(header.removeprefix("Bearer "), "Bearer") if header.startswith("Bearer ") else None
            if claims is None:
                raise Reply(401, {"error": "HTTP 401 Unauthorized"})
            roles = claims.get("resource_access", {}).get("realm-management", {}).get("roles", [])
            if "manage-users" not in roles:
                raise Reply(403, {"error": "HTTP 403 Forbidden"})

        def _admin(self, method: str, path: str, raw: bytes) -> None:
            self._admin_auth()
            body = json.loads(raw) if raw else {}
            segments = path.strip("/").split("/")
            if segments == ["users"] and method == "POST":
                self._create_user(body)
            if segments[0] == "sessions" and len(segments) == 2 and method == "DELETE":
                session = kc.sessions.get(segments[1])
                if session is None or not session.active:
                    raise Reply(404, {"error": "Sesssion not found"})
                session.active = False
                raise Reply(204)
            if segments[0] == "users" and len(segments) >= 2:
                user = kc.users.get(segments[1])
                if user is None:
                    raise Reply(404, {"error": "User not found"})
                rest = segments[2:]
                if rest == [] and method == "GET":
                    raise Reply(200, user.representation())
                if rest == [] and method == "PUT":
                    user.first_name = body.get("firstName", user.first_name)
                    user.last_name = body.get("lastName", user.last_name)
                    user.enabled = body.get("enabled", user.enabled)
                    if "attributes" in body:
                        user.attributes = self._declared(body["attributes"])
                    raise Reply(204)
                if rest == [] and method == "DELETE":
                    del kc.users[user.id]
                    for session in kc.sessions.values():
                        if session.user_id == user.id:
                            session.active = False
                    raise Reply(204)
                if rest == ["reset-password"] and method == "PUT":
                    value = body.get("value")
                    if body.get("type") != "password" or not isinstance(value, str):
                        raise Reply(400, {"error": "invalid_request"})
                    if len(value) < kc.min_password_length:
                        raise Reply(
                            400,
                            {
                                "error": "invalidPasswordMinLengthMessage",
                                "error_description": "Invalid password: minimum length 8.",
                            },
                        )
                    user.password = value
                    raise Reply(204)

        def _declared(self, attributes: Any) -> dict[str, list[str]]:
            # Keycloak ≥ 24 with unmanaged attributes disabled: undeclared ones vanish silently.
            if not isinstance(attributes, dict):
                return {}
            return {
                name: [str(v) for v in values]
                for name, values in attributes.items()
                if name in kc.declared_attributes and isinstance(values, list)
            }

        def _create_user(self, body: dict[str, Any]) -> None:
            username = str(body.get("username") or body.get("email") or "").lower()
            email = str(body.get("email") or "").lower()
            if not username:
                raise Reply(400, {"errorMessage": "error-user-attribute-required"})
            for other in kc.users.values():
                if other.username == username:
                    raise Reply(409, {"errorMessage": "User exists with same username"})
                if email and other.email == email:
                    raise Reply(409, {"errorMessage": "User exists with same email"})
            user = FakeUser(
                id=str(uuid.uuid4()),
                username=username,
                email=email,
                first_name=str(body.get("firstName") or ""),
                last_name=str(body.get("lastName") or ""),
                enabled=bool(body.get("enabled", False)),
                attributes=self._declared(body.get("attributes") or {}),
            )
            kc.users[user.id] = user
            raise Reply(201, None, {"Location": f"{kc.url}{admin}/users/{user.id}"})

    return Handler


def _form(raw: bytes) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(raw.decode()).items()}
