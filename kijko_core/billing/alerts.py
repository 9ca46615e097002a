"""The owners' mails at 80 % and 100 % of a quota, once per period (docs/billing.md#mails).

A consumption that crosses a threshold (or a gauge measured at one) queues ``billing.usage_alert``
in its transaction; this job, in a service session of the organization, measures the metric
again, records each threshold reached in ``kijko.usage_alerts`` (migration 0023: one row per
organization, metric, period and threshold — only a service session may insert one, so a
member cannot suppress the mail) and mails the owners the highest new one. Two jobs for one
crossing insert one row; the other sends nothing.
"""

from __future__ import annotations

from kijko_core import mail
from kijko_core.billing import quotas
from kijko_core.billing.subscriptions import plan_for
from kijko_core.jobs import JobContext, job_kind
from kijko_core.logging import get_logger

log = get_logger("kijko.billing")

_MONTH = "SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date"
_USED = "SELECT used FROM kijko.usage_counters WHERE organization_id = $1 AND metric = $2 AND period_start = $3"
_RECORD = """
INSERT INTO kijko.usage_alerts (organization_id, metric, period_start, threshold) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING RETURNING threshold
"""


@job_kind(quotas.ALERT_JOB, max_attempts=3, lease_seconds=30, timeout_seconds=60)
async def usage_alert(ctx: JobContext) -> None:
    assert ctx.org_id is not None
    metric = str(ctx.payload["metric"])
    if metric not in quotas.METRIC_NAMES:
        return
    org_id = ctx.org_id
    async with ctx.service_session() as db:
        if metric in quotas.COUNTERS:  # once per counter's period (the billing period or the day)
            counted = await quotas.entitlement(db, ctx.kijko.plans, org_id, metric)
            plan, period = counted.plan, counted.period_start
        else:  # a gauge: once per UTC month
            plan, period = await plan_for(db, ctx.kijko.plans, org_id), await db.fetchval(_MONTH)
        limit = plan.limit(metric)
        if limit <= 0:
            return
        if metric == "storage":
            value = await quotas.storage_bytes(db, org_id)
        elif metric == "seats":
            value, _ = await quotas.seats(db, org_id)
        else:
            value = int(await db.fetchval(_USED, org_id, metric, period) or 0)
        reached = [t for t in quotas.THRESHOLDS if value * 100 >= limit * t]
        new = [t for t in reached if await db.fetchval(_RECORD, org_id, metric, period, t) is not None]
        if not new:
            return
        threshold = max(new)  # a jump past both sends the 100 % mail alone
        values = {
            "percent": str(threshold),
            "metric": quotas.METRIC_NAMES[metric],
            "current": str(quotas.as_wire_number(metric, value)),
            "limit": str(plan.limits[metric]),
            "plan": plan.name,
        }
        template = "quota_reached" if threshold >= 100 else "quota_warning"
        await mail.send_to_owners(db, template=template, values=values, org_id=org_id)
    log.info("quota_alert", metric=metric, threshold=threshold)
