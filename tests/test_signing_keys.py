"""Signing keys of the local provider: generated once and kept across restarts, rotatable
(``kijko keys rotate``): a new key is published one key refresh interval before it signs, so
every instance verifies its tokens from the first; the old ``kid`` stays published until its
tokens expire, and once it leaves the key set every instance stops accepting it within one
interval (issue 5 §4)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from click.testing import CliRunner

from kijko_cli.main import cli
from kijko_core.config import Settings
from tests.apps import running
from tests.conftest import Account, sign_up
from tests.tokens import bearer, unverified_parts

ME = "/api/v1/auth/me"


def kid_of(token: str) -> str:
    kid: str = unverified_parts(token)[0]["kid"]
    return kid


async def published_kids(client: Any) -> set[str]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = (await response.get_json())["keys"]
    for key in keys:
        assert key["kty"] == "RSA" and key["use"] == "sig" and key["alg"] == "RS256"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "private parameters published"
    return {key["kid"] for key in keys}


async def login(client: Any, account: Account) -> str:
    response = await client.post("/api/v1/auth/login", json={"email": account.email, "password": account.password})
    assert response.status_code == 200
    token: str = (await response.get_json())["access_token"]
    return token


async def key_count(settings: Settings) -> int:
    assert settings.system_database_url
    conn = await asyncpg.connect(settings.system_database_url.get_secret_value())
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM kijko_private.signing_keys")
        return count
    finally:
        await conn.close()


async def test_discovery_and_jwks_answer_without_auth(client: Any, alice: Account) -> None:
    config = await client.get("/.well-known/openid-configuration")
    assert config.status_code == 200
    body = await config.get_json()
    assert body["issuer"] == "http://kijko.test"
    assert body["jwks_uri"] == "http://kijko.test/.well-known/jwks.json"
    assert kid_of(alice.access_token) in await published_kids(client)


async def test_a_restart_keeps_the_keys_and_old_tokens_stay_valid(make_settings: Any) -> None:
    settings = make_settings()
    async with running(settings) as (_, _, client):
        account = await sign_up(client)
    keys_before = await key_count(settings)
    async with running(settings) as (_, _, client):
        assert (await client.get(ME, headers=account.headers)).status_code == 200
        assert kid_of(await login(client, account)) == kid_of(account.access_token)
    assert await key_count(settings) == keys_before


def quick_keys(make_settings: Any, interval: int) -> Settings:
    """A short key interval, and login limits out of the way of tests that poll by logging in."""
    return make_settings(  # type: ignore[no-any-return]
        jwks_refresh_interval_seconds=interval,
        rate_limit_auth_per_minute=10_000,
        rate_limit_login_per_account_per_hour=10_000,
    )


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float) -> float:
    """Poll until ``check()`` holds; returns the seconds it took."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < within, f"not within {within}s"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_rotation_in_a_running_process(make_settings: Any) -> None:
    async with running(quick_keys(make_settings, 1)) as (runtime, _, client):
        account = await sign_up(client)
        assert (await client.get(ME, headers=account.headers)).status_code == 200
        old_kid = kid_of(account.access_token)

        rotation = await runtime.identity.keys.rotate()  # type: ignore[attr-defined]
        assert rotation.kid != old_kid
        # Published at once, but not yet signing.
        assert {old_kid, rotation.kid} <= await published_kids(client)
        assert kid_of(await login(client, account)) == old_kid

        async def signs_with_new_key() -> bool:
            return kid_of(await login(client, account)) == rotation.kid

        # From active_from on (one interval + 1 s), within one more interval of rechecking.
        await eventually(signs_with_new_key, within=5)
        fresh = await login(client, account)
        assert (await client.get(ME, headers=bearer(fresh))).status_code == 200
        assert (await client.get(ME, headers=account.headers)).status_code == 200
        assert {old_kid, rotation.kid} <= await published_kids(client)


async def test_tokens_of_a_fresh_key_verify_on_another_instance_at_once(
    make_settings: Any,
) -> None:
    # Two runtimes on one database, as two processes. B's key set is fresh when the rotation
    # happens, so B would only reload it after its interval: the new key must not sign before.
    settings = quick_keys(make_settings, 3)
    async with running(settings) as (a, _, on_a), running(settings) as (_, _, on_b):
        account = await sign_up(on_a)
        assert (await on_b.get(ME, headers=account.headers)).status_code == 200

        rotation = await a.identity.keys.rotate()  # type: ignore[attr-defined]

        tokens: list[str] = []

        async def a_signs_with_new_key() -> bool:
            tokens.append(await login(on_a, account))
            return kid_of(tokens[-1]) == rotation.kid

        await eventually(a_signs_with_new_key, within=10)
        # Every token A gave out, before and after the switch, verifies on B right away.
        for token in tokens:
            response = await on_b.get(ME, headers=bearer(token))
            assert response.status_code == 200, (kid_of(token), await response.get_data(as_text=True))


async def test_a_key_that_left_the_key_set_stops_verifying_everywhere(
    make_settings: Any,
) -> None:
    settings = quick_keys(make_settings, 1)
    async with running(settings) as (a, _, on_a), running(settings) as (_, _, on_b):
        account = await sign_up(on_a)
        old_kid = kid_of(account.access_token)
        # B has verified with the old key: it is in B's key cache.
        assert (await on_b.get(ME, headers=account.headers)).status_code == 200
        rotation = await a.identity.keys.rotate()  # type: ignore[attr-defined]

        # The old key's retirement ages past its tokens' lifetime (what time would do).
        assert settings.system_database_url
        conn = await asyncpg.connect(settings.system_database_url.get_secret_value())
        try:
            await conn.execute(
                "UPDATE kijko_private.signing_keys SET retired_at = now() - interval '1 day' WHERE kid = $1",
                old_kid,
            )
        finally:
            await conn.close()
        assert old_kid not in await published_kids(on_a)
        assert rotation.kid in await published_kids(on_a)

        async def refused_on(client: Any) -> bool:
            response = await client.get(ME, headers=account.headers)
            assert response.status_code in (200, 401)
            return bool(response.status_code == 401)

        # Dropped on every instance once its key set reloads (every 1 s here); the bound is
        # generous for a loaded machine, the point is that the key stops verifying at all.
        await eventually(lambda: refused_on(on_b), within=10)
        await eventually(lambda: refused_on(on_a), within=10)


def _cli_env(settings: Settings) -> dict[str, str]:
    assert settings.encryption_keys is not None
    assert settings.database_url and settings.system_database_url and settings.migration_database_url
    return {
        "KIJKO_DATABASE_URL": settings.database_url.get_secret_value(),
        "KIJKO_SYSTEM_DATABASE_URL": settings.system_database_url.get_secret_value(),
        "KIJKO_MIGRATION_DATABASE_URL": settings.migration_database_url.get_secret_value(),
        "KIJKO_DB_ROLE_PREFIX": settings.db_role_prefix,
        "KIJKO_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        "KIJKO_DATA_DIR": str(settings.data_dir),
        "KIJKO_PUBLIC_URL": str(settings.public_url),
        "KIJKO_LOG_LEVEL": "warning",
        # The rotating command publishes one interval ahead of its own setting: the same one.
        "KIJKO_JWKS_REFRESH_INTERVAL_SECONDS": str(settings.jwks_refresh_interval_seconds),
    }


async def test_kijko_keys_rotate_while_another_instance_runs(make_settings: Any) -> None:
    # A one-second interval so the running instance notices the rotation within the test.
    settings = quick_keys(make_settings, 1)
    async with running(settings) as (_, _, serving):
        account = await sign_up(serving)
        old_kid = kid_of(account.access_token)

        result = await asyncio.to_thread(CliRunner().invoke, cli, ["keys", "rotate"], env=_cli_env(settings))
        assert result.exit_code == 0, result.output
        match = re.search(r"new signing key: (\S+)", result.output)
        assert match is not None
        new_kid = match.group(1)
        assert new_kid != old_kid

        # Published at once: a process started after the rotation knows both keys, and
        # both processes sign with the new key once it is active.
        async with running(settings) as (_, _, restarted):
            assert {old_kid, new_kid} <= await published_kids(restarted)
            assert (await restarted.get(ME, headers=account.headers)).status_code == 200

            async def signs_with_new_key(client: Any) -> bool:
                return kid_of(await login(client, account)) == new_kid

            await eventually(lambda: signs_with_new_key(restarted), within=5)
            await eventually(lambda: signs_with_new_key(serving), within=5)
            fresh = await login(restarted, account)
            assert (await restarted.get(ME, headers=bearer(fresh))).status_code == 200
            assert (await serving.get(ME, headers=bearer(fresh))).status_code == 200
            assert (await serving.get(ME, headers=account.headers)).status_code == 200
