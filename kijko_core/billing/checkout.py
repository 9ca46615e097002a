"""Subscribing through Stripe Checkout (docs/billing.md "Subscriptions and Checkout", decision
0163): starting a Checkout session for a plan, and the return page's sync from the session.

One organization has at most one live subscription. Three guards, each for a different race:

- before a session is made, the mirror *and Stripe* are asked whether the organization already
  has a live subscription (409 ``SUBSCRIPTION_EXISTS``: change it with PATCH);
- a double click gets one session: an open session of the same plan and interval is reused, and
  a new one is made with an idempotency key naming the organization, the plan, the interval and
  the newest earlier session of that plan (so two requests at once send the same key and Stripe
  answers both with one session); making a session expires the organization's other open ones,
  so only the latest choice can be paid;
- should two sessions be completed all the same (two tabs racing past the guards), the sync
  keeps the oldest live subscription and cancels the newer ones at once
  (:func:`keep_one_subscription`).

No database transaction is open while Stripe is asked; Stripe's answers are stored with
:func:`kijko_core.billing.sync.refresh_subscription`.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from pydantic import RootModel

from kijko_core.billing import subscriptions, sync
from kijko_core.billing.customers import billing_session, ensure_customer, stored_customer
from kijko_core.billing.plans import Interval, Plans, PlanTier
from kijko_core.billing.stripe_api import Stripe, StripeRefused, field, idempotency_key, is_missing, object_id, writes
from kijko_core.billing.subscriptions import Subscription
from kijko_core.errors import Conflict, NotFound, UpstreamError, ValidationFailed
from kijko_core.logging import get_logger
from kijko_core.wire import WireInput, WireModel

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

log = get_logger("kijko.billing")
T = TypeVar("T")

#: What Checkout offers: card, iDEAL (whose first payment leaves a SEPA Direct Debit mandate
#: that Stripe charges for the renewals) and SEPA Direct Debit itself.
PAYMENT_METHOD_TYPES = ["card", "ideal", "sepa_debit"]
#: An open session this close to its expiry is not handed out again: a new one is made.
_REUSE_MARGIN_SECONDS = 15 * 60
#: A Checkout Session id as Stripe makes them; anything else is the same 404 as an unknown one.
SESSION_ID = re.compile(r"cs_(test|live)_[A-Za-z0-9]{1,200}")


class SubscriptionExists(Conflict):
    code = "SUBSCRIPTION_EXISTS"
    default_message = "The organization already has a subscription; change its plan with PATCH /billing/subscription"


class CheckoutSessionNotFound(NotFound):
    code = "CHECKOUT_SESSION_NOT_FOUND"
    default_message = "Checkout session not found"


class SubscriptionNotFound(NotFound):
    code = "SUBSCRIPTION_NOT_FOUND"
    default_message = "The organization has no subscription; start one with POST /billing/checkout"


class StartCheckout(WireInput):
    """``POST /billing/checkout``: the plan and interval to subscribe to."""

    plan_id: PlanTier
    interval: Interval


class CheckoutStarted(WireModel):
    """Where to send the customer (Stripe's hosted page) and the session's id."""

    checkout_url: str
    session_id: str


class SubscriptionOrNone(RootModel[Subscription | None]):
    """The organization's subscription, or ``null`` (none: the free plan)."""


def lookup_key(plans: Plans, plan_id: str, interval: str) -> str:
    """The Stripe Price lookup_key of a plan sold online, or 422: on ``planId`` for a plan
    without prices (free, enterprise), on ``interval`` for an interval it is not sold in."""
    plan = plans.get(plan_id)
    if not plan.lookup_keys:
        raise ValidationFailed(f"The {plan.name} plan cannot be subscribed to online", field="planId")
    key = plan.lookup_keys.get(interval)
    if key is None:
        raise ValidationFailed(f"The {plan.name} plan is not sold {interval}", field="interval")
    return key


async def price_id(account: Stripe, key: str) -> str:
    """The id of the active Price with ``key``. Looked up each time (one read): ``kijko billing
    sync`` may move a lookup_key to a new Price, the key is the stable name."""
    found = await account.call(account.v1.prices.list_async({"lookup_keys": [key], "active": True, "limit": 1}))
    if not found.data:
        raise UpstreamError(f"The payment provider has no active price with lookup_key {key}")
    return str(found.data[0].id)


async def live_subscriptions(account: Stripe, customer_id: str) -> list[Any]:
    """The customer's subscriptions that have not ended, oldest first."""
    found = await account.call(
        account.v1.subscriptions.list_async({"customer": customer_id, "status": "all", "limit": 100})
    )
    live = [sub for sub in found.data if not subscriptions.is_ended(sub.status)]
    return sorted(live, key=lambda sub: (sub.created, sub.id))


_STORED_STATUS = "SELECT stripe_status FROM kijko.subscriptions WHERE organization_id = $1"


async def start_checkout(kijko: Kijko, account: Stripe, org_id: UUID, plan_id: str, interval: str) -> CheckoutStarted:
    """A Checkout session in ``subscription`` mode for the organization's customer and the plan's
    Price (see the module for the double-click guards)."""
    key = lookup_key(kijko.plans, plan_id, interval)
    async with billing_session(kijko, org_id, readonly=True) as db:
        status = await db.fetchval(_STORED_STATUS, org_id)
    if status is not None and not subscriptions.is_ended(status):
        raise SubscriptionExists()
    customer = await ensure_customer(kijko, account, org_id)
    live = await live_subscriptions(account, customer)
    if live:  # the mirror had not heard of it yet (the webhook is on its way): store it now
        await sync.refresh_subscription(kijko, account, org_id, live[0].id)
        raise SubscriptionExists()
    price = await price_id(account, key)
    listed = await account.call(account.v1.checkout.sessions.list_async({"customer": customer, "limit": 100}))
    same = [
        s
        for s in listed.data
        if field(s.metadata, "kijko_plan") == plan_id and field(s.metadata, "kijko_interval") == interval
    ]
    now = int(time.time())
    for session in same:
        if session.status == "open" and session.expires_at > now + _REUSE_MARGIN_SECONDS and session.url:
            return CheckoutStarted(checkout_url=session.url, session_id=session.id)
    for session in listed.data:  # only the latest choice can be paid (setup sessions are not choices)
        if session.status == "open" and session.mode == "subscription":
            try:
                await account.call(
                    account.v1.checkout.sessions.expire_async(
                        session.id, options=writes(idempotency_key("checkout-expire", session.id))
                    )
                )
            except StripeRefused:
                pass  # completed or expired meanwhile: not open any more either way
    app_url = kijko.settings.app_url.rstrip("/")
    params = {
        "mode": "subscription",
        "customer": customer,
        "client_reference_id": str(org_id),
        "line_items": [{"price": price, "quantity": 1}],
        "payment_method_types": PAYMENT_METHOD_TYPES,
        "success_url": f"{app_url}/settings/billing?checkout=success&session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{app_url}/settings/billing?checkout=cancel",
        "metadata": {"organization_id": str(org_id), "kijko_plan": plan_id, "kijko_interval": interval},
        "subscription_data": {"metadata": {"organization_id": str(org_id)}},
    }
    # Requests at once see the same newest earlier session, so they send the same key (and the
    # same parameters): Stripe makes one session and answers the others with it.
    previous = same[0].id if same else "first"
    request_key = idempotency_key("checkout", org_id, customer, plan_id, interval, price, app_url, previous)
    session = await account.call(account.v1.checkout.sessions.create_async(params, writes(request_key)))
    account.check_livemode(session)
    return CheckoutStarted(checkout_url=session.url, session_id=session.id)


async def keep_one_subscription(
    kijko: Kijko, account: Stripe, org_id: UUID, customer_id: str, *, created_by: UUID | None = None
) -> str | None:
    """Make sure the customer has at most one live subscription: the oldest stays, newer ones
    (a second Checkout completed despite the guards) are cancelled at once and logged for an
    operator to refund. Stores the outcome; returns the kept subscription's id (None: none live)."""
    live = await live_subscriptions(account, customer_id)
    if not live:
        return None
    kept, *duplicates = live
    for duplicate in duplicates:
        log.warning(
            "billing.duplicate_subscription_canceled",
            organization_id=str(org_id),
            kept=kept.id,
            canceled=duplicate.id,
        )
        await account.call(
            account.v1.subscriptions.cancel_async(
                duplicate.id,
                {"cancellation_details": {"comment": f"duplicate of {kept.id}"}},
                writes(idempotency_key("duplicate-cancel", duplicate.id)),
            ),
        )
        await sync.refresh_subscription(kijko, account, org_id, duplicate.id)
    await sync.refresh_subscription(kijko, account, org_id, kept.id, created_by=created_by)
    return str(kept.id)


async def sync_checkout(
    kijko: Kijko, account: Stripe, org_id: UUID, user_id: UUID, session_id: str
) -> Subscription | None:
    """The return page's sync: the session must be one of the organization's customer (else the
    same 404 as an unknown or malformed id); its subscription is read from Stripe and stored."""
    if not SESSION_ID.fullmatch(session_id):
        raise CheckoutSessionNotFound()
    async with billing_session(kijko, org_id, readonly=True) as db:
        customer = await stored_customer(db, org_id)
    if customer is None:
        raise CheckoutSessionNotFound()
    try:
        session = await account.call(account.v1.checkout.sessions.retrieve_async(session_id))
    except StripeRefused as exc:
        if is_missing(exc):
            raise CheckoutSessionNotFound() from None
        raise
    if object_id(session.customer) != customer:
        raise CheckoutSessionNotFound()
    account.check_livemode(session)
    sub_id = object_id(session.subscription)
    if sub_id is not None:
        kept = await keep_one_subscription(kijko, account, org_id, customer, created_by=user_id)
        if kept is None:  # it ended already (its first payment expired): store that
            await sync.refresh_subscription(kijko, account, org_id, sub_id, created_by=user_id)
    async with billing_session(kijko, org_id, readonly=True) as db:
        return await subscriptions.current(db, org_id)
