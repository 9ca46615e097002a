"""Billing without Stripe (contract §2.8, §3.6; docs/billing.md): the plans (public, so the
frontend need not hard-code them) and the organization's usage against its plan."""

from __future__ import annotations

from quart import Blueprint

from kijko_core.billing import service
from kijko_core.billing.models import PlanList, UsageList
from kijko_server.openapi import responds
from kijko_server.responses import validate_response
from kijko_server.security import public
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("billing", __name__, url_prefix="/api/v1/billing")


@bp.get("/plans")
@public
@responds()
@validate_response(PlanList)
async def billing_plans() -> PlanList:
    """The plans with their prices (whole euros per month; ``annualPrice`` per month when billed
    annually; ``-1`` custom) and limits per metric (``-1`` unlimited)."""
    return PlanList(service.plans_list(runtime().plans))


@bp.get("/usage")
@responds(*TENANT_ERRORS)
@validate_response(UsageList)
async def billing_usage() -> UsageList:
    """The organization's use of each metric of its plan: ``current`` (storage in GB), ``limit``
    (``-1`` unlimited), ``percentage`` (0–100) and the daily ``trend`` of the last 30 days.
    Owners and admins (members: 403)."""
    async with tenant(readonly=True) as db:
        return UsageList(await service.usage(db, runtime().plans))
