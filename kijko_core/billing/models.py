"""Billing's wire models (contract §3.6): plans and usage."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, RootModel

from kijko_core.billing.plans import Plan
from kijko_core.wire import WireModel

UsageMetricType = Literal["api_calls", "ingestions", "storage", "seats", "oracle_queries"]


class PlanLimits(WireModel):
    """Per metric, -1 unlimited."""

    api_calls: int
    ingestions: int
    storage_gb: int
    seats: int
    oracle_queries: int


class PlanOut(WireModel):
    """A plan as the frontend's ``PLANS`` constant has it: prices in whole euros per month
    (``annualPrice``: per month when billed annually; ``-1``: custom, contact sales)."""

    id: Literal["free", "pro", "teams", "enterprise"]
    name: str
    price: int
    annual_price: int
    description: str
    features: list[str]
    limits: PlanLimits
    is_popular: bool
    #: Lower-case ISO 4217, as Stripe writes it.
    currency: str

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        monthly, annual = plan.monthly_price_cents, plan.annual_price_cents
        return cls(
            id=plan.id,
            name=plan.name,
            price=-1 if monthly is None else monthly // 100,
            # A plan without annual billing shows its monthly price (free: 0; custom: -1).
            annual_price=(-1 if monthly is None else monthly // 100) if annual is None else annual // 1200,
            description=plan.description,
            features=list(plan.features),
            limits=PlanLimits(
                api_calls=plan.limits["api_calls"],
                ingestions=plan.limits["ingestions"],
                storage_gb=plan.limits["storage"],
                seats=plan.limits["seats"],
                oracle_queries=plan.limits["oracle_queries"],
            ),
            is_popular=plan.popular,
            currency=plan.currency,
        )


class TrendPoint(WireModel):
    date: datetime
    value: int | float


class UsageMetric(WireModel):
    type: UsageMetricType
    #: In the metric's unit (storage in GB, fractional).
    current: int | float
    limit: int
    #: 0–100 (≥ 80 warning, ≥ 100 over); 0 for an unlimited metric.
    percentage: float = Field(ge=0, le=100)
    #: The last 30 days, one point per UTC day with use (counters: that day's; gauges: the day's
    #: last measured value).
    trend: list[TrendPoint]


class PlanList(RootModel[list[PlanOut]]):
    """``GET /billing/plans``: the four plans, free first."""


class UsageList(RootModel[list[UsageMetric]]):
    """``GET /billing/usage``: one UsageMetric per metric, in the contract's order."""
