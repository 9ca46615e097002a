"""Rate limits on the auth routes (INFR-04): per client address, and per account on login.

Shared through Redis when ``KIJKO_REDIS_URL`` is set, in memory otherwise. The client address
is the peer, or, when the peer is a trusted proxy, the right-most untrusted hop of
``X-Forwarded-For``: a forged header from an untrusted peer changes nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import datetime, timedelta
from typing import Any

from quart import Quart, current_app, request
from quart_rate_limiter import RateLimit, RateLimiter
from quart_rate_limiter.redis_store import RedisStore
from quart_rate_limiter.store import MemoryStore

from kijko_core.config import Settings

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ExpiringRedisStore(RedisStore):
    """The library's Redis store, with keys that expire once they no longer matter."""

    async def set(self, key: str, tat: datetime) -> None:
        assert self._redis is not None
        await self._redis.set(key, tat.timestamp(), exat=int(tat.timestamp()) + 1)


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
    store = ExpiringRedisStore(settings.redis_url) if settings.redis_url else MemoryStore()
    return RateLimiter(app, key_function=by_client_address, store=store)
