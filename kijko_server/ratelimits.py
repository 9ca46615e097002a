"""Rate limits on the auth routes (INFR-04): per client address, and per account on login.

Shared through Redis when ``KIJKO_REDIS_URL`` is set, in memory otherwise. The client address
is the peer, or, when the peer is a trusted proxy, the right-most untrusted hop of
``X-Forwarded-For``: a forged header from an untrusted peer changes nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Quart, current_app, request
from quart_rate_limiter import RateLimit, RateLimiter, RateLimitExceeded
from quart_rate_limiter.redis_store import RedisStore
from quart_rate_limiter.store import MemoryStore

from kijko_core.config import Settings

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# GCRA (the library's algorithm) for all of a request's limits in one step: check every key,
# and only if none refuses, record the attempt on each. Returns the seconds to wait, or nil.
# A string, because Redis truncates Lua numbers to integers.
_CONSUME = """
local now = tonumber(ARGV[1])
local tats = {}
for i, key in ipairs(KEYS) do
  local inverse = tonumber(ARGV[i * 2])
  local burst = tonumber(ARGV[i * 2 + 1])
  local tat = math.max(tonumber(redis.call('GET', key) or now), now)
  if tat - now > burst then
    return tostring(tat - burst - now)
  end
  tats[i] = tat + inverse
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tostring(tats[i]))
  redis.call('EXPIREAT', key, math.floor(tats[i]) + 1)
end
return false
"""


def _burst(limit: RateLimit) -> float:
    return limit.period.total_seconds() - limit.inverse


class AtomicMemoryStore(MemoryStore):
    """The in-memory store, with check-and-record in one step and expired entries dropped."""

    _PRUNE_AT = 10_000

    async def consume(self, keyed: list[tuple[str, RateLimit]], now: datetime) -> float | None:
        # No await in here, so nothing else runs on the event loop in between.
        if len(self._tats) >= self._PRUNE_AT:
            self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        updates: list[tuple[str, datetime]] = []
        for key, limit in keyed:
            tat = max(self._tats.get(key, now), now)
            if (tat - now).total_seconds() > _burst(limit):
                return (tat - now).total_seconds() - _burst(limit)
            updates.append((key, tat + timedelta(seconds=limit.inverse)))
        self._tats.update(updates)
        return None


class ExpiringRedisStore(RedisStore):
    """The library's Redis store, with check-and-record in one Lua script (atomic across
    instances) and keys that expire once they no longer matter."""

    async def consume(self, keyed: list[tuple[str, RateLimit]], now: datetime) -> float | None:
        assert self._redis is not None
        arguments: list[float] = [now.timestamp()]
        for _, limit in keyed:
            arguments += [limit.inverse, _burst(limit)]
        keys = [key for key, _ in keyed]
        result = await self._redis.eval(_CONSUME, len(keys), *keys, *arguments)
        return None if result is None else float(result)

    async def after_serving(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


class AtomicRateLimiter(RateLimiter):
    """The library reads each budget, then writes it back: parallel attempts all read the same
    budget and all passed (12 concurrent logins, none refused). Here the check and the record
    are one step in the store."""

    store: AtomicMemoryStore | ExpiringRedisStore

    async def _before_request(self) -> None:
        if not current_app.config["QUART_RATE_LIMITER_ENABLED"]:
            return
        endpoint = request.endpoint or ""
        view_func = current_app.view_functions.get(endpoint)
        if view_func is None:
            return
        blueprint = current_app.blueprints.get(request.blueprint or "")
        limits = [
            limit
            for limit in self._get_limits_for_view_function(view_func, blueprint)
            if not await self._should_skip(limit)
        ]
        if not limits:
            return
        keyed = [(await self._create_key(endpoint, limit), limit) for limit in limits]
        wait = await self.store.consume(keyed, datetime.now(UTC))
        if wait is not None:
            raise RateLimitExceeded(max(1, math.ceil(wait)))


def client_address(peer: str | None, forwarded_for: str | None, trusted: list[_Network]) -> str:
    """The right-most address that is not one of our trusted proxies."""
    address = peer or "unknown"
    if not forwarded_for or not _is_trusted(address, trusted):
        return address
    for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        address = hop
        if not _is_trusted(hop, trusted):
            break
    return address


def _is_trusted(address: str, trusted: list[_Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


async def by_client_address() -> str:
    trusted: list[_Network] = current_app.config["KIJKO_TRUSTED_PROXIES"]
    return "ip:" + client_address(
        request.remote_addr, request.headers.get("X-Forwarded-For"), trusted
    )


async def by_login_account() -> str:
    body: Any = await request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    normalized = email.strip().lower() if isinstance(email, str) else ""
    # Hashed so no email address ends up as a Redis key.
    return "account:" + hashlib.sha256(normalized.encode()).hexdigest()


class AuthLimits:
    """The limits the auth routes use, built from the settings."""

    def __init__(self, settings: Settings) -> None:
        minute = timedelta(minutes=1)
        self.per_address = RateLimit(settings.rate_limit_auth_per_minute, minute, by_client_address)
        self.refresh = RateLimit(settings.rate_limit_refresh_per_minute, minute, by_client_address)
        self.per_account = RateLimit(
            settings.rate_limit_login_per_account_per_hour, timedelta(hours=1), by_login_account
        )


def init_rate_limits(app: Quart, settings: Settings) -> RateLimiter:
    app.config["KIJKO_TRUSTED_PROXIES"] = [
        ipaddress.ip_network(item, strict=False) for item in settings.trusted_proxies
    ]
    store = (
        ExpiringRedisStore(settings.redis_url.get_secret_value())
        if settings.redis_url
        else AtomicMemoryStore()
    )
    return AtomicRateLimiter(app, key_function=by_client_address, store=store)
