"""Runtimes on the free plan with chosen limits, for the quota tests (the other suites run on
``enterprise``, tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kijko_core.billing.plans import LIMIT_KEYS, Plans
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.conftest import Account, sign_up

FREE_LIMITS = "[plans.free.limits]\napi_calls = 1000\ningestions = 50\nstorage_gb = 1\nseats = 1\noracle_queries = 10\n"


def plans_file(directory: Path, **free: int) -> Path:
    """The shipped plans with the free plan's limits changed (keys of the file: ``storage_gb``)."""
    text = Plans.shipped_text()
    assert FREE_LIMITS in text, "the shipped free plan changed: update tests/quotas_kit.py"
    shipped = {"api_calls": 1000, "ingestions": 50, "storage_gb": 1, "seats": 1, "oracle_queries": 10}
    limits = shipped | free
    assert set(limits) == set(LIMIT_KEYS.values())
    block = "[plans.free.limits]\n" + "".join(f"{key} = {value}\n" for key, value in limits.items())
    path = directory / f"plans-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text.replace(FREE_LIMITS, block), encoding="utf-8")
    return path


@asynccontextmanager
async def exhausted(make_settings: Any, directory: Path) -> AsyncIterator[tuple[Any, Account]]:
    """A test client on the free plan with nothing left (no API calls, ingestions, searches or
    storage; the one seat taken by its owner), and that owner: every counted action answers 429
    ``QUOTA_EXCEEDED`` (the OpenAPI suites trigger their 429s here)."""
    path = plans_file(directory, api_calls=0, ingestions=0, storage_gb=0, seats=1, oracle_queries=0)
    runtime = await Kijko.start(make_settings(plans_file=path, default_plan="free"))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            web = application.test_client()
            yield web, await sign_up(web)
    finally:
        await runtime.stop()


async def answered_when_spent(
    make_settings: Any, directory: Path, call: Callable[[Any, Account], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    """A trigger for the OpenAPI suites: ``call(client, owner)`` made once on :func:`exhausted`,
    its (429 ``QUOTA_EXCEEDED``) answer handed back whenever the trigger runs."""
    async with exhausted(make_settings, directory) as (web, owner):
        response = await call(web, owner)
        await response.get_data()

    async def answer() -> Any:
        return response

    return answer
