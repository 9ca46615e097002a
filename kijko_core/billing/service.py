"""Billing's read side without Stripe (docs/billing.md): the plans, and the organization's
usage against its plan. Owners and admins view usage (ARCHITECTURE §3); members get 403."""

from __future__ import annotations

from datetime import UTC, datetime, time

from kijko_core.billing import quotas
from kijko_core.billing.models import PlanOut, TrendPoint, UsageMetric
from kijko_core.billing.plans import METRICS, UNLIMITED, Plans
from kijko_core.db.session import TenantSession
from kijko_core.errors import Forbidden
from kijko_core.permissions import Action, allowed

TREND_DAYS = 30

# $2: the billing period's key (the quota engine's, decision 0167).
_COUNTERS = """
SELECT metric, used FROM kijko.usage_counters
WHERE organization_id = $1
  AND ((metric = 'oracle_queries' AND period_start = (now() AT TIME ZONE 'UTC')::date)
    OR (metric <> 'oracle_queries' AND period_start = $2::date))
"""
# Earlier days from the rollup; each counter row's current day from the row itself.
_TREND = """
SELECT metric, day, sum(value)::bigint AS value FROM (
    SELECT metric, day, value FROM kijko.usage_daily
    WHERE organization_id = $1 AND day > (now() AT TIME ZONE 'UTC')::date - $2::int
    UNION ALL
    SELECT metric, day, day_used FROM kijko.usage_counters
    WHERE organization_id = $1 AND day > (now() AT TIME ZONE 'UTC')::date - $2::int AND day_used > 0
) AS days
GROUP BY metric, day
ORDER BY metric, day
"""
_TODAY = "SELECT (now() AT TIME ZONE 'UTC')::date"


def plans_list(plans: Plans) -> list[PlanOut]:
    return [PlanOut.of(plan) for plan in plans]


async def usage(db: TenantSession, plans: Plans) -> list[UsageMetric]:
    """The five metrics: this period's use (gauges as they are now), the plan's limit, the
    percentage used and the daily trend of the last 30 days."""
    if not allowed(db.principal, Action.VIEW_BILLING):
        raise Forbidden("Only owners and admins view the organization's usage")
    org_id = db.principal.org_id
    billing = await quotas.entitlement(db, plans, org_id, "api_calls")  # the plan and the billing period
    plan = billing.plan
    current: dict[str, int] = {
        row["metric"]: int(row["used"]) for row in await db.fetch(_COUNTERS, org_id, billing.period_start)
    }
    current["storage"] = await quotas.storage_bytes(db, org_id)
    current["seats"], _ = await quotas.seats(db, org_id)
    today = await db.fetchval(_TODAY)
    trends: dict[str, dict[object, int]] = {metric: {} for metric in METRICS}
    for row in await db.fetch(_TREND, org_id, TREND_DAYS):
        trends[row["metric"]][row["day"]] = int(row["value"])
    for gauge in quotas.GAUGES:
        trends[gauge][today] = current[gauge]  # a gauge's point of today is what it is now
    metrics = []
    for metric in METRICS:
        value = current.get(metric, 0)
        limit = plan.limits[metric]
        in_unit = quotas.as_wire_number(metric, value)
        if limit == UNLIMITED:
            percentage = 0.0
        elif limit == 0:
            percentage = 100.0 if value > 0 else 0.0
        else:
            percentage = min(100.0, round(float(in_unit) * 100 / limit, 1))
        metrics.append(
            UsageMetric(
                type=metric,  # type: ignore[arg-type]
                current=in_unit,
                limit=limit,
                percentage=percentage,
                trend=[
                    TrendPoint(date=datetime.combine(day, time(), UTC), value=quotas.as_wire_number(metric, v))  # type: ignore[arg-type]
                    for day, v in sorted(trends[metric].items())  # type: ignore[type-var]
                ],
            )
        )
    return metrics
