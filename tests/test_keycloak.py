"""The keycloak identity provider end to end through HTTP, against a Keycloak-shaped server
(tests/keycloak_server.py) speaking Keycloak's wire formats and signing real JWTs."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
from joserfc import jwt

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from tests.conftest import Account, sign_up
from tests.keycloak_server import CLIENT_ID, REALM_FILE, FakeKeycloak, RealmBehaviour
from tests.net import free_port
from tests.test_errors import error_of
from tests.tokens import bearer

pytestmark = pytest.mark.slow

CALLBACK = "http://kijko.test/api/v1/auth/oauth/callback"
FRONTEND = "http://localhost:3000/auth/callback"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeKeycloak]:
    server = FakeKeycloak().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def kc_kijko(make_settings: Any, fake: FakeKeycloak) -> AsyncIterator[Kijko]:
    settings = make_settings(
        auth_provider="keycloak",
        keycloak_url=fake.url,
        keycloak_client_secret=fake.client_secret,
        oauth_redirect_url=FRONTEND,
        jwks_refresh_interval_seconds=3600,
    )
    runtime = await Kijko.start(settings)
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def kc_app(kc_kijko: Kijko) -> AsyncIterator[KijkoApp]:
    application = create_app(kijko=kc_kijko)
    async with application.test_app():
        yield application


@pytest.fixture
def kc(kc_app: KijkoApp) -> Any:
    return kc_app.test_client()


def claims_of(token: str) -> dict[str, Any]:
    """Read a JWT's claims without verifying (the app verified it already)."""
    import base64
    import json

    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


# -- signup, login, refresh, logout -----------------------------------------------------------


async def test_signup_creates_keycloak_user_and_kijko_account(kc: Any, fake: FakeKeycloak) -> None:
    account = await sign_up(kc, first_name="Kees")
    user = fake.user_by_email(account.email)
    assert user is not None and user.password == account.password
    # The Keycloak user id is the Kijko user id, and org_id was stored on the Keycloak user.
    assert account.user_id == user.id
    assert user.attributes["org_id"] == [account.org_id]
    assert claims_of(account.access_token)["org_id"] == account.org_id

    me = await (await kc.get("/api/v1/auth/me", headers=account.headers)).get_json()
    assert me["email"] == account.email and me["first_name"] == "Kees" and me["roles"] == ["owner"]

    created = await kc.post(
        "/api/v1/projects", json={"name": "Via Keycloak", "type": "repository"}, headers=account.headers
    )
    assert created.status_code == 201
    listed = await (await kc.get("/api/v1/projects", headers=account.headers)).get_json()
    assert [p["name"] for p in listed["data"]] == ["Via Keycloak"]


async def test_signup_with_taken_email_is_409(kc: Any) -> None:
    account = await sign_up(kc)
    again = await kc.post(
        "/api/v1/auth/signup",
        json={"email": account.email, "password": "another password", "first_name": "A", "last_name": "B"},
    )
    body = await error_of(again, 409, "ACCOUNT_EXISTS")
    assert body["field"] == "email"


async def test_password_refused_by_realm_policy_undoes_the_keycloak_user(kc: Any, fake: FakeKeycloak) -> None:
    email = f"policy-{uuid.uuid4().hex[:8]}@example.com"
    fake.min_password_length = 20
    try:
        response = await kc.post(
            "/api/v1/auth/signup",
            json={"email": email, "password": "only twelve!", "first_name": "P", "last_name": "Q"},
        )
    finally:
        fake.min_password_length = 8
    body = await error_of(response, 422, "VALIDATION_ERROR")
    assert body["field"] == "password"
    assert fake.user_by_email(email) is None
    # The email is free again.
    assert (await sign_up(kc, email=email)).email == email


async def test_org_id_must_be_declared_in_the_user_profile(kc: Any, fake: FakeKeycloak) -> None:
    """Keycloak ≥ 24 drops undeclared attributes; Kijko notices instead of issuing tokens that
    can never pass verification."""
    declared = fake.declared_attributes
    fake.declared_attributes = declared - {"org_id"}
    try:
        response = await kc.post(
            "/api/v1/auth/signup",
            json={
                "email": f"undeclared-{uuid.uuid4().hex[:8]}@example.com",
                "password": "correct horse battery",
                "first_name": "U",
                "last_name": "D",
            },
        )
    finally:
        fake.declared_attributes = declared
    body = await error_of(response, 502, "UPSTREAM_ERROR")
    assert "user profile" in body["detail"]


async def test_login_checks_the_password_at_keycloak(kc: Any) -> None:
    account = await sign_up(kc)
    wrong = await kc.post("/api/v1/auth/login", json={"email": account.email, "password": "wrong password"})
    await error_of(wrong, 401, "INVALID_CREDENTIALS")
    unknown = await kc.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong password"})
    await error_of(unknown, 401, "INVALID_CREDENTIALS")

    right = await kc.post("/api/v1/auth/login", json={"email": account.email, "password": account.password})
    assert right.status_code == 200
    tokens = await right.get_json()
    me = await kc.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert (await me.get_json())["id"] == account.user_id


async def test_refresh_returns_new_tokens(kc: Any) -> None:
    account = await sign_up(kc)
    response = await kc.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert response.status_code == 200
    tokens = await response.get_json()
    assert tokens["access_token"] != account.access_token
    assert tokens["refresh_token"] != account.refresh_token
    assert claims_of(tokens["access_token"])["sid"] == claims_of(account.access_token)["sid"]
    me = await kc.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200

    assert response.headers["Cache-Control"] == "no-store" and response.headers["Pragma"] == "no-cache"

    garbage = await kc.post("/api/v1/auth/refresh", json={"refresh_token": "not-a-keycloak-token"})
    body = await error_of(garbage, 401, "INVALID_TOKEN")
    assert "refresh token" in body["detail"]


async def test_logout_revokes_locally_and_ends_the_keycloak_session(kc: Any, fake: FakeKeycloak) -> None:
    account = await sign_up(kc)
    session_id = claims_of(account.access_token)["sid"]
    assert fake.session_active(session_id)

    response = await kc.post("/api/v1/auth/logout", headers=account.headers)
    assert response.status_code == 200

    assert not fake.session_active(session_id)
    me = await kc.get("/api/v1/auth/me", headers=account.headers)
    await error_of(me, 401, "INVALID_TOKEN")
    refreshed = await kc.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    await error_of(refreshed, 401, "INVALID_TOKEN")


async def test_logout_by_a_user_erased_in_kijko_is_401(kc: Any, kc_kijko: Kijko) -> None:
    account = await sign_up(kc)
    async with system_session(kc_kijko.system_db) as db:
        await db.execute("DELETE FROM kijko_private.users WHERE id = $1", account.user_id)
    response = await kc.post("/api/v1/auth/logout", headers=account.headers)
    await error_of(response, 401, "INVALID_TOKEN")


async def test_a_locally_revoked_session_cannot_be_refreshed_back(kc: Any, fake: FakeKeycloak) -> None:
    """Even if Keycloak's session survived logout (Keycloak unreachable at that moment), the
    local revocation keeps refresh from resurrecting it."""
    account = await sign_up(kc)
    session_id = claims_of(account.access_token)["sid"]
    assert (await kc.post("/api/v1/auth/logout", headers=account.headers)).status_code == 200
    fake.sessions[session_id].active = True  # as if the admin API call had not arrived
    refreshed = await kc.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    body = await error_of(refreshed, 401, "INVALID_TOKEN")
    assert "refresh token" in body["detail"]


async def test_first_login_of_a_user_made_in_the_keycloak_console_provisions_kijko(kc: Any, fake: FakeKeycloak) -> None:
    from tests.keycloak_server import FakeUser

    email = f"console-{uuid.uuid4().hex[:8]}@example.com"
    user = FakeUser(str(uuid.uuid4()), email, email, "Con", "Sole", password="console password")
    fake.users[user.id] = user
    response = await kc.post("/api/v1/auth/login", json={"email": email, "password": "console password"})
    assert response.status_code == 200, await response.get_data(as_text=True)
    tokens = await response.get_json()
    me = await (await kc.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).get_json()
    assert me["id"] == user.id and me["roles"] == ["owner"]
    assert user.attributes["org_id"] == [me["org_id"]] == [claims_of(tokens["access_token"])["org_id"]]
    # The next login finds the account; no second organization appears.
    again = await kc.post("/api/v1/auth/login", json={"email": email, "password": "console password"})
    assert claims_of((await again.get_json())["access_token"])["org_id"] == me["org_id"]


# -- OAuth through identity brokering --------------------------------------------------------


async def start_oauth(kc: Any, provider: str) -> dict[str, str]:
    response = await kc.get(f"/api/v1/auth/oauth/{provider}")
    assert response.status_code == 302, await response.get_data(as_text=True)
    return {name: values[0] for name, values in parse_qs(urlsplit(response.headers["Location"]).query).items()}


async def broker_login(fake: FakeKeycloak, location_params: dict[str, str]) -> dict[str, str]:
    """What the browser does at Keycloak: returns the callback's query parameters."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{fake.issuer}/protocol/openid-connect/auth", params=location_params)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return dict(parse_qsl(urlsplit(location).query))


async def test_oauth_redirects_to_keycloak_with_idp_hint_pkce_and_state(kc: Any, fake: FakeKeycloak) -> None:
    response = await kc.get("/api/v1/auth/oauth/google")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{fake.issuer}/protocol/openid-connect/auth"
    params = {name: values[0] for name, values in parse_qs(location.query).items()}
    assert params["kc_idp_hint"] == "google"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 32
    assert params["client_id"] == CLIENT_ID and params["response_type"] == "code"
    assert params["redirect_uri"] == CALLBACK
    # Each attempt gets its own state and challenge.
    other = await start_oauth(kc, "google")
    assert other["state"] != params["state"] and other["code_challenge"] != params["code_challenge"]

    unknown = await kc.get("/api/v1/auth/oauth/myspace")
    await error_of(unknown, 404, "OAUTH_PROVIDER_NOT_FOUND")


async def test_oauth_first_broker_login_provisions_user_and_organization(kc: Any, fake: FakeKeycloak) -> None:
    email = f"octo-{uuid.uuid4().hex[:8]}@example.com"
    fake.broker_identities["github"] = {
        "subject": uuid.uuid4().hex,
        "email": email,
        "firstName": "Octo",
        "lastName": "Cat",
    }
    callback = await broker_login(fake, await start_oauth(kc, "github"))
    user = fake.user_by_email(email)
    assert user is not None and "org_id" not in user.attributes  # brand new at Keycloak

    finished = await kc.get("/api/v1/auth/oauth/callback", query_string=callback)
    assert finished.status_code == 302, await finished.get_data(as_text=True)
    target = urlsplit(finished.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == FRONTEND
    handed = dict(parse_qsl(target.query))
    assert set(handed) == {"code"}  # a one-time code, never tokens in the URL
    assert "eyJ" not in finished.headers["Location"]

    exchanged = await kc.post("/api/v1/auth/oauth/exchange", json={"code": handed["code"]})
    assert exchanged.status_code == 200
    assert exchanged.headers["Cache-Control"] == "no-store" and exchanged.headers["Pragma"] == "no-cache"
    tokens = await exchanged.get_json()
    me = await (await kc.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).get_json()
    assert me["id"] == user.id and me["email"] == email and me["first_name"] == "Octo"
    assert me["roles"] == ["owner"]
    assert user.attributes["org_id"] == [me["org_id"]]
    created = await kc.post(
        "/api/v1/projects", json={"name": "Octo project", "type": "repository"}, headers=bearer(tokens["access_token"])
    )
    assert created.status_code == 201

    again = await kc.post("/api/v1/auth/oauth/exchange", json={"code": handed["code"]})
    await error_of(again, 401, "INVALID_TOKEN")

    # A second sign-in lands in the same account and organization; nothing is provisioned twice.
    callback = await broker_login(fake, await start_oauth(kc, "github"))
    finished = await kc.get("/api/v1/auth/oauth/callback", query_string=callback)
    code = dict(parse_qsl(urlsplit(finished.headers["Location"]).query))["code"]
    tokens = await (await kc.post("/api/v1/auth/oauth/exchange", json={"code": code})).get_json()
    assert claims_of(tokens["access_token"])["org_id"] == me["org_id"]


async def test_oauth_callback_rejects_unknown_reused_and_expired_state(
    kc: Any, kc_kijko: Kijko, fake: FakeKeycloak
) -> None:
    fake.broker_identities["google"] = {"subject": "g-1", "email": "g1@example.com", "firstName": "G"}
    unknown = await kc.get("/api/v1/auth/oauth/callback", query_string={"code": "x", "state": "made-up"})
    await error_of(unknown, 400, "INVALID_OAUTH_STATE")
    missing = await kc.get("/api/v1/auth/oauth/callback", query_string={"code": "x"})
    await error_of(missing, 422, "VALIDATION_ERROR")

    callback = await broker_login(fake, await start_oauth(kc, "google"))
    assert (await kc.get("/api/v1/auth/oauth/callback", query_string=callback)).status_code == 302
    reused = await kc.get("/api/v1/auth/oauth/callback", query_string=callback)
    await error_of(reused, 400, "INVALID_OAUTH_STATE")

    callback = await broker_login(fake, await start_oauth(kc, "google"))
    async with system_session(kc_kijko.system_db) as db:
        await db.execute("UPDATE kijko_private.oauth_states SET expires_at = now() - interval '1 second'")
    expired = await kc.get("/api/v1/auth/oauth/callback", query_string=callback)
    await error_of(expired, 400, "INVALID_OAUTH_STATE")


async def test_oauth_code_is_bound_to_its_pkce_verifier(kc: Any, fake: FakeKeycloak) -> None:
    """A code obtained for one attempt, presented with another attempt's state, is exchanged
    with the wrong verifier; Keycloak answers invalid_grant and the sign-in fails."""
    fake.broker_identities["google"] = {"subject": "g-2", "email": "g2@example.com", "firstName": "G"}
    first = await broker_login(fake, await start_oauth(kc, "google"))
    second = await broker_login(fake, await start_oauth(kc, "google"))
    mixed = await kc.get("/api/v1/auth/oauth/callback", query_string={"code": first["code"], "state": second["state"]})
    await error_of(mixed, 400, "OAUTH_CODE_REJECTED")


async def test_oauth_cancelled_at_the_provider_tells_the_frontend(kc: Any) -> None:
    state = (await start_oauth(kc, "google"))["state"]
    response = await kc.get("/api/v1/auth/oauth/callback", query_string={"state": state, "error": "access_denied"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"{FRONTEND}?error=oauth_failed"


async def test_oauth_state_is_bound_to_the_browser_by_a_short_lived_cookie(kc: Any, kc_kijko: Kijko) -> None:
    response = await kc.get("/api/v1/auth/oauth/google")
    state = dict(parse_qsl(urlsplit(response.headers["Location"]).query))["state"]
    (cookie,) = response.headers.getlist("Set-Cookie")
    attributes = [part.strip() for part in cookie.split(";")]
    assert attributes[0] == f"kijko_oauth_state={state}"
    assert "HttpOnly" in attributes and "SameSite=Lax" in attributes
    assert f"Max-Age={kc_kijko.settings.oauth_state_ttl_seconds}" in attributes
    assert "Path=/api/v1/auth/oauth" in attributes
    assert "Secure" not in attributes  # the public URL is http here


async def test_oauth_code_and_state_of_another_browser_are_refused(
    kc: Any, kc_app: KijkoApp, fake: FakeKeycloak
) -> None:
    """Login CSRF: the attacker starts a sign-in with their own account, stops before the
    callback and makes the victim's browser open it. Without the binding the victim would be
    signed in to the attacker's account (and upload their work into it)."""
    attacker_email = f"attacker-{uuid.uuid4().hex[:8]}@example.com"
    fake.broker_identities["github"] = {"subject": uuid.uuid4().hex, "email": attacker_email, "firstName": "Eve"}
    planted = await broker_login(fake, await start_oauth(kc, "github"))  # in the attacker's browser

    victim = kc_app.test_client()  # a browser that never started a sign-in
    refused = await victim.get("/api/v1/auth/oauth/callback", query_string=planted)
    await error_of(refused, 400, "INVALID_OAUTH_STATE")
    assert "Location" not in refused.headers  # no code handed to the victim's frontend
    # The state was consumed: the attacker's own browser cannot finish with it either.
    again = await kc.get("/api/v1/auth/oauth/callback", query_string=planted)
    await error_of(again, 400, "INVALID_OAUTH_STATE")

    # A victim in the middle of their own sign-in (their own cookie) is refused just the same.
    planted = await broker_login(fake, await start_oauth(kc, "github"))
    await start_oauth(victim, "github")
    refused = await victim.get("/api/v1/auth/oauth/callback", query_string=planted)
    await error_of(refused, 400, "INVALID_OAUTH_STATE")
    # The refusal clears the victim's cookie: one attempt per start.
    (cleared,) = refused.headers.getlist("Set-Cookie")
    assert cleared.startswith("kijko_oauth_state=;") and "Max-Age=0" in cleared


async def test_oauth_callback_clears_the_state_cookie(kc: Any, fake: FakeKeycloak) -> None:
    fake.broker_identities["google"] = {"subject": "g-3", "email": "g3@example.com", "firstName": "G"}
    callback = await broker_login(fake, await start_oauth(kc, "google"))
    finished = await kc.get("/api/v1/auth/oauth/callback", query_string=callback)
    assert finished.status_code == 302
    (cleared,) = finished.headers.getlist("Set-Cookie")
    assert cleared.startswith("kijko_oauth_state=;") and "Max-Age=0" in cleared
    assert finished.headers["Cache-Control"] == "no-store"


async def test_oauth_state_cookie_is_secure_and_host_only_over_https(make_settings: Any, fake: FakeKeycloak) -> None:
    settings = make_settings(
        auth_provider="keycloak",
        keycloak_url=fake.url,
        keycloak_client_secret=fake.client_secret,
        public_url="https://kijko.test",
    )
    runtime = await Kijko.start(settings)
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            response = await application.test_client().get("/api/v1/auth/oauth/google")
    finally:
        await runtime.stop()
    (cookie,) = response.headers.getlist("Set-Cookie")
    attributes = [part.strip() for part in cookie.split(";")]
    assert attributes[0].startswith("__Host-kijko_oauth_state=")
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= set(attributes)
    assert not any(part.startswith("Domain=") for part in attributes)


async def test_oauth_needs_the_keycloak_provider(client: Any) -> None:
    response = await client.get("/api/v1/auth/oauth/google")
    await error_of(response, 404, "OAUTH_PROVIDER_NOT_FOUND")


# -- verification of Keycloak-signed tokens --------------------------------------------------


async def test_only_access_tokens_for_this_issuer_and_audience_pass(kc: Any, fake: FakeKeycloak) -> None:
    account: Account = await sign_up(kc)
    user = fake.users[account.user_id]
    session_id = claims_of(account.access_token)["sid"]

    good = fake.sign(fake.access_claims(user, session_id))
    assert (await kc.get("/api/v1/auth/me", headers=bearer(good))).status_code == 200

    forged = {
        "wrong issuer": fake.access_claims(user, session_id, iss="http://evil.test/realms/kijko"),
        "wrong audience": fake.access_claims(user, session_id, aud=["account"]),
        "no audience": {k: v for k, v in fake.access_claims(user, session_id).items() if k != "aud"},
        "expired": fake.access_claims(user, session_id, exp=int(time.time()) - 3600),
        "refresh token": fake.access_claims(user, session_id, typ="Refresh"),
    }
    for why, claims in forged.items():
        response = await kc.get("/api/v1/auth/me", headers=bearer(fake.sign(claims)))
        assert response.status_code == 401, why
        assert (await response.get_json())["code"] == "INVALID_TOKEN"

    # A real ID token from Keycloak's token endpoint: right issuer, audience kijko-api, org_id,
    # sid… but typ "ID", so it is not accepted as an access token.
    async with httpx.AsyncClient() as http:
        issued = await http.post(
            f"{fake.issuer}/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "username": account.email,
                "password": account.password,
                "client_id": CLIENT_ID,
                "client_secret": fake.client_secret,
                "scope": "openid",
            },
        )
    tokens = issued.json()
    assert claims_of(tokens["id_token"])["aud"] == "kijko-api"
    response = await kc.get("/api/v1/auth/me", headers=bearer(tokens["id_token"]))
    await error_of(response, 401, "INVALID_TOKEN")
    assert (await kc.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200


async def test_unknown_kids_cause_at_most_one_jwks_fetch_per_interval(kc: Any, fake: FakeKeycloak) -> None:
    account = await sign_up(kc)
    claims = fake.access_claims(fake.users[account.user_id], claims_of(account.access_token)["sid"])
    before = fake.jwks_fetches
    assert before >= 1  # the counter sees the fetches made at start-up
    for index in range(50):
        token = jwt.encode({"alg": "RS256", "kid": f"unknown-{index}"}, claims, fake.rogue_key)
        response = await kc.get("/api/v1/auth/me", headers=bearer(token))
        assert response.status_code == 401
    assert fake.jwks_fetches - before <= 1


# -- health ----------------------------------------------------------------------------------


async def test_readiness_shows_keycloak_degraded_without_failing(
    kc: Any, make_settings: Any, fake: FakeKeycloak
) -> None:
    ready = await (await kc.get("/health/ready")).get_json()
    assert ready["components"]["identity"] == "ok"

    settings = make_settings(
        auth_provider="keycloak",
        keycloak_url=f"http://127.0.0.1:{free_port()}",
        keycloak_client_secret=fake.client_secret,
        keycloak_timeout_seconds=1,
    )
    runtime = await Kijko.start(settings)  # starts although Keycloak is down
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            response = await application.test_client().get("/health/ready")
            assert response.status_code == 200
            body = await response.get_json()
            assert body["status"] == "degraded"
            assert body["components"]["database"] == "ok"
            assert body["components"]["identity"] == "degraded"
            login = await application.test_client().post(
                "/api/v1/auth/login", json={"email": "a@example.com", "password": "whatever1"}
            )
            await error_of(login, 502, "UPSTREAM_ERROR")
    finally:
        await runtime.stop()


# -- the shipped realm -----------------------------------------------------------------------


def test_realm_file_configures_what_kijko_relies_on() -> None:
    realm = json.loads(REALM_FILE.read_text())
    assert realm["realm"] == "kijko" and realm["enabled"] is True
    client = next(c for c in realm["clients"] if c["clientId"] == CLIENT_ID)
    assert client["publicClient"] is False and client["clientAuthenticatorType"] == "client-secret"
    assert client["serviceAccountsEnabled"] and client["directAccessGrantsEnabled"]
    assert client["standardFlowEnabled"] and not client["implicitFlowEnabled"]
    assert client["attributes"]["pkce.code.challenge.method"] == "S256"
    assert all(uri.endswith("/api/v1/auth/oauth/callback") for uri in client["redirectUris"])

    service_account = next(u for u in realm["users"] if u.get("serviceAccountClientId") == CLIENT_ID)
    assert set(service_account["clientRoles"]["realm-management"]) >= {"manage-users", "view-users"}

    behaviour = RealmBehaviour.from_file()
    assert "org_id" in behaviour.declared_attributes
    assert CLIENT_ID in behaviour.access_token_audience and behaviour.org_id_mapper
    provider = realm["components"]["org.keycloak.userprofile.UserProfileProvider"][0]
    profile = json.loads(provider["config"]["kc.user.profile.config"][0])
    org_id = next(a for a in profile["attributes"] if a["name"] == "org_id")
    assert org_id["permissions"]["edit"] == ["admin"]  # users cannot move themselves elsewhere
    assert profile.get("unmanagedAttributePolicy") in (None, "DISABLED")

    assert {idp["alias"] for idp in realm["identityProviders"]} == {"google", "github"}
    placeholder = re.compile(r"^\$\{[A-Z0-9_]+\}$")
    secrets_found = [client["secret"]] + [idp["config"]["clientSecret"] for idp in realm["identityProviders"]]
    assert all(placeholder.match(value) for value in secrets_found), "no real secret in the realm file"
