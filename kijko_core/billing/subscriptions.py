"""The organization's subscription as Kijko mirrors it from Stripe (docs/billing.md, decision
0162): storing what Stripe says (:func:`store`), the contract's Subscription (:func:`current`),
and the plan an organization is entitled to (:func:`plan_for`).

Stripe is the source of truth. :func:`store` is given a subscription as Stripe shows it *now*
(re-read, or an event's object not older than the stored one), so whatever order events
arrive in, the row converges to Stripe's state. Only service sessions write here (migration
0025): a request stores Stripe's answer in a service session of its organization.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from kijko_core.billing.plans import Interval, Plan, Plans, PlanTier
from kijko_core.billing.stripe_api import field, object_id
from kijko_core.db.session import Session
from kijko_core.wire import WireModel

SubscriptionStatus = Literal["active", "canceled", "past_due", "trialing", "incomplete"]

#: Stripe's eight statuses as the contract's five (docs/billing.md "Status mapping").
STATUS_MAP: Mapping[str, SubscriptionStatus] = {
    "active": "active",
    "trialing": "trialing",
    "past_due": "past_due",
    # Stripe stopped retrying and leaves the invoice open: still owed, as past_due.
    "unpaid": "past_due",
    "incomplete": "incomplete",
    # The first payment never came within 23 hours: the subscription is over before it began.
    "incomplete_expired": "canceled",
    "canceled": "canceled",
    # A trial ended without a payment method: waiting for one, like a first payment.
    "paused": "incomplete",
}
#: Stripe statuses whose subscription is over: a newer subscription replaces its row.
ENDED = frozenset({"canceled", "incomplete_expired"})


class Subscription(WireModel):
    """The contract's Subscription (§3.6)."""

    id: UUID
    #: Who started it (checkout); null once that user is erased.
    user_id: UUID | None
    plan_id: PlanTier
    status: SubscriptionStatus
    billing_interval: Interval
    stripe_subscription_id: str
    current_period_start: datetime
    current_period_end: datetime
    #: True when the subscription ends at the period's end (cancelled), or — for a downgrade
    #: waiting for the period's end — when ``planId`` changes then to ``scheduledPlanId``.
    cancel_at_period_end: bool
    trial_end: datetime | None
    #: A plan change waiting for the period's end (a downgrade), else null.
    scheduled_plan_id: PlanTier | None
    scheduled_interval: Interval | None
    created_at: datetime
    updated_at: datetime


_CURRENT = """
SELECT id, created_by, plan_id, stripe_status, billing_interval, stripe_subscription_id,
       current_period_start, current_period_end, cancel_at_period_end, trial_end,
       scheduled_plan_id, scheduled_interval, created_at, updated_at
FROM kijko.subscriptions WHERE organization_id = $1
"""


async def current(db: Session, org_id: UUID) -> Subscription | None:
    """The organization's subscription, or None (the frontend shows the free plan). An ended
    subscription (canceled) is still shown until a new one replaces it."""
    row = await db.fetchrow(_CURRENT, org_id)
    if row is None:
        return None
    return Subscription(
        id=row["id"],
        user_id=row["created_by"],
        plan_id=row["plan_id"],
        status=STATUS_MAP[row["stripe_status"]],
        billing_interval=row["billing_interval"],
        stripe_subscription_id=row["stripe_subscription_id"],
        current_period_start=row["current_period_start"],
        current_period_end=row["current_period_end"],
        cancel_at_period_end=row["cancel_at_period_end"] or row["scheduled_plan_id"] is not None,
        trial_end=row["trial_end"],
        scheduled_plan_id=row["scheduled_plan_id"],
        scheduled_interval=row["scheduled_interval"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- the plan an organization is entitled to ----------------------------------------------------

# A subscription grants its plan while it is active or trialing, while its first payment (a SEPA
# debit) is processing, and while a failed payment is within its grace period.
# (The quota engine reads the subscription's period with the same condition, quotas.py.)
ENTITLED_WHERE = """(stripe_status IN ('active', 'trialing')
       OR (stripe_status = 'incomplete' AND payment_processing)
       OR (stripe_status IN ('past_due', 'unpaid') AND (grace_until IS NULL OR grace_until > now())))"""
_ENTITLED = f"SELECT plan_id FROM kijko.subscriptions WHERE organization_id = $1 AND {ENTITLED_WHERE}"  # noqa: S608


async def plan_for(db: Session, plans: Plans, org_id: UUID) -> Plan:
    """The plan whose limits apply to ``org_id`` now: its subscription's while that grants one,
    else ``KIJKO_DEFAULT_PLAN`` (free when billing is on; without Stripe there are no rows)."""
    plan_id = await db.fetchval(_ENTITLED, org_id)
    return plans.default if plan_id is None else plans.get(plan_id)


# --- storing what Stripe says -------------------------------------------------------------------


class UnknownPrice(ValueError):
    """A subscription whose price's lookup_key is none of the plans file's."""


def plan_of_price(plans: Plans, lookup_key: str | None) -> tuple[PlanTier, Interval]:
    for plan in plans:
        for interval, key in plan.lookup_keys.items():
            if key == lookup_key:
                return plan.id, interval  # type: ignore[return-value]
    raise UnknownPrice(f"no plan has the Stripe price lookup_key {lookup_key!r}")


def _at(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def mirror(sub: Any, plans: Plans) -> dict[str, Any]:
    """The row's columns from a Stripe subscription of API version ``API_VERSION`` (its period
    is on its item; a schedule's next phase is not read here, see ``store``'s ``scheduled``)."""
    items = field(field(sub, "items"), "data") or []
    if not items:
        raise UnknownPrice("a subscription without items")
    item = items[0]
    price = field(item, "price")
    plan_id, interval = plan_of_price(plans, field(price, "lookup_key"))
    return {
        "stripe_subscription_id": field(sub, "id"),
        "stripe_customer_id": object_id(field(sub, "customer")),
        "plan_id": plan_id,
        "billing_interval": interval,
        "stripe_status": field(sub, "status"),
        "current_period_start": _at(field(item, "current_period_start")),
        "current_period_end": _at(field(item, "current_period_end")),
        "cancel_at_period_end": bool(field(sub, "cancel_at_period_end")),
        "trial_end": _at(field(sub, "trial_end")),
        "stripe_schedule_id": object_id(field(sub, "schedule")),
        "stripe_created": _at(field(sub, "created")),
    }


_STORE = """
INSERT INTO kijko.subscriptions AS s (
    organization_id, stripe_subscription_id, stripe_customer_id, plan_id, billing_interval, stripe_status,
    current_period_start, current_period_end, cancel_at_period_end, trial_end, stripe_schedule_id,
    stripe_created, payment_processing, payment_failed_at, grace_until, scheduled_plan_id, scheduled_interval,
    created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (organization_id) DO UPDATE SET
    stripe_subscription_id = EXCLUDED.stripe_subscription_id,
    stripe_customer_id = EXCLUDED.stripe_customer_id,
    plan_id = EXCLUDED.plan_id,
    billing_interval = EXCLUDED.billing_interval,
    stripe_status = EXCLUDED.stripe_status,
    current_period_start = EXCLUDED.current_period_start,
    current_period_end = EXCLUDED.current_period_end,
    cancel_at_period_end = EXCLUDED.cancel_at_period_end,
    trial_end = EXCLUDED.trial_end,
    stripe_schedule_id = EXCLUDED.stripe_schedule_id,
    stripe_created = EXCLUDED.stripe_created,
    payment_processing = EXCLUDED.payment_processing,
    -- A failure's start stays while the subscription stays unpaid (the grace period does not
    -- restart with each retry's event); it clears once payments are fine.
    payment_failed_at = CASE WHEN EXCLUDED.payment_failed_at IS NULL THEN NULL
                             ELSE coalesce(s.payment_failed_at, EXCLUDED.payment_failed_at) END,
    grace_until = CASE WHEN EXCLUDED.grace_until IS NULL THEN NULL
                       ELSE coalesce(s.grace_until, EXCLUDED.grace_until) END,
    scheduled_plan_id = EXCLUDED.scheduled_plan_id,
    scheduled_interval = EXCLUDED.scheduled_interval,
    created_by = CASE WHEN s.stripe_subscription_id = EXCLUDED.stripe_subscription_id
                      THEN s.created_by ELSE EXCLUDED.created_by END,
    id = CASE WHEN s.stripe_subscription_id = EXCLUDED.stripe_subscription_id THEN s.id ELSE gen_random_uuid() END,
    created_at = CASE WHEN s.stripe_subscription_id = EXCLUDED.stripe_subscription_id
                      THEN s.created_at ELSE now() END,
    updated_at = now()
-- Order-independence: the same subscription always takes the newer state (the caller read it
-- from Stripe now); another subscription replaces the row only if it is newer or the stored one
-- has ended — an old subscription's late event never overwrites the current one.
WHERE s.stripe_subscription_id = EXCLUDED.stripe_subscription_id
   OR s.stripe_status IN ('canceled', 'incomplete_expired')
   OR EXCLUDED.stripe_created > s.stripe_created
RETURNING plan_id
"""


async def store(
    db: Session,
    org_id: UUID,
    sub: Any,
    plans: Plans,
    *,
    grace_days: int,
    payment_processing: bool = False,
    scheduled: tuple[PlanTier, Interval] | None = None,
    created_by: UUID | None = None,
) -> bool:
    """Store Stripe's subscription ``sub`` (as Stripe shows it now) as ``org_id``'s in ``db``
    (a service session). ``payment_processing``: its latest invoice's payment is a SEPA debit
    still processing; ``scheduled``: the plan and interval a schedule moves it to at the
    period's end. Returns False when the row holds a newer subscription and ``sub`` was not
    stored."""
    columns = mirror(sub, plans)
    failing = columns["stripe_status"] in ("past_due", "unpaid")
    now = datetime.now(UTC)
    stored = await db.fetchval(
        _STORE,
        org_id,
        columns["stripe_subscription_id"],
        columns["stripe_customer_id"],
        columns["plan_id"],
        columns["billing_interval"],
        columns["stripe_status"],
        columns["current_period_start"],
        columns["current_period_end"],
        columns["cancel_at_period_end"],
        columns["trial_end"],
        columns["stripe_schedule_id"],
        columns["stripe_created"],
        payment_processing,
        now if failing else None,
        now + timedelta(days=grace_days) if failing else None,
        None if scheduled is None else scheduled[0],
        None if scheduled is None else scheduled[1],
        created_by,
    )
    return stored is not None


def is_ended(stripe_status: str) -> bool:
    return stripe_status in ENDED
