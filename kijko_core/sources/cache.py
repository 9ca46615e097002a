"""A short cache of provider answers, per user (docs/decisions/0068-provider-answers-cached-per-user.md).

Keys carry the organization and the user, so one user's private repositories never answer
another's request; values are the JSON of our own wire models, never tokens. With Redis
(``KIJKO_REDIS_URL``) every instance shares the cache; without, each process keeps its own,
bounded in size. A Redis that fails is skipped: the cache is an optimisation, not a dependency.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from typing import Any
from uuid import UUID

import structlog
from redis import asyncio as aioredis
from redis.exceptions import RedisError

log = structlog.get_logger("kijko.sources.cache")

_PREFIX = "kijko:provider:"
#: Entries a process keeps without Redis; the oldest go first.
LOCAL_ENTRIES = 2048


class ProviderCache:
    """``event`` names the warning logged when Redis fails (the VIES cache is one of these too:
    kijko_core/billing/vies.py)."""

    def __init__(
        self, redis: aioredis.Redis | None, ttl_seconds: int, *, event: str = "provider_cache_unavailable"
    ) -> None:
        self._redis = redis
        self.ttl = ttl_seconds
        self._event = event
        self._local: OrderedDict[str, tuple[float, str]] = OrderedDict()

    @staticmethod
    def key(org_id: UUID, user_id: UUID, *parts: str) -> str:
        # Hashed: the parts hold repository names, which need not appear in Redis' key space.
        digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
        return f"{_PREFIX}{org_id}:{user_id}:{digest}"

    async def get(self, key: str) -> Any | None:
        if self.ttl <= 0:
            return None
        raw: str | bytes | None
        if self._redis is not None:
            try:
                raw = await self._redis.get(key)
            except (RedisError, OSError) as error:
                log.warning(self._event, error=type(error).__name__)
                return None
        else:
            entry = self._local.get(key)
            if entry is None or entry[0] < time.monotonic():
                self._local.pop(key, None)
                return None
            raw = entry[1]
        return None if raw is None else json.loads(raw)

    async def put(self, key: str, value: Any) -> None:
        if self.ttl <= 0:
            return
        raw = json.dumps(value)
        if self._redis is not None:
            try:
                await self._redis.set(key, raw, ex=self.ttl)
            except (RedisError, OSError) as error:
                log.warning(self._event, error=type(error).__name__)
            return
        self._local[key] = (time.monotonic() + self.ttl, raw)
        self._local.move_to_end(key)
        while len(self._local) > LOCAL_ENTRIES:
            self._local.popitem(last=False)

    async def forget_user(self, org_id: UUID, user_id: UUID) -> None:
        """Drop a user's entries (a connection changed: the answers may change too)."""
        prefix = f"{_PREFIX}{org_id}:{user_id}:"
        if self._redis is not None:
            try:
                keys = [key async for key in self._redis.scan_iter(match=prefix + "*", count=500)]
                if keys:
                    await self._redis.delete(*keys)
            except (RedisError, OSError) as error:
                log.warning(self._event, error=type(error).__name__)
            return
        for key in [key for key in self._local if key.startswith(prefix)]:
            del self._local[key]
