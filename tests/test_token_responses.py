"""What answers carrying tokens look like besides their body: never stored by a browser or a
proxy (``Cache-Control: no-store``), and a failed refresh speaks of the refresh token."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Account
from tests.test_errors import error_of

NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def assert_no_store(response: Any) -> None:
    for name, value in NO_STORE.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))


async def test_signup_login_and_refresh_answers_are_not_stored(client: Any) -> None:
    email = f"nostore-{uuid.uuid4().hex[:8]}@example.com"
    signup = await client.post(
        "/api/v1/auth/signup",
        json={"email": email, "password": "correct horse battery", "first_name": "N", "last_name": "S"},
    )
    assert signup.status_code == 201
    assert_no_store(signup)

    login = await client.post("/api/v1/auth/login", json={"email": email, "password": "correct horse battery"})
    assert login.status_code == 200
    assert_no_store(login)

    tokens = await login.get_json()
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 200
    assert_no_store(refresh)

    tokens = await refresh.get_json()
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert_no_store(me)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/login", {"email": "nobody@example.com", "password": "wrong password"}),
        ("/api/v1/auth/refresh", {"refresh_token": "not-a-refresh-token"}),
        ("/api/v1/auth/signup", {"email": "bad"}),
    ],
)
async def test_failed_token_requests_are_not_stored_either(client: Any, path: str, body: dict[str, Any]) -> None:
    response = await client.post(path, json=body)
    assert response.status_code >= 400
    assert_no_store(response)


async def test_a_failed_refresh_speaks_of_the_refresh_token(client: Any, alice: Account) -> None:
    unknown = await client.post("/api/v1/auth/refresh", json={"refresh_token": "not-a-refresh-token"})
    body = await error_of(unknown, 401, "INVALID_TOKEN")  # the code the frontend reacts to
    assert "refresh token" in body["detail"] and "access token" not in body["detail"]

    assert (await client.post("/api/v1/auth/logout", headers=alice.headers)).status_code == 200
    revoked = await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    body = await error_of(revoked, 401, "INVALID_TOKEN")
    assert "refresh token" in body["detail"]


async def test_other_routes_keep_their_caching_headers(client: Any) -> None:
    health = await client.get("/health")
    assert health.headers.get("Pragma") is None
