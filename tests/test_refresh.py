"""Rotating refresh tokens with reuse detection and a grace window (ARCHITECTURE §4)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.apps import running
from tests.conftest import Account, sign_up
from tests.tokens import bearer

REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/auth/me"


async def refresh(client: Any, token: str) -> Any:
    return await client.post(REFRESH, json={"refresh_token": token})


async def test_parallel_refreshes_with_one_token_get_the_same_successor(client: Any, alice: Account) -> None:
    responses = await asyncio.gather(*(refresh(client, alice.refresh_token) for _ in range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    bodies = [await r.get_json() for r in responses]
    successors = {body["refresh_token"] for body in bodies}
    assert len(successors) == 1 and alice.refresh_token not in successors
    for body in bodies:
        assert (await client.get(ME, headers=bearer(body["access_token"]))).status_code == 200
    # The successor is a working refresh token, and the family is intact.
    assert (await refresh(client, successors.pop())).status_code == 200


async def test_reuse_within_the_grace_window_returns_the_same_successor(client: Any, alice: Account) -> None:
    first = await (await refresh(client, alice.refresh_token)).get_json()
    second = await refresh(client, alice.refresh_token)
    assert second.status_code == 200
    assert (await second.get_json())["refresh_token"] == first["refresh_token"]


async def test_reuse_after_the_grace_window_revokes_the_whole_family(make_settings: Any) -> None:
    async with running(make_settings(refresh_reuse_grace_seconds=0)) as (_, _, client):
        account = await sign_up(client)
        other = await sign_up(client)  # another session, which must not suffer
        rotated = await refresh(client, account.refresh_token)
        assert rotated.status_code == 200
        successor = await rotated.get_json()
        assert (await client.get(ME, headers=bearer(successor["access_token"]))).status_code == 200

        reused = await refresh(client, account.refresh_token)
        assert reused.status_code == 401
        assert (await reused.get_json())["code"] == "INVALID_TOKEN"

        # The successor no longer works, nor does any access token of that session.
        assert (await refresh(client, successor["refresh_token"])).status_code == 401
        for token in (account.access_token, successor["access_token"]):
            response = await client.get(ME, headers=bearer(token))
            assert response.status_code == 401
            assert (await response.get_json())["code"] == "INVALID_TOKEN"

        assert (await client.get(ME, headers=other.headers)).status_code == 200
        assert (await refresh(client, other.refresh_token)).status_code == 200


async def test_a_refresh_token_cannot_be_used_after_the_session_is_revoked(client: Any, alice: Account) -> None:
    assert (await client.post("/api/v1/auth/logout", headers=alice.headers)).status_code == 200
    response = await refresh(client, alice.refresh_token)
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "INVALID_TOKEN"


async def test_an_expired_refresh_token_is_refused(client: Any, kijko: Any, alice: Account) -> None:
    import hashlib

    import asyncpg

    conn = await asyncpg.connect(kijko.urls.system)
    try:
        # Refresh tokens live 30 days at least; move this one's end into the past.
        changed = await conn.execute(
            "UPDATE kijko_private.refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
            hashlib.sha256(alice.refresh_token.encode()).digest(),
        )
    finally:
        await conn.close()
    assert changed == "UPDATE 1"
    assert (await refresh(client, alice.refresh_token)).status_code == 401
