"""The retry policy of provider calls (decision 0105): transient failures (429, 5xx, Anthropic's
529, timeouts, dropped connections) are tried again after an exponential backoff with full
jitter — or the provider's ``Retry-After``, capped — up to ``KIJKO_LLM_MAX_RETRIES`` times;
anything else fails at once. Each attempt has ``KIJKO_LLM_TIMEOUT_SECONDS``."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from kijko_core.config import Settings
from kijko_core.llm.calls import ProviderFailure

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    base_seconds: float
    max_seconds: float
    timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.llm_max_retries,
            settings.llm_retry_base_seconds,
            settings.llm_retry_max_seconds,
            settings.llm_timeout_seconds,
        )

    def delay(self, retry: int, retry_after: float | None) -> float:
        """How long to wait before retry number ``retry`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_seconds)
        # Full jitter (a random wait up to the exponential bound) spreads out the retries of
        # many runs that failed together, instead of sending them back in lockstep.
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2 ** (retry - 1)))  # noqa: S311


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """``call()`` until it succeeds, fails for good or the retries run out (then its last
    :class:`ProviderFailure` is raised). Cancellation passes through at once."""
    retry = 0
    while True:
        try:
            async with asyncio.timeout(policy.timeout_seconds):
                return await call()
        except TimeoutError:
            failure = ProviderFailure("TIMEOUT", "The provider did not answer in time", transient=True)
        except ProviderFailure as raised:
            failure = raised
        if not failure.transient or retry >= policy.max_retries:
            raise failure
        retry += 1
        await asyncio.sleep(policy.delay(retry, failure.retry_after))
