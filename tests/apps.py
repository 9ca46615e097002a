"""Extra Kijko runtimes and apps on the test database: a restart, a second instance, or
different settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kijko_core.config import Settings
from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Kijko, KijkoApp, Any]]:
    """A freshly started runtime (as after a restart of ``serve``) with its app and client."""
    runtime = await Kijko.start(settings)
    try:
        app = create_app(kijko=runtime)
        async with app.test_app():
            yield runtime, app, app.test_client()
    finally:
        await runtime.stop()
