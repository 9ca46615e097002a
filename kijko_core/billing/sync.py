"""Bringing Kijko's mirror up to Stripe's state (docs/billing.md, decision 0162): the one way a
subscription is stored — re-read from Stripe *now*, with its latest invoice's payments and its
schedule — used by the checkout return page, the subscription routes and the webhook job alike.
Re-reading instead of trusting an event's copy is what makes replayed and out-of-order events
converge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from kijko_core.billing import subscriptions
from kijko_core.billing.customers import billing_session
from kijko_core.billing.plans import Interval, PlanTier
from kijko_core.billing.stripe_api import Stripe, field
from kijko_core.db.session import system_session

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

#: What a subscription is read with: its latest invoice's payments (is a SEPA debit
#: processing?) and its schedule (a plan change waiting for the period's end).
EXPAND = ["latest_invoice.payments", "schedule"]

# Including customers Stripe deleted: a subscription's late event after its customer.deleted
# still stores Stripe's last state of it.
_ORGANIZATION_OF = "SELECT organization_id FROM kijko.billing_customers WHERE stripe_customer_id = $1"


async def organization_of(kijko: Kijko, customer_id: str | None) -> UUID | None:
    """The organization whose Stripe customer ``customer_id`` is or was (a cross-tenant lookup,
    on the system role), or None: not one of ours."""
    if not customer_id:
        return None
    async with system_session(kijko.system_db, readonly=True) as db:
        org_id = await db.fetchval(_ORGANIZATION_OF, customer_id)
    return None if org_id is None else UUID(str(org_id))


async def first_payment_processing(account: Stripe, sub: Any) -> bool:
    """The latest invoice's payment is a debit the bank has not answered yet (SEPA). (Its
    payment intent is one level deeper than Stripe expands, so an open payment's is read.)"""
    for payment in field(sub, "latest_invoice", "payments", "data") or []:
        intent = field(payment, "payment", "payment_intent")
        if field(payment, "status") != "open" or intent is None:
            continue
        if isinstance(intent, str):
            intent = await account.call(account.v1.payment_intents.retrieve_async(intent))
        if field(intent, "status") == "processing":
            return True
    return False


async def scheduled_change(account: Stripe, sub: Any, kijko: Kijko) -> tuple[PlanTier, Interval] | None:
    """The plan and interval the subscription's schedule moves it to at the period's end."""
    schedule = field(sub, "schedule")
    if schedule is None or isinstance(schedule, str) or field(schedule, "status") not in ("active", "not_started"):
        return None
    current_end = field(schedule, "current_phase", "end_date")
    upcoming = [
        phase for phase in field(schedule, "phases") or [] if current_end and phase["start_date"] >= current_end
    ]
    if not upcoming:
        return None
    price = upcoming[0]["items"][0]["price"]
    if isinstance(price, str):
        price = await account.call(account.v1.prices.retrieve_async(price))
    plan_id, interval = subscriptions.plan_of_price(kijko.plans, field(price, "lookup_key"))
    return plan_id, interval


async def refresh_subscription(
    kijko: Kijko, account: Stripe, org_id: UUID, subscription_id: str, *, created_by: UUID | None = None
) -> bool:
    """Read subscription ``subscription_id`` from Stripe and store it as ``org_id``'s. Returns
    False when the organization already holds a newer subscription (nothing stored)."""
    sub = await account.call(account.v1.subscriptions.retrieve_async(subscription_id, {"expand": EXPAND}))
    account.check_livemode(sub)
    scheduled = await scheduled_change(account, sub, kijko)
    processing = await first_payment_processing(account, sub)
    async with billing_session(kijko, org_id) as db:
        return await subscriptions.store(
            db,
            org_id,
            sub,
            kijko.plans,
            grace_days=kijko.settings.billing_grace_days,
            payment_processing=processing,
            scheduled=scheduled,
            created_by=created_by,
        )
