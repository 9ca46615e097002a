"""Signing keys of the local provider: generated once and kept across restarts, rotatable
(``kijko keys rotate``) with the old ``kid`` published until its tokens expire."""

from __future__ import annotations

import asyncio
import re
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
    response = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
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


async def test_rotation_in_a_running_process(make_settings: Any) -> None:
    async with running(make_settings()) as (runtime, _, client):
        account = await sign_up(client)
        assert (await client.get(ME, headers=account.headers)).status_code == 200
        old_kid = kid_of(account.access_token)

        new_kid = await runtime.identity.keys.rotate()  # type: ignore[attr-defined]
        assert new_kid != old_kid
        fresh = await login(client, account)
        assert kid_of(fresh) == new_kid
        assert (await client.get(ME, headers=bearer(fresh))).status_code == 200
        assert (await client.get(ME, headers=account.headers)).status_code == 200
        assert {old_kid, new_kid} <= await published_kids(client)


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
    }


async def test_kijko_keys_rotate_while_another_instance_runs(make_settings: Any) -> None:
    # A one-second interval so the running instance notices the rotation within the test.
    settings = make_settings(jwks_refresh_interval_seconds=1)
    async with running(settings) as (_, _, serving):
        account = await sign_up(serving)
        old_kid = kid_of(account.access_token)

        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["keys", "rotate"], env=_cli_env(settings)
        )
        assert result.exit_code == 0, result.output
        match = re.search(r"new signing key: (\S+)", result.output)
        assert match is not None
        new_kid = match.group(1)
        assert new_kid != old_kid

        # A process started after the rotation signs with the new key; old tokens still verify.
        async with running(settings) as (_, _, restarted):
            fresh = await login(restarted, account)
            assert kid_of(fresh) == new_kid
            assert (await restarted.get(ME, headers=account.headers)).status_code == 200
            assert (await restarted.get(ME, headers=bearer(fresh))).status_code == 200
            assert {old_kid, new_kid} <= await published_kids(restarted)

            # The instance that was running all along accepts the new key once its key
            # interval has passed, and signs with it too.
            await asyncio.sleep(1.1)
            assert (await serving.get(ME, headers=bearer(fresh))).status_code == 200
            assert (await serving.get(ME, headers=account.headers)).status_code == 200
            assert kid_of(await login(serving, account)) == new_kid
