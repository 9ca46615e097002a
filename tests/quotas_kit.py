"""Runtimes on the free plan with chosen limits, for the quota tests (the other suites run on
``enterprise``, tests/conftest.py)."""

from __future__ import annotations

import calendar
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from kijko_core.billing import customers, subscriptions
from kijko_core.billing.plans import LIMIT_KEYS, Plans
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.conftest import Account, sign_up

FREE_LIMITS = "[plans.free.limits]\napi_calls = 1000\ningestions = 50\nstorage_gb = 1\nseats = 1\noracle_queries = 10\n"


PRO_LIMITS = (
    "[plans.pro.limits]\napi_calls = 10000\ningestions = 500\nstorage_gb = 25\nseats = 3\noracle_queries = 100\n"
)


def plans_file(directory: Path, *, pro: dict[str, int] | None = None, **free: int) -> Path:
    """The shipped plans with the free plan's limits changed (keys of the file: ``storage_gb``),
    and the pro plan's with ``pro``."""
    text = Plans.shipped_text()
    assert FREE_LIMITS in text and PRO_LIMITS in text, "the shipped plans changed: update tests/quotas_kit.py"
    shipped = {"api_calls": 1000, "ingestions": 50, "storage_gb": 1, "seats": 1, "oracle_queries": 10}
    limits = shipped | free
    assert set(limits) == set(LIMIT_KEYS.values())
    block = "[plans.free.limits]\n" + "".join(f"{key} = {value}\n" for key, value in limits.items())
    text = text.replace(FREE_LIMITS, block)
    if pro:
        shipped_pro = {"api_calls": 10000, "ingestions": 500, "storage_gb": 25, "seats": 3, "oracle_queries": 100}
        pro_block = "[plans.pro.limits]\n" + "".join(f"{k} = {v}\n" for k, v in (shipped_pro | pro).items())
        text = text.replace(PRO_LIMITS, pro_block)
    path = directory / f"plans-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def stripe_subscription(
    sub_id: str, status: str, starts: datetime, ends: datetime, *, lookup_key: str = "kijko_pro_monthly"
) -> dict[str, Any]:
    """A subscription as Stripe's API version shows it (the period on its item), for
    ``subscriptions.store``."""
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": "cus_quota",
        "status": status,
        "cancel_at_period_end": False,
        "trial_end": None,
        "schedule": None,
        "created": 1_700_000_000,
        "items": {
            "data": [
                {
                    "price": {"lookup_key": lookup_key},
                    "current_period_start": int(starts.timestamp()),
                    "current_period_end": int(ends.timestamp()),
                }
            ]
        },
    }


async def store_subscription(runtime: Kijko, org_id: UUID, sub: dict[str, Any]) -> None:
    """Mirror ``sub`` as the organization's subscription, as the webhook job would."""
    async with customers.billing_session(runtime, org_id) as db:
        assert await subscriptions.store(db, org_id, sub, runtime.plans, grace_days=3)


def next_month(moment: datetime) -> datetime:
    """The same day and time a month later, the day clamped to the month's last (PostgreSQL's
    ``+ interval '1 month'``)."""
    year, month = moment.year + moment.month // 12, moment.month % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


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
