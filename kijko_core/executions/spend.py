"""The monthly LLM spend cap per organization on the platform's keys (decision 0109,
docs/executions.md#spend-cap).

- The cap: :func:`spend_cap_for` — the lower of ``KIJKO_LLM_MONTHLY_SPEND_CAP`` and the
  organization's plan's ``llm_monthly_spend_cap`` (:func:`plan_cap`, decision 0152), in
  ``KIJKO_LLM_SPEND_CAP_CURRENCY`` (neither set: no cap). :func:`use_cap_source` replaces it.
- The period: the calendar month in UTC of the database clock.
- What counts: this month's ``kijko.llm_usage`` rows paid with the platform's key
  (``key_source = 'platform'``) in the cap's currency — executions and tests alike.
  Organizations' own keys are metered (their rows say ``organization``), never capped.
- Only a skill type that calls a priced model (``uses_model``) is capped, and not when the
  organization has its own key for that model's provider: such a run will not use the
  platform's key (the key is resolved at run time the same way, kijko_core/llm/keys.py).
- An execution that would *start* over the cap is refused: the API answers 429
  ``SPEND_CAP_REACHED`` with ``Retry-After`` = seconds to the end of the month; habits and
  reflexes get the execution recorded ``failed`` with that code (the worker checks again when
  it admits the run, so a run queued before the cap was reached fails the same way).
- Owners are mailed once when the month's spend reaches 80 % and once at 100 %
  (``kijko.llm_spend_alerts``, migration 0018: one row per organization, month and threshold,
  so two workers never mail twice).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kijko_core import mail
from kijko_core.billing import plans, subscriptions
from kijko_core.config import Settings
from kijko_core.db.session import Session
from kijko_core.errors import RateLimited
from kijko_core.logging import get_logger
from kijko_core.plugins import PluginError
from kijko_core.plugins import registry as plugin_registry

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

log = get_logger("kijko.executions")

SPEND_CAP_REACHED = "SPEND_CAP_REACHED"
#: The thresholds (percent of the cap) at which owners are mailed, once each per month.
THRESHOLDS = (80, 100)


class SpendCapReached(RateLimited):
    code = "SPEND_CAP_REACHED"
    default_message = "The organization has reached its monthly spend cap for the platform's LLM keys"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)


#: Where the cap comes from: ``(db, settings, organization id) → amount or None (no cap)``.
CapSource = Callable[[Session, Settings, UUID], Awaitable[Decimal | None]]


async def settings_cap(db: Session, settings: Settings, org_id: UUID) -> Decimal | None:
    """The configured cap, the same for every organization (0 or unset: none)."""
    cap = settings.llm_monthly_spend_cap
    return cap if cap is not None and cap > 0 else None


async def plan_cap(db: Session, settings: Settings, org_id: UUID) -> Decimal | None:
    """The lower of the configured cap and the organization's plan's ``llm_monthly_spend_cap``
    (decision 0152): the setting stays an operator's ceiling for every organization, the plan
    caps what its price pays for. Neither set: no cap."""
    plan = await subscriptions.plan_for(db, plans.plans_of(settings), org_id)
    caps = [cap for cap in (await settings_cap(db, settings, org_id), plan.llm_monthly_spend_cap) if cap]
    return min(caps) if caps else None


_cap_source: CapSource = plan_cap


def use_cap_source(source: CapSource) -> CapSource:
    """Replace where caps come from (billing's per-plan caps); returns the previous source."""
    global _cap_source
    previous, _cap_source = _cap_source, source
    return previous


async def spend_cap_for(db: Session, settings: Settings, org_id: UUID) -> Decimal | None:
    """The organization's monthly cap in ``settings.llm_spend_cap_currency``; None: no cap."""
    return await _cap_source(db, settings, org_id)


@dataclass(frozen=True, slots=True)
class MonthSpend:
    spent: Decimal
    #: Seconds from now (database clock) to the end of the month, UTC.
    seconds_left: float
    #: The month's first day (UTC), the alert rows' period.
    period: Any


# The month in UTC of the database clock: [first instant, first instant of the next).
_MONTH_SPEND = """
WITH month AS (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AS start)
SELECT coalesce((SELECT sum(u.cost) FROM kijko.llm_usage u
                 WHERE u.organization_id = $1 AND u.key_source = 'platform' AND u.currency = $2
                   AND u.created_at >= (SELECT start FROM month) AT TIME ZONE 'UTC'), 0) AS spent,
       extract(epoch FROM ((SELECT start FROM month) + interval '1 month') AT TIME ZONE 'UTC' - now())::float8
           AS seconds_left,
       (SELECT start FROM month)::date AS period
"""


async def month_spend(db: Session, org_id: UUID, currency: str) -> MonthSpend:
    row = await db.fetchrow(_MONTH_SPEND, org_id, currency)
    assert row is not None
    return MonthSpend(Decimal(row["spent"]), float(row["seconds_left"]), row["period"])


_OWN_KEY = "SELECT EXISTS (SELECT 1 FROM kijko.llm_keys WHERE organization_id = $1 AND provider = $2)"


async def has_own_key(db: Session, org_id: UUID, provider: str) -> bool:
    """Whether the organization stored its own key for ``provider`` (migration 0017)."""
    return bool(await db.fetchval(_OWN_KEY, org_id, provider))


async def capped_provider(db: Session, kijko: Kijko, org_id: UUID, snapshot: Mapping[str, Any]) -> str | None:
    """The provider whose platform key this snapshot would spend, or None when the cap does not
    apply to it (a type without a model, an unpriced model, the organization's own key)."""
    try:
        skill_type = plugin_registry.skill_type(str(snapshot.get("skillType", "llm")))
    except PluginError:
        return None  # the run fails on its own (type not installed)
    if not skill_type.uses_model:
        return None
    price = kijko.prices.get(str(snapshot.get("model", "")))
    if price is None:
        return None
    if await has_own_key(db, org_id, price.provider):
        return None
    return price.provider


async def refusal(db: Session, kijko: Kijko, org_id: UUID, snapshot: Mapping[str, Any]) -> SpendCapReached | None:
    """:class:`SpendCapReached` if this snapshot would start over the organization's cap."""
    cap = await spend_cap_for(db, kijko.settings, org_id)
    if cap is None:
        return None
    if await capped_provider(db, kijko, org_id, snapshot) is None:
        return None
    month = await month_spend(db, org_id, kijko.settings.llm_spend_cap_currency)
    if month.spent < cap:
        return None
    return SpendCapReached(max(1, math.ceil(month.seconds_left)))


_RECORD_ALERT = """
INSERT INTO kijko.llm_spend_alerts (organization_id, period, threshold) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING RETURNING threshold
"""


async def alert_owners(db: Session, kijko: Kijko, org_id: UUID) -> int | None:
    """After platform usage was recorded (in the same transaction): mail the owners if the
    month's spend crossed a threshold not yet mailed this month. Returns the threshold mailed."""
    cap = await spend_cap_for(db, kijko.settings, org_id)
    if cap is None:
        return None
    currency = kijko.settings.llm_spend_cap_currency
    month = await month_spend(db, org_id, currency)
    reached = [t for t in THRESHOLDS if month.spent * 100 >= cap * t]
    if not reached:
        return None
    # Every threshold reached is recorded; only the highest new one is mailed (a jump from
    # 70 % to 120 % sends the 100 % mail alone).
    new = [t for t in reached if await db.fetchval(_RECORD_ALERT, org_id, month.period, t) is not None]
    if not new:
        return None
    threshold = max(new)
    values = {
        "percent": str(threshold),
        "spent": f"{month.spent.quantize(Decimal('0.01'))}",
        "cap": f"{cap.quantize(Decimal('0.01'))}",
        "currency": currency.upper(),
        "month": month.period.strftime("%B %Y"),
    }
    template = "spend_cap_reached" if threshold >= 100 else "spend_cap_warning"
    await mail.send_to_owners(db, template=template, values=values, org_id=org_id)
    log.info("spend_alert", threshold=threshold)
    return threshold
