"""The auth endpoints of contract §2.1 with the local provider, through HTTP (snake_case)."""

from __future__ import annotations

import uuid
from typing import Any

from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.tokens import bearer, unverified_parts

AUTH = "/api/v1/auth"


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


async def test_signup_creates_the_user_organization_and_owner_membership(client: Any, kijko: Kijko) -> None:
    email = new_email()
    response = await client.post(
        f"{AUTH}/signup",
        json={"email": email, "password": "s3cret-enough", "first_name": "Grace", "last_name": "Hopper"},
    )
    assert response.status_code == 201
    tokens = await response.get_json()
    assert isinstance(tokens["access_token"], str) and isinstance(tokens["refresh_token"], str)
    assert tokens["access_token"] != tokens["refresh_token"]

    me = await client.get(f"{AUTH}/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    profile = await me.get_json()
    assert set(profile) == {"id", "email", "first_name", "last_name", "org_id", "roles"}
    assert profile["email"] == email
    assert (profile["first_name"], profile["last_name"]) == ("Grace", "Hopper")
    assert profile["roles"] == ["owner"]
    uuid.UUID(profile["id"]), uuid.UUID(profile["org_id"])

    async with kijko.system_db.connection() as handle:
        row = await handle.raw_connection.fetchrow(
            "SELECT m.role, o.name FROM kijko.memberships m"
            " JOIN kijko.organizations o ON o.id = m.organization_id WHERE m.user_id = $1",
            uuid.UUID(profile["id"]),
        )
    assert row is not None and row["role"] == "owner"

    # The access token carries what ARCHITECTURE §4 asks: short-lived, with jti and sid.
    header, claims = unverified_parts(tokens["access_token"])
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["sub"] == profile["id"] and claims["org_id"] == profile["org_id"]
    assert claims["jti"] and claims["sid"] and claims["typ"] == "Bearer"
    assert claims["aud"] == "kijko-api" and claims["iss"] == "http://kijko.test"
    assert 0 < claims["exp"] - claims["iat"] <= 900


async def test_two_signups_get_two_organizations(client: Any, alice: Account, bob: Account) -> None:
    assert alice.org_id != bob.org_id


async def test_duplicate_email_is_409_in_the_error_shape(client: Any, alice: Account) -> None:
    for email in (alice.email, alice.email.upper()):
        response = await client.post(
            f"{AUTH}/signup",
            json={"email": email, "password": "another-password", "first_name": "A", "last_name": "B"},
        )
        assert response.status_code == 409
        assert await response.get_json() == {
            "detail": "An account with this email already exists",
            "code": "ACCOUNT_EXISTS",
            "message": "An account with this email already exists",
            "field": "email",
        }


async def test_signup_validation_answers_422_without_echoing_the_password(client: Any) -> None:
    response = await client.post(
        f"{AUTH}/signup",
        json={"email": new_email(), "password": "Zq7!xK", "first_name": "A", "last_name": "B"},
    )
    assert response.status_code == 422
    body = await response.get_json()
    assert body["code"] == "VALIDATION_ERROR" and body["field"] == "password"
    assert "Zq7!xK" not in await response.get_data(as_text=True)
    missing = await client.post(f"{AUTH}/signup", json={"email": new_email(), "password": "long-enough"})
    assert missing.status_code == 422 and (await missing.get_json())["field"] in ("first_name", "last_name")


async def test_login_returns_tokens_for_a_new_session(client: Any, alice: Account) -> None:
    response = await client.post(f"{AUTH}/login", json={"email": alice.email, "password": alice.password})
    assert response.status_code == 200
    tokens = await response.get_json()
    assert tokens["refresh_token"] != alice.refresh_token
    me = await client.get(f"{AUTH}/me", headers=bearer(tokens["access_token"]))
    assert (await me.get_json())["id"] == alice.user_id
    # Email addresses match regardless of case.
    again = await client.post(f"{AUTH}/login", json={"email": alice.email.upper(), "password": alice.password})
    assert again.status_code == 200
    assert (
        unverified_parts((await again.get_json())["access_token"])[1]["sid"]
        != (unverified_parts(tokens["access_token"])[1]["sid"])
    )


async def test_wrong_password_and_unknown_email_get_the_same_401(client: Any, alice: Account) -> None:
    wrong = await client.post(f"{AUTH}/login", json={"email": alice.email, "password": "not-the-password"})
    unknown = await client.post(f"{AUTH}/login", json={"email": new_email(), "password": alice.password})
    assert wrong.status_code == unknown.status_code == 401
    expected = {
        "detail": "Incorrect email or password",
        "code": "INVALID_CREDENTIALS",
        "message": "Incorrect email or password",
    }
    assert await wrong.get_json() == expected
    assert await unknown.get_json() == expected


async def test_refresh_returns_a_new_access_and_a_new_refresh_token(client: Any, alice: Account) -> None:
    response = await client.post(f"{AUTH}/refresh", json={"refresh_token": alice.refresh_token})
    assert response.status_code == 200
    tokens = await response.get_json()
    assert tokens["refresh_token"] != alice.refresh_token
    assert tokens["access_token"] != alice.access_token
    old, new = unverified_parts(alice.access_token)[1], unverified_parts(tokens["access_token"])[1]
    assert new["sid"] == old["sid"] and new["jti"] != old["jti"]
    me = await client.get(f"{AUTH}/me", headers=bearer(tokens["access_token"]))
    assert (await me.get_json())["id"] == alice.user_id
    # And the new refresh token works in turn.
    chained = await client.post(f"{AUTH}/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert chained.status_code == 200


async def test_unknown_refresh_token_is_401_invalid_token(client: Any, alice: Account) -> None:
    for token in ("not-a-refresh-token", alice.access_token):
        response = await client.post(f"{AUTH}/refresh", json={"refresh_token": token})
        assert response.status_code == 401
        assert (await response.get_json())["code"] == "INVALID_TOKEN"


async def test_logout_with_no_body_answers_success(client: Any, alice: Account) -> None:
    # The frontend always sends Content-Type: application/json, also with no body.
    response = await client.post(f"{AUTH}/logout", headers={**alice.headers, "Content-Type": "application/json"})
    assert response.status_code == 200
    assert await response.get_json() == {"success": True}
    assert (await client.post(f"{AUTH}/logout")).status_code == 401


async def test_me_needs_a_token(client: Any) -> None:
    response = await client.get(f"{AUTH}/me")
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "INVALID_TOKEN"
