"""What the operator commands share: settings and one-line errors (from ``kijko_cli.main``) and
a started runtime for the length of one command."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kijko_core.config import Settings
from kijko_core.db.session import SystemSession, system_session
from kijko_core.runtime import Kijko

T = TypeVar("T")


def settings(**overrides: Any) -> Settings:
    from kijko_cli.main import _settings

    return _settings(**overrides)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    from kijko_cli.main import _run

    return _run(factory)


def with_runtime(config: Settings, work: Callable[[Kijko], Awaitable[T]]) -> T:
    """Start the runtime (attaching to a running embedded database, never stopping it under a
    server), run ``work``, stop the runtime."""

    async def main() -> T:
        kijko = await Kijko.start(config)
        try:
            return await work(kijko)
        finally:
            await kijko.stop()

    return run(main)


def in_system_session(
    config: Settings, work: Callable[[SystemSession, Kijko], Awaitable[T]]
) -> T:
    """``work`` in one system transaction of a started runtime."""

    async def in_session(kijko: Kijko) -> T:
        async with system_session(kijko.system_db) as db:
            return await work(db, kijko)

    return with_runtime(config, in_session)
