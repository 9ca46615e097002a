"""Rate limits on the auth routes (INFR-04): per client address, and per account on login.

Our own small limiter (docs/decisions/0035-own-rate-limiter.md): GCRA, shared through the
runtime's Redis when ``KIJKO_REDIS_URL`` is set, in memory otherwise. A view opts in with
``@rate_limit(...)``; every limit of a request is checked and recorded in one atomic step.

- The client address is ``request.remote_addr``: uvicorn resolves it from ``X-Forwarded-For``
  only for peers in ``KIJKO_TRUSTED_PROXIES``, so there is one rule, not two.
- CORS preflights (``OPTIONS``) never count and are never refused: a refused preflight makes
  the browser report "Failed to fetch" instead of our 429.
- The login limit per account is keyed on the account *and* the address, so nobody can lock
  a user out from elsewhere (docs/decisions/0036-login-limits-and-email-keys.md).
- Redis configured but down: the limited routes answer 503, never 500 and never unlimited.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from quart import Quart, current_app, request
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from kijko_core.auth.emails import email_key
from kijko_core.config import Settings
from kijko_core.errors import RateLimited, ServiceUnavailable
from kijko_server.uow import runtime

KEY_PREFIX = "kijko:rl"
_LIMITS_ATTRIBUTE = "_kijko_rate_limits"
_MEMORY_STORE = "kijko.rate_limits"
_REDIS_STORE = "kijko.rate_limits.redis"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Limit:
    """``count`` requests per ``period_seconds``, counted per value of ``key()``."""

    name: str
    count: int
    period_seconds: float
    key: Callable[[], Awaitable[str]]

    @property
    def interval(self) -> float:
        """The emission interval: one more request is allowed every this many seconds."""
        return self.period_seconds / self.count

    @property
    def burst(self) -> float:
        """How far ahead of now the theoretical arrival time may run before refusing."""
        return self.period_seconds - self.interval


class Store(Protocol):
    async def consume(self, keyed: list[tuple[str, Limit]]) -> float | None:
        """Check every key and, only if none refuses, record the request on each, at the
        store's own clock. Returns the seconds to wait, or None when the request may go ahead."""


class MemoryStore:
    """One process's budgets: for a single instance (and the tests)."""

    _PRUNE_AT = 10_000

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}

    async def consume(self, keyed: list[tuple[str, Limit]]) -> float | None:
        # No await in here, so nothing else runs on the event loop in between.
        now = time.monotonic()
        if len(self._tats) >= self._PRUNE_AT:
            self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        updates: list[tuple[str, float]] = []
        for key, limit in keyed:
            tat = max(self._tats.get(key, now), now)
            if tat - now > limit.burst:
                return tat - now - limit.burst
            updates.append((key, tat + limit.interval))
        self._tats.update(updates)
        return None


# GCRA for all of a request's limits in one step: check every key, and only if none refuses,
# record the attempt on each. Returns the milliseconds to wait, or nil.
# - The time is Redis's own: a time taken by each instance before its round trip arrives out
#   of order (and instances' clocks differ), and an earlier time after a later one was refused
#   although the budget had room.
# - Whole milliseconds, because Lua prints numbers with 14 digits: seconds with decimals were
#   rounded up, with the same effect.
_CONSUME = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i * 2 - 1])
  local burst = tonumber(ARGV[i * 2])
  local tat = math.max(tonumber(redis.call('GET', key) or now), now)
  if tat - now > burst then
    return tostring(tat - burst - now)
  end
  tats[i] = tat + interval
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tostring(tats[i]))
  redis.call('EXPIREAT', key, math.floor(tats[i] / 1000) + 1)
end
return false
"""


class RedisStore:
    """Budgets shared by every instance: one Lua script, so atomic across them; keys expire
    once they no longer matter."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_CONSUME)

    async def consume(self, keyed: list[tuple[str, Limit]]) -> float | None:
        arguments: list[int] = []
        for _, limit in keyed:
            arguments += [math.ceil(limit.interval * 1000), math.floor(limit.burst * 1000)]
        try:
            result = await self._script(keys=[key for key, _ in keyed], args=arguments)
        except RedisError:
            raise ServiceUnavailable(
                "Sign-in is briefly unavailable; try again shortly",
                details={"components": {"redis": "unavailable"}},
            ) from None
        return None if result is None else float(result) / 1000


def rate_limit(*limits: Limit) -> Callable[[F], F]:
    """Mark a view as limited (outermost decorator, so the mark is on what is registered)."""

    def mark(view: F) -> F:
        setattr(view, _LIMITS_ATTRIBUTE, limits)
        return view

    return mark


def limits_of(view: Callable[..., Any] | None) -> tuple[Limit, ...]:
    """The limits ``@rate_limit`` put on a view (none for other views)."""
    limits: tuple[Limit, ...] = getattr(view, _LIMITS_ATTRIBUTE, ())
    return limits


async def by_client_address() -> str:
    return "ip:" + (request.remote_addr or "unknown")


async def by_login_account_and_address() -> str:
    body: Any = await request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    account = email_key(email) if isinstance(email, str) else ""
    # Hashed so no email address ends up as a Redis key.
    digest = hashlib.sha256(account.encode("utf-8", "surrogatepass")).hexdigest()
    return f"account:{digest}:{await by_client_address()}"


class AuthLimits:
    """The limits the auth routes use, built from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.per_address = Limit("address", settings.rate_limit_auth_per_minute, 60, by_client_address)
        self.refresh = Limit("address", settings.rate_limit_refresh_per_minute, 60, by_client_address)
        self.per_account = Limit(
            "account",
            settings.rate_limit_login_per_account_per_hour,
            3600,
            by_login_account_and_address,
        )


def _store() -> Store:
    redis = runtime().redis
    if redis is None:
        memory: MemoryStore = current_app.extensions[_MEMORY_STORE]
        return memory
    # Made once per runtime client (the runtime may be attached after the app is built).
    store: RedisStore | None = current_app.extensions.get(_REDIS_STORE)
    if store is None or store.redis is not redis:
        store = current_app.extensions[_REDIS_STORE] = RedisStore(redis)
    return store


async def enforce_rate_limits() -> None:
    if request.method == "OPTIONS":
        return
    endpoint = request.endpoint or ""
    limits = limits_of(current_app.view_functions.get(endpoint))
    if not limits:
        return
    keyed = [(f"{KEY_PREFIX}:{endpoint}:{limit.name}:{await limit.key()}", limit) for limit in limits]
    wait = await _store().consume(keyed)
    if wait is not None:
        raise RateLimited(retry_after=max(1, math.ceil(wait)))


async def enforce(limit: Limit, key: str) -> None:
    """Count one request against ``limit`` for ``key`` now, from inside a view: for a limit
    that applies only after the view checked something (the reflex receiver counts verified
    deliveries only). 429 ``RATE_LIMITED`` with ``Retry-After`` when it is used up."""
    wait = await _store().consume([(f"{KEY_PREFIX}:{limit.name}:{key}", limit)])
    if wait is not None:
        raise RateLimited(retry_after=max(1, math.ceil(wait)))


async def _given_key() -> str:  # the key is given to ``enforce``
    return ""


async def enforce_inline_test(user_id: object) -> None:
    """Count one inline test run (``/skills/test``, ``/skills/:id/test``, ``/reflexes/:id/test``)
    for the user: they run in the request, outside the per-organization concurrency limit of
    queued executions, so one budget per user bounds them (decision 0133)."""
    per_minute = runtime().settings.execution_test_rate_limit_per_minute
    await enforce(Limit("inline-test", per_minute, 60, _given_key), str(user_id))


async def enforce_btw_validation(user_id: object) -> None:
    """Count one BTW/VAT validation for the user (``/billing/details/validate-btw``): each may
    ask VIES, which blocks a server that asks too much, for every organization (decision 0160)."""
    per_minute = runtime().settings.vies_rate_limit_per_minute
    await enforce(Limit("btw-validation", per_minute, 60, _given_key), str(user_id))


def init_rate_limits(app: Quart) -> None:
    app.extensions[_MEMORY_STORE] = MemoryStore()
    app.before_request(enforce_rate_limits)
