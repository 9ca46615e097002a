"""Rate limits on the auth routes (INFR-04, issue 2 §4).

5 attempts per minute per client address on signup and on login (each route its own budget,
successes count), a looser limit on refresh, a per-account limit on login; the client address
comes from ``X-Forwarded-For`` only through a trusted proxy; shared through Redis.
"""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import asyncio as aioredis

from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from kijko_server.ratelimits import client_address
from tests.conftest import sign_up

PASSWORD = "correct horse battery"


def net(*items: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(item) for item in items]


def unique_address() -> str:
    """A documentation-range address no other test uses, so budgets never collide."""
    value = uuid.uuid4().int
    return f"198.18.{value % 250}.{(value >> 8) % 250 + 1}"


async def attempt(
    client: Any, path: str, body: Any, peer: str, forwarded_for: str | None = None
) -> Any:
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


# --- pure: the client address ------------------------------------------------------------------


def test_client_address_is_the_peer_without_forwarded_for() -> None:
    assert client_address("203.0.113.9", None, net("10.0.0.0/8")) == "203.0.113.9"
    assert client_address(None, None, []) == "unknown"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert client_address("203.0.113.9", "1.2.3.4", []) == "203.0.113.9"
    assert client_address("203.0.113.9", "1.2.3.4", net("10.0.0.0/8")) == "203.0.113.9"


def test_trusted_peer_gives_the_right_most_untrusted_hop() -> None:
    trusted = net("10.0.0.0/8", "192.168.1.1/32")
    assert client_address("10.0.0.1", "203.0.113.5", trusted) == "203.0.113.5"
    # The client forged the left part; our proxies appended the right part.
    assert client_address("10.0.0.1", "6.6.6.6, 203.0.113.5", trusted) == "203.0.113.5"
    assert client_address("10.0.0.1", "6.6.6.6, 203.0.113.5, 192.168.1.1, 10.2.3.4", trusted) == (
        "203.0.113.5"
    )
    assert client_address("10.0.0.1", " 6.6.6.6 ,, 203.0.113.5 ", trusted) == "203.0.113.5"


def test_trusted_peer_with_only_trusted_hops_gives_the_left_most() -> None:
    assert client_address("10.0.0.1", "10.0.0.7, 10.0.0.8", net("10.0.0.0/8")) == "10.0.0.7"


def test_trusted_peer_with_empty_forwarded_for_is_the_peer() -> None:
    assert client_address("10.0.0.1", "", net("10.0.0.0/8")) == "10.0.0.1"
    assert client_address("10.0.0.1", " , ", net("10.0.0.0/8")) == "10.0.0.1"


def test_garbage_hops_are_not_trusted() -> None:
    # Not an address: never trusted, so it stops the walk (and becomes the key) rather than
    # letting an earlier forged hop through.
    assert client_address("10.0.0.1", "6.6.6.6, junk", net("10.0.0.0/8")) == "junk"


def test_ipv6_proxies_and_clients() -> None:
    trusted = net("fd00::/8")
    assert client_address("fd00::1", "2001:db8::5", trusted) == "2001:db8::5"
    assert client_address("2001:db8::9", "2001:db8::5", trusted) == "2001:db8::9"


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


@pytest.fixture
async def behind_proxy(kijko: Kijko, make_settings: Any) -> AsyncIterator[KijkoApp]:
    settings = make_settings(
        trusted_proxies=["10.0.0.0/8"], rate_limit_login_per_account_per_hour=3
    )
    async for application in make_app(kijko, settings):
        yield application


async def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client(
    behind_proxy: KijkoApp,
) -> None:
    client = behind_proxy.test_client()
    client_ip = unique_address()
    for number in range(5):
        # Each attempt forges a different left-most hop and a different (unknown) email.
        body = {"email": f"guess-{number}@example.com", "password": "wrong-password"}
        response = await attempt(
            client, "/api/v1/auth/login", body, "10.0.0.1", f"6.6.6.{number}, {client_ip}, 10.1.1.1"
        )
        assert response.status_code == 401
    body = {"email": "guess-x@example.com", "password": "wrong-password"}
    limited = await attempt(client, "/api/v1/auth/login", body, "10.0.0.1", f"7.7.7.7, {client_ip}")
    await assert_rate_limited(limited)
    # Another client behind the same proxy has its own budget.
    other = await attempt(client, "/api/v1/auth/login", body, "10.0.0.1", unique_address())
    assert other.status_code == 401


async def test_per_account_limit_stops_guessing_from_many_addresses(behind_proxy: KijkoApp) -> None:
    client = behind_proxy.test_client()
    victim = await sign_up(client)
    bystander = await sign_up(client)
    for _ in range(3):
        wrong = {"email": victim.email, "password": "wrong-guess-1234"}
        response = await attempt(client, "/api/v1/auth/login", wrong, "10.0.0.1", unique_address())
        assert response.status_code == 401
    # A fresh address, the right password, the email spelled differently: still blocked.
    right = {"email": f"  {victim.email.upper()} ", "password": PASSWORD}
    limited = await attempt(client, "/api/v1/auth/login", right, "10.0.0.1", unique_address())
    await assert_rate_limited(limited, at_most=3600)
    # Other accounts are not affected.
    other = {"email": bystander.email, "password": PASSWORD}
    ok = await attempt(client, "/api/v1/auth/login", other, "10.0.0.1", unique_address())
    assert ok.status_code == 200


# --- shared through Redis ----------------------------------------------------------------------

REDIS_URL = os.environ.get("KIJKO_TEST_REDIS_URL")
RATE_LIMIT_DB = 7  # a database index of its own: these keys never meet other tests' keys


def redis_db_url(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    if not REDIS_URL:
        pytest.skip("KIJKO_TEST_REDIS_URL is not set")
    url = redis_db_url(REDIS_URL, RATE_LIMIT_DB)
    redis = aioredis.from_url(url)
    try:
        await redis.flushdb()
        yield url
    finally:
        await redis.flushdb()
        await redis.aclose()


@pytest.mark.redis
async def test_limit_is_shared_between_two_instances_through_redis(
    kijko: Kijko, make_settings: Any, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    peer = unique_address()
    wrong = {"email": "nobody@example.com", "password": "wrong-password"}
    async for first in make_app(kijko, settings):
        async for second in make_app(kijko, settings):
            for _ in range(3):
                response = await attempt(first.test_client(), "/api/v1/auth/login", wrong, peer)
                assert response.status_code == 401
            for _ in range(2):
                response = await attempt(second.test_client(), "/api/v1/auth/login", wrong, peer)
                assert response.status_code == 401
            sixth = await attempt(second.test_client(), "/api/v1/auth/login", wrong, peer)
            await assert_rate_limited(sixth)
            # And the first instance sees it too.
            await assert_rate_limited(
                await attempt(first.test_client(), "/api/v1/auth/login", wrong, peer)
            )


@pytest.mark.redis
async def test_redis_keys_expire_and_name_no_email(
    kijko: Kijko, make_settings: Any, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    email = f"expiry-{uuid.uuid4().hex[:8]}@example.com"
    async for application in make_app(kijko, settings):
        body = {"email": email, "password": "wrong-password"}
        response = await attempt(application.test_client(), "/api/v1/auth/login", body, unique_address())
        assert response.status_code == 401
    redis = aioredis.from_url(redis_url)
    try:
        keys = [key.decode() for key in await redis.keys("*")]
        assert keys, "the limiter wrote nothing to Redis"
        for key in keys:
            assert email not in key and "example.com" not in key
            ttl = await redis.ttl(key)
            # Per-address keys live about a minute, per-account keys about an hour.
            assert 0 < ttl <= 3601, (key, ttl)
    finally:
        await redis.aclose()


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
    async for application in make_app(kijko, make_settings(redis_url=redis_url)):
        statuses = await burst(application, unique_address(), 12)
    assert statuses.count(429) == 7, statuses
