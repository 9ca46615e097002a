"""Rate limits on the auth routes (INFR-04, issue 2 §4, issue 5 §2 and §4).

5 attempts per minute per client address on signup and on login (each route its own budget,
successes count), a looser limit on refresh, a per-account limit on login keyed on the account
(its normalised email) and the address, so nobody can lock a user out from elsewhere; the
client address is the one uvicorn resolved (``X-Forwarded-For`` is not the limiter's
business); CORS preflights never count and are never refused; shared through the runtime's
Redis, and 503 (not 500, not unlimited) when that Redis is down.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis import asyncio as aioredis

from kijko_core.runtime import Kijko, make_redis
from kijko_server.app import KijkoApp, create_app
from kijko_server.ratelimits import KEY_PREFIX
from tests.conftest import sign_up
from tests.net import free_port

PASSWORD = "correct horse battery"


def unique_address() -> str:
    """A documentation-range address no other test uses, so budgets never collide."""
    value = uuid.uuid4().int
    return f"198.18.{value % 250}.{(value >> 8) % 250 + 1}"


async def attempt(client: Any, path: str, body: Any, peer: str, forwarded_for: str | None = None) -> Any:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await client.post(path, json=body, headers=headers, scope_base={"client": (peer, 51000)})


def signup_body() -> dict[str, str]:
    return {
        "email": f"rl-{uuid.uuid4().hex[:12]}@example.com",
        "password": PASSWORD,
        "first_name": "Rate",
        "last_name": "Limit",
    }


async def assert_rate_limited(response: Any, *, at_most: int = 60) -> int:
    assert response.status_code == 429, await response.get_data(as_text=True)
    body = await response.get_json()
    assert set(body) <= {"detail", "code", "message", "field", "details"}
    assert body["code"] == "RATE_LIMITED" and body["message"] and body["detail"]
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= at_most
    assert body["details"]["retryAfter"] == int(retry_after)
    return int(retry_after)


async def make_app(kijko: Kijko, settings: Any) -> AsyncIterator[KijkoApp]:
    application = create_app(settings, kijko=kijko)
    async with application.test_app():
        yield application


# --- per address, in memory --------------------------------------------------------------------


async def test_signup_allows_five_per_minute_then_429(client: Any) -> None:
    peer = unique_address()
    for _ in range(5):
        # Successful attempts count.
        assert (await attempt(client, "/api/v1/auth/signup", signup_body(), peer)).status_code == 201
    await assert_rate_limited(await attempt(client, "/api/v1/auth/signup", signup_body(), peer))


async def test_login_allows_five_per_minute_even_when_they_succeed(client: Any) -> None:
    account = await sign_up(client)
    peer = unique_address()
    body = {"email": account.email, "password": PASSWORD}
    for _ in range(5):
        assert (await attempt(client, "/api/v1/auth/login", body, peer)).status_code == 200
    await assert_rate_limited(await attempt(client, "/api/v1/auth/login", body, peer))


async def test_failed_and_invalid_attempts_count_too(client: Any) -> None:
    peer = unique_address()
    statuses = [
        (await attempt(client, "/api/v1/auth/login", body, peer)).status_code
        for body in (
            {"email": "nobody@example.com", "password": "wrong-password"},
            {"email": "nobody@example.com"},
            {"email": "nobody@example.com", "password": "wrong-password"},
            ["not", "an", "object"],
            {"email": "nobody@example.com", "password": "wrong-password"},
        )
    ]
    assert statuses == [401, 422, 401, 422, 401]
    limited = await attempt(client, "/api/v1/auth/login", {"email": "a@b.c", "password": "x"}, peer)
    await assert_rate_limited(limited)


async def test_each_route_and_each_address_has_its_own_budget(client: Any) -> None:
    account = await sign_up(client)
    peer = unique_address()
    for _ in range(5):
        await attempt(client, "/api/v1/auth/signup", signup_body(), peer)
    await assert_rate_limited(await attempt(client, "/api/v1/auth/signup", signup_body(), peer))
    # Same address, other routes: untouched.
    login = {"email": account.email, "password": PASSWORD}
    assert (await attempt(client, "/api/v1/auth/login", login, peer)).status_code == 200
    refresh = {"refresh_token": account.refresh_token}
    assert (await attempt(client, "/api/v1/auth/refresh", refresh, peer)).status_code == 200
    # Same route, another address: untouched.
    other = unique_address()
    assert (await attempt(client, "/api/v1/auth/signup", signup_body(), other)).status_code == 201


async def test_refresh_has_a_looser_limit(client: Any) -> None:
    peer = unique_address()
    body = {"refresh_token": "not-a-real-refresh-token"}
    for number in range(1, 31):
        response = await attempt(client, "/api/v1/auth/refresh", body, peer)
        assert response.status_code == 401, number
    await assert_rate_limited(await attempt(client, "/api/v1/auth/refresh", body, peer))


async def test_limits_come_from_the_settings(kijko: Kijko, make_settings: Any) -> None:
    async for application in make_app(
        kijko, make_settings(rate_limit_auth_per_minute=2, rate_limit_refresh_per_minute=1)
    ):
        client = application.test_client()
        peer = unique_address()
        wrong = {"email": "nobody@example.com", "password": "wrong-password"}
        for _ in range(2):
            assert (await attempt(client, "/api/v1/auth/login", wrong, peer)).status_code == 401
        await assert_rate_limited(await attempt(client, "/api/v1/auth/login", wrong, peer))
        refresh = {"refresh_token": "nope"}
        assert (await attempt(client, "/api/v1/auth/refresh", refresh, peer)).status_code == 401
        await assert_rate_limited(await attempt(client, "/api/v1/auth/refresh", refresh, peer))


async def test_other_routes_are_not_rate_limited(client: Any) -> None:
    peer = unique_address()
    for _ in range(8):
        response = await client.get("/health", scope_base={"client": (peer, 1)})
        assert response.status_code == 200


# --- X-Forwarded-For ---------------------------------------------------------------------------


async def test_forged_forwarded_for_from_untrusted_peer_gives_no_fresh_budget(client: Any) -> None:
    peer = unique_address()
    wrong = {"email": "nobody@example.com", "password": "wrong-password"}
    for number in range(5):
        response = await attempt(client, "/api/v1/auth/login", wrong, peer, f"203.0.113.{number}")
        assert response.status_code == 401
    limited = await attempt(client, "/api/v1/auth/login", wrong, peer, "203.0.113.99")
    await assert_rate_limited(limited)


# --- per account (and address) ----------------------------------------------------------------


@pytest.fixture
async def strict_account_limit(kijko: Kijko, make_settings: Any) -> AsyncIterator[KijkoApp]:
    settings = make_settings(rate_limit_login_per_account_per_hour=3)
    async for application in make_app(kijko, settings):
        yield application


async def test_per_account_limit_stops_guessing_one_account_from_one_address(
    strict_account_limit: KijkoApp,
) -> None:
    client = strict_account_limit.test_client()
    victim = await sign_up(client)
    bystander = await sign_up(client)
    attacker = unique_address()
    for _ in range(3):
        wrong = {"email": victim.email, "password": "wrong-guess-1234"}
        assert (await attempt(client, "/api/v1/auth/login", wrong, attacker)).status_code == 401
    # The per-address budget (5) is not used up, the per-account one is, however the email is
    # spelled: case, surrounding spaces.
    right = {"email": f"  {victim.email.upper()} ", "password": PASSWORD}
    limited = await attempt(client, "/api/v1/auth/login", right, attacker)
    await assert_rate_limited(limited, at_most=3600)
    # Other accounts from the same address are not affected.
    other = {"email": bystander.email, "password": PASSWORD}
    assert (await attempt(client, "/api/v1/auth/login", other, attacker)).status_code == 200


async def test_nobody_can_lock_a_user_out_from_elsewhere(strict_account_limit: KijkoApp) -> None:
    client = strict_account_limit.test_client()
    victim = await sign_up(client)
    for _ in range(3):
        wrong = {"email": victim.email, "password": "wrong-guess-1234"}
        assert (await attempt(client, "/api/v1/auth/login", wrong, unique_address())).status_code == 401
    attacker = unique_address()
    for _ in range(4):
        wrong = {"email": victim.email, "password": "wrong-guess-1234"}
        await attempt(client, "/api/v1/auth/login", wrong, attacker)
    # The attacker is refused; the user, from their own address, signs in.
    await assert_rate_limited(
        await attempt(client, "/api/v1/auth/login", {"email": victim.email, "password": "x"}, attacker),
        at_most=3600,
    )
    right = {"email": victim.email, "password": PASSWORD}
    assert (await attempt(client, "/api/v1/auth/login", right, unique_address())).status_code == 200


async def test_unicode_spellings_of_an_email_share_one_budget(strict_account_limit: KijkoApp) -> None:
    client = strict_account_limit.test_client()
    local = f"dimitri-{uuid.uuid4().hex[:8]}"
    account = await sign_up(client, email=f"{local}@example.com")
    attacker = unique_address()
    spellings = [
        f"{local.replace('i', 'İ')}@example.com",  # Turkish capital dotted I
        f"{local.upper()}@EXAMPLE.COM",
        # Full-width letters (NFKD makes them plain).
        "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in local) + "@example.com",
    ]
    for email in spellings:
        wrong = {"email": email, "password": "wrong-guess-1234"}
        assert (await attempt(client, "/api/v1/auth/login", wrong, attacker)).status_code == 401
    right = {"email": account.email, "password": PASSWORD}
    await assert_rate_limited(await attempt(client, "/api/v1/auth/login", right, attacker), at_most=3600)


# --- CORS preflights ----------------------------------------------------------------------------


async def preflight(client: Any, path: str, peer: str) -> Any:
    return await client.options(
        path,
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        scope_base={"client": (peer, 51000)},
    )


async def test_preflights_never_count_and_are_never_refused(client: Any) -> None:
    peer = unique_address()
    wrong = {"email": "nobody@example.com", "password": "wrong-password"}
    for _ in range(12):
        response = await preflight(client, "/api/v1/auth/login", peer)
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    # The whole budget is still there after the preflights.
    for _ in range(5):
        assert (await attempt(client, "/api/v1/auth/login", wrong, peer)).status_code == 401
    # And once it is used up, a preflight is still answered (the browser then reads the 429).
    assert (await preflight(client, "/api/v1/auth/login", peer)).status_code == 200


async def test_a_429_is_readable_by_an_allowed_origin(client: Any) -> None:
    peer = unique_address()
    wrong = {"email": "nobody@example.com", "password": "wrong-password"}
    for _ in range(5):
        await attempt(client, "/api/v1/auth/login", wrong, peer)
    response = await client.post(
        "/api/v1/auth/login",
        json=wrong,
        headers={"Origin": "https://app.kijko.nl"},
        scope_base={"client": (peer, 51000)},
    )
    await assert_rate_limited(response)
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.kijko.nl"
    exposed = {item.strip().lower() for item in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert "retry-after" in exposed


# --- shared through the runtime's Redis -------------------------------------------------------

REDIS_URL = os.environ.get("KIJKO_TEST_REDIS_URL")


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    if not REDIS_URL:
        pytest.skip("KIJKO_TEST_REDIS_URL is not set")
    # Only the limiter's keys are cleared: the URL may name a database with other data.
    redis = aioredis.from_url(REDIS_URL)
    try:
        await clear_limits(redis)
        yield REDIS_URL
    finally:
        await clear_limits(redis)
        await redis.aclose()


async def clear_limits(redis: aioredis.Redis) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{KEY_PREFIX}:*")]
    if keys:
        await redis.delete(*keys)


@asynccontextmanager
async def with_redis(kijko: Kijko, settings: Any) -> AsyncIterator[Kijko]:
    """The runtime as another process would have it: its own Redis client for the URL."""
    redis = make_redis(settings)
    assert redis is not None
    try:
        yield dataclasses.replace(kijko, settings=settings, redis=redis)
    finally:
        await redis.aclose()


@pytest.mark.redis
async def test_limit_is_shared_between_two_instances_through_redis(
    kijko: Kijko, make_settings: Any, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    peer = unique_address()
    wrong = {"email": "nobody@example.com", "password": "wrong-password"}
    async with with_redis(kijko, settings) as one, with_redis(kijko, settings) as two:
        async for first in make_app(one, settings):
            async for second in make_app(two, settings):
                for _ in range(3):
                    response = await attempt(first.test_client(), "/api/v1/auth/login", wrong, peer)
                    assert response.status_code == 401
                for _ in range(2):
                    response = await attempt(second.test_client(), "/api/v1/auth/login", wrong, peer)
                    assert response.status_code == 401
                sixth = await attempt(second.test_client(), "/api/v1/auth/login", wrong, peer)
                await assert_rate_limited(sixth)
                # And the first instance sees it too.
                await assert_rate_limited(await attempt(first.test_client(), "/api/v1/auth/login", wrong, peer))


@pytest.mark.redis
async def test_redis_keys_expire_and_name_no_email(kijko: Kijko, make_settings: Any, redis_url: str) -> None:
    settings = make_settings(redis_url=redis_url)
    email = f"expiry-{uuid.uuid4().hex[:8]}@example.com"
    async with with_redis(kijko, settings) as runtime:
        async for application in make_app(runtime, settings):
            body = {"email": email, "password": "wrong-password"}
            response = await attempt(application.test_client(), "/api/v1/auth/login", body, unique_address())
            assert response.status_code == 401
    redis = aioredis.from_url(redis_url)
    try:
        keys = [key.decode() async for key in redis.scan_iter(match=f"{KEY_PREFIX}:*")]
        assert keys, "the limiter wrote nothing to Redis"
        for key in keys:
            assert email not in key and "example.com" not in key
            ttl = await redis.ttl(key)
            # Per-address keys live about a minute, per-account keys about an hour.
            assert 0 < ttl <= 3601, (key, ttl)
    finally:
        await redis.aclose()


async def test_redis_configured_but_down_is_503_never_500_nor_unlimited(kijko: Kijko, make_settings: Any) -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with with_redis(kijko, settings) as runtime:
        async for application in make_app(runtime, settings):
            client = application.test_client()
            peer = unique_address()
            for path, body in (
                ("/api/v1/auth/login", {"email": "nobody@example.com", "password": "wrong-pass"}),
                ("/api/v1/auth/signup", signup_body()),
                ("/api/v1/auth/refresh", {"refresh_token": "not-a-real-refresh-token"}),
            ):
                response = await attempt(client, path, body, peer)
                assert response.status_code == 503, await response.get_data(as_text=True)
                error = await response.get_json()
                assert set(error) <= {"detail", "code", "message", "field", "details"}
                assert error["code"] == "SERVICE_UNAVAILABLE"
                assert error["details"]["components"] == {"redis": "unavailable"}
            # Routes that do not need Redis still work.
            assert (await client.get("/health")).status_code == 200
            ready = await client.get("/health/ready")
            assert ready.status_code == 503
            assert (await ready.get_json())["details"]["components"]["redis"] == "unavailable"


# --- concurrency ---------------------------------------------------------------------------------


async def burst(application: KijkoApp, peer: str, count: int) -> list[int]:
    import asyncio

    wrong = {"email": "nobody@example.com", "password": "wrong-password"}
    responses = await asyncio.gather(
        *(attempt(application.test_client(), "/api/v1/auth/login", wrong, peer) for _ in range(count))
    )
    return sorted(response.status_code for response in responses)


async def test_concurrent_attempts_cannot_overrun_the_limit(app: KijkoApp) -> None:
    statuses = await burst(app, unique_address(), 12)
    assert statuses.count(429) == 7, statuses


@pytest.mark.redis
async def test_concurrent_attempts_cannot_overrun_the_limit_through_redis(
    kijko: Kijko, make_settings: Any, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    async with with_redis(kijko, settings) as runtime:
        async for application in make_app(runtime, settings):
            statuses = await burst(application, unique_address(), 12)
    assert statuses.count(429) == 7, statuses
