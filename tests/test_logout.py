"""Logout revokes the session (ARCHITECTURE §4): its refresh family and its access tokens,
also when the access token has expired, across restarts and across app instances."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from kijko_core.runtime import Kijko
from tests.apps import running
from tests.conftest import Account, sign_up
from tests.tokens import bearer, claims_from, forge, fresh_key, sign, unverified_parts

LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"


async def login(client: Any, account: Account) -> dict[str, str]:
    response = await client.post("/api/v1/auth/login", json={"email": account.email, "password": account.password})
    assert response.status_code == 200
    tokens: dict[str, str] = await response.get_json()
    return tokens


async def assert_revoked(client: Any, access_token: str, refresh_token: str | None = None) -> None:
    for path in (ME, "/api/v1/projects"):
        response = await client.get(path, headers=bearer(access_token))
        assert response.status_code == 401
        assert (await response.get_json())["code"] == "INVALID_TOKEN"
    if refresh_token is not None:
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
        assert response.status_code == 401


async def test_logout_revokes_the_access_and_refresh_tokens_of_the_session_only(client: Any, alice: Account) -> None:
    other_session = await login(client, alice)
    response = await client.post(LOGOUT, headers=alice.headers)
    assert response.status_code == 200 and await response.get_json() == {"success": True}
    await assert_revoked(client, alice.access_token, alice.refresh_token)
    # The same user's other session goes on.
    assert (await client.get(ME, headers=bearer(other_session["access_token"]))).status_code == 200
    # Logging out twice is harmless (the frontend logs out best-effort).
    assert (await client.post(LOGOUT, headers=alice.headers)).status_code == 200


async def test_access_tokens_refreshed_before_logout_are_revoked_too(client: Any, alice: Account) -> None:
    refreshed = await (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    ).get_json()
    assert (await client.post(LOGOUT, headers=alice.headers)).status_code == 200
    await assert_revoked(client, refreshed["access_token"], refreshed["refresh_token"])


async def test_logout_works_with_an_expired_but_validly_signed_access_token(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    now = int(time.time())
    expired = await forge(kijko, alice.access_token, iat=now - 3600, nbf=now - 3600, exp=now - 1800)
    assert (await client.get(ME, headers=bearer(expired))).status_code == 401
    response = await client.post(LOGOUT, headers=bearer(expired))
    assert response.status_code == 200
    # It named the real session: the unexpired token of that session is now refused.
    await assert_revoked(client, alice.access_token, alice.refresh_token)


async def test_logout_with_an_expired_token_still_checks_everything_else(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    now = int(time.time())
    past = {"iat": now - 3600, "nbf": now - 3600, "exp": now - 1800}
    header, _ = unverified_parts(alice.access_token)
    refused = [
        sign(claims_from(alice.access_token, **past), fresh_key(), kid=header["kid"]),
        await forge(kijko, alice.access_token, iss="http://evil.test", **past),
        await forge(kijko, alice.access_token, aud="another-api", **past),
        await forge(kijko, alice.access_token, typ="ID", **past),
        await forge(kijko, alice.access_token, exp=None, iat=now - 3600, nbf=now - 3600),
    ]
    for token in refused:
        response = await client.post(LOGOUT, headers=bearer(token))
        assert response.status_code == 401
    # None of them ended the session.
    assert (await client.get(ME, headers=alice.headers)).status_code == 200


async def test_revocation_holds_after_a_restart(make_settings: Any) -> None:
    settings = make_settings()
    async with running(settings) as (_, _, client):
        account = await sign_up(client)
        assert (await client.post(LOGOUT, headers=account.headers)).status_code == 200
    async with running(settings) as (_, _, client):
        await assert_revoked(client, account.access_token, account.refresh_token)


async def test_revocation_holds_in_a_second_app_instance_at_the_same_time(
    make_settings: Any,
) -> None:
    settings = make_settings()
    async with running(settings) as (_, _, first), running(settings) as (_, _, second):
        account = await sign_up(first)
        assert (await second.get(ME, headers=account.headers)).status_code == 200
        assert (await first.post(LOGOUT, headers=account.headers)).status_code == 200
        await assert_revoked(second, account.access_token, account.refresh_token)
        await assert_revoked(first, account.access_token)


async def test_tokens_of_an_erased_user_are_401_not_403(client: Any, kijko: Kijko, alice: Account) -> None:
    from kijko_core.db.session import system_session

    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.organizations WHERE id = $1", UUID(alice.org_id))
        await db.execute("DELETE FROM kijko_private.users WHERE id = $1", UUID(alice.user_id))
    await assert_revoked(client, alice.access_token, alice.refresh_token)
