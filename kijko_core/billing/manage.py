"""Changing the organization's subscription (docs/billing.md "Subscriptions and Checkout",
decision 0163): a plan change, cancelling at the period's end and resuming.

- An **upgrade** — a higher plan, or the same plan billed annually instead of monthly — changes
  the subscription item's Price now, ``proration_behavior: always_invoice``: the difference for
  the rest of the period is invoiced and charged at once (a change of interval starts a new
  period, credited for the unused time). It releases a scheduled downgrade and undoes a
  cancellation first.
- A **downgrade** — a lower plan, or annual to monthly — waits for the period's end: a
  subscription schedule (``from_subscription``) whose phases are the current Price until the
  period's end, then the new one. ``planId`` stays until then; ``scheduledPlanId`` and
  ``scheduledInterval`` say what comes, and ``cancelAtPeriodEnd`` is true (the frontend's
  downgrade semantics: "this plan ends at the period's end").
- ``planId: free`` is a cancellation at the period's end.
- The current plan and interval again: nothing to do, unless a downgrade or cancellation is
  pending — then it is undone (as ``resume``): "keep my plan".

Each write's decision is taken on the subscription as Stripe shows it now (not the mirror), and
each write has an idempotency key naming the change and the state it was decided on, so a
double click does it once. Afterwards Stripe's answer is stored (``sync.refresh_subscription``)
and quotas see the new plan at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kijko_core.billing import subscriptions, sync
from kijko_core.billing.checkout import SubscriptionNotFound, lookup_key, price_id
from kijko_core.billing.customers import billing_session
from kijko_core.billing.plans import INTERVALS, TIERS, Interval, PlanTier
from kijko_core.billing.stripe_api import Stripe, StripeRefused, field, idempotency_key, is_missing, writes
from kijko_core.billing.subscriptions import Subscription
from kijko_core.wire import WireInput

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko


class ChangeSubscription(WireInput):
    """``PATCH /billing/subscription``: the plan and interval wanted."""

    plan_id: PlanTier
    interval: Interval


_STORED = """
SELECT stripe_subscription_id, stripe_status, updated_at FROM kijko.subscriptions WHERE organization_id = $1
"""


class _Live:
    """The organization's live subscription as Stripe shows it now, and what the keys of the
    writes decided on it are made of."""

    def __init__(self, sub: Any, stored_at: datetime) -> None:
        self.sub = sub
        self.item = sub["items"]["data"][0]
        self.schedule = field(sub, "schedule")
        self.stored_at = stored_at

    @property
    def id(self) -> str:
        return str(self.sub["id"])

    @property
    def schedule_id(self) -> str | None:
        schedule = self.schedule
        return schedule if schedule is None or isinstance(schedule, str) else str(schedule["id"])

    def key(self, operation: str, *parts: object) -> str:
        """The idempotency key of ``operation`` decided on this state. The mirror's
        ``updated_at`` changes with every store (each write is followed by one), so the same
        change asked again later (cancel, resume, cancel) is a new write, while requests at once
        (a double click) share the key."""
        state = (
            self.id,
            self.stored_at.isoformat(),
            self.item["id"],
            self.item["price"]["id"],
            self.item["current_period_start"],
            bool(self.sub["cancel_at_period_end"]),
            self.schedule_id,
        )
        return idempotency_key(operation, *state, *parts)


async def _live(kijko: Kijko, account: Stripe, org_id: UUID) -> _Live:
    async with billing_session(kijko, org_id, readonly=True) as db:
        row = await db.fetchrow(_STORED, org_id)
    if row is None or subscriptions.is_ended(row["stripe_status"]):
        raise SubscriptionNotFound()
    try:
        sub = await account.call(
            account.v1.subscriptions.retrieve_async(row["stripe_subscription_id"], {"expand": ["schedule"]})
        )
    except StripeRefused as exc:
        if is_missing(exc):
            raise SubscriptionNotFound() from None
        raise
    account.check_livemode(sub)
    if subscriptions.is_ended(sub.status):  # the mirror had not heard yet: store it
        await sync.refresh_subscription(kijko, account, org_id, sub.id)
        raise SubscriptionNotFound()
    return _Live(sub, row["updated_at"])


async def _refreshed(kijko: Kijko, account: Stripe, org_id: UUID, sub_id: str) -> Subscription | None:
    await sync.refresh_subscription(kijko, account, org_id, sub_id)
    async with billing_session(kijko, org_id, readonly=True) as db:
        return await subscriptions.current(db, org_id)


async def _release(account: Stripe, live: _Live) -> None:
    """Drop the subscription's schedule (a pending downgrade): it goes on with its items."""
    schedule_id = live.schedule_id
    if schedule_id is None:
        return
    await account.call(
        account.v1.subscription_schedules.release_async(
            schedule_id, options=writes(live.key("schedule-release", schedule_id))
        ),
    )


async def _update(account: Stripe, live: _Live, operation: str, params: dict[str, Any], *parts: object) -> None:
    await account.call(account.v1.subscriptions.update_async(live.id, params, writes(live.key(operation, *parts))))


async def _keep(account: Stripe, live: _Live) -> None:
    """Undo what is pending: a scheduled downgrade and a cancellation at the period's end."""
    await _release(account, live)
    if live.sub["cancel_at_period_end"]:
        await _update(account, live, "subscription-resume", {"cancel_at_period_end": False})


def _rank(plan_id: str, interval: str) -> tuple[int, int]:
    return TIERS.index(plan_id), INTERVALS.index(interval)  # type: ignore[arg-type]


async def change_plan(kijko: Kijko, account: Stripe, org_id: UUID, plan_id: str, interval: str) -> Subscription | None:
    """Move the subscription to ``plan_id``/``interval`` (see the module for the semantics)."""
    if plan_id == "free":
        return await cancel(kijko, account, org_id)
    key = lookup_key(kijko.plans, plan_id, interval)  # 422 before anything is asked of Stripe
    live = await _live(kijko, account, org_id)
    current = subscriptions.plan_of_price(kijko.plans, field(live.item["price"], "lookup_key"))
    scheduled = await sync.scheduled_change(account, live.sub, kijko)
    target: tuple[PlanTier, Interval] = (plan_id, interval)  # type: ignore[assignment]
    if target == current:
        await _keep(account, live)
    elif _rank(*target) > _rank(*current):
        price = await price_id(account, key)
        await _release(account, live)
        params: dict[str, Any] = {
            "items": [{"id": live.item["id"], "price": price}],
            "proration_behavior": "always_invoice",
        }
        if live.sub["cancel_at_period_end"]:
            params["cancel_at_period_end"] = False
        await _update(account, live, "subscription-upgrade", params, price)
    elif target != scheduled or live.sub["cancel_at_period_end"]:
        price = await price_id(account, key)
        await _downgrade_at_period_end(account, live, price, interval)
    return await _refreshed(kijko, account, org_id, live.id)


async def _downgrade_at_period_end(account: Stripe, live: _Live, price: str, interval: str) -> None:
    if live.sub["cancel_at_period_end"]:  # a schedule replaces the cancellation
        await _update(account, live, "subscription-resume", {"cancel_at_period_end": False})
    schedule = live.schedule
    if schedule is None:
        schedule = await account.call(
            account.v1.subscription_schedules.create_async(
                {"from_subscription": live.id}, writes(live.key("schedule-create"))
            ),
        )
    elif isinstance(schedule, str):
        schedule = await account.call(account.v1.subscription_schedules.retrieve_async(schedule))
    start = schedule["current_phase"]["start_date"]
    end = live.item["current_period_end"]
    phases = [
        {
            "items": [{"price": live.item["price"]["id"], "quantity": live.item["quantity"]}],
            "start_date": start,
            "end_date": end,
            "proration_behavior": "none",
        },
        {
            "items": [{"price": price, "quantity": live.item["quantity"]}],
            "duration": {"interval": "year" if interval == "annually" else "month", "interval_count": 1},
            "proration_behavior": "none",
        },
    ]
    await account.call(
        account.v1.subscription_schedules.update_async(
            schedule["id"],
            {"phases": phases, "end_behavior": "release"},
            writes(live.key("schedule-phases", schedule["id"], price, end)),
        ),
    )


async def cancel(kijko: Kijko, account: Stripe, org_id: UUID) -> Subscription | None:
    """Cancel at the period's end (``cancel_at_period_end``); a scheduled downgrade is dropped:
    the subscription ends instead."""
    live = await _live(kijko, account, org_id)
    await _release(account, live)
    if not live.sub["cancel_at_period_end"]:
        await _update(account, live, "subscription-cancel", {"cancel_at_period_end": True})
    return await _refreshed(kijko, account, org_id, live.id)


async def resume(kijko: Kijko, account: Stripe, org_id: UUID) -> Subscription | None:
    """Undo a cancellation at the period's end, and a scheduled downgrade: the subscription goes
    on as it is now."""
    live = await _live(kijko, account, org_id)
    await _keep(account, live)
    return await _refreshed(kijko, account, org_id, live.id)
