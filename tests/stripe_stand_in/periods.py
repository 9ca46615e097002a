"""Billing periods and proration arithmetic (integers only: cents and seconds)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any

from tests.stripe_stand_in.forms import StripeError


def shift(anchor: int, months: int) -> int:
    """``anchor`` moved by whole calendar months, the day clamped to the month's last day (as
    Stripe does for a subscription anchored on the 31st)."""
    moment = datetime.fromtimestamp(anchor, UTC)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def interval_months(price: dict[str, Any]) -> int:
    recurring = price["recurring"]
    unit = {"month": 1, "year": 12}.get(recurring["interval"])
    if unit is None:
        raise StripeError(400, "The stand-in bills monthly and yearly prices only.", param="recurring[interval]")
    return unit * int(recurring["interval_count"])


def next_end(anchor: int, after: int, months: int) -> int:
    """The first period boundary (``anchor`` + k intervals) later than ``after``."""
    k = 1
    while (end := shift(anchor, k * months)) <= after:
        k += 1
    return end


def prorate(amount: int, remaining: int, period: int) -> int:
    """``amount`` × ``remaining``/``period`` seconds, rounded half up to a cent (integers only)."""
    sign = -1 if amount < 0 else 1
    return sign * ((abs(amount) * remaining * 2 + period) // (2 * period))


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %Y")
