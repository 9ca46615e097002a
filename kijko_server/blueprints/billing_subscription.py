"""The organization's subscription (contract §2.8, §3.6; docs/billing.md "Subscriptions and
Checkout"): owners subscribe through Stripe Checkout, change the plan, cancel and resume;
admins view it; members and viewers get 403. Without Stripe every route answers 503
``BILLING_DISABLED`` (after the role check)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from quart import Blueprint
from quart_schema import validate_request

from kijko_core.billing import checkout, manage, subscriptions
from kijko_core.billing.checkout import (
    CheckoutSessionNotFound,
    CheckoutStarted,
    StartCheckout,
    SubscriptionExists,
    SubscriptionNotFound,
    SubscriptionOrNone,
)
from kijko_core.billing.details import authorize_manage, authorize_view
from kijko_core.billing.manage import ChangeSubscription
from kijko_core.billing.stripe_api import (
    BillingDisabled,
    LivemodeMismatch,
    PaymentProviderUnavailable,
    Stripe,
    require,
)
from kijko_core.errors import UpstreamError
from kijko_server.openapi import responds
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

bp = Blueprint("billing_subscription", __name__, url_prefix="/api/v1/billing")

#: What every route that asks Stripe may answer besides its own errors.
STRIPE_ERRORS = (BillingDisabled, PaymentProviderUnavailable, UpstreamError, LivemodeMismatch)


async def _owner() -> tuple[Kijko, Stripe, UUID, UUID]:
    """The runtime, Stripe, the caller's organization and user, for an owner (403 otherwise;
    503 BILLING_DISABLED without Stripe). No transaction stays open: Stripe is asked next."""
    kijko = runtime()
    async with tenant(readonly=True) as db:
        authorize_manage(db.principal)
        org_id, user_id = db.principal.org_id, db.principal.user_id
    return kijko, require(kijko.stripe), org_id, user_id


@bp.get("/subscription")
@responds(*TENANT_ERRORS, BillingDisabled)
@validate_response(SubscriptionOrNone)
async def get_subscription() -> SubscriptionOrNone:
    """The organization's subscription as last stored from Stripe, or ``null`` (none: the free
    plan). Owners and admins. ``cancelAtPeriodEnd`` is true when the subscription ends at
    ``currentPeriodEnd`` (``scheduledPlanId`` null) or moves then to ``scheduledPlanId`` /
    ``scheduledInterval`` (a downgrade)."""
    kijko = runtime()
    async with tenant(readonly=True) as db:
        authorize_view(db.principal)
        require(kijko.stripe)
        return SubscriptionOrNone(await subscriptions.current(db, db.principal.org_id))


@bp.post("/checkout")
@responds(*TENANT_ERRORS, SubscriptionExists, *STRIPE_ERRORS)
@validate_request(StartCheckout)
@validate_response(CheckoutStarted)
async def start_checkout(data: StartCheckout) -> CheckoutStarted:
    """Start subscribing (owners): a Stripe Checkout session for the plan and interval, paid by
    card, iDEAL (renewals then by SEPA Direct Debit) or SEPA Direct Debit. Send the customer to
    ``checkoutUrl``; Stripe returns to ``/settings/billing?checkout=success&session_id=…``. A
    double click gets the same session. 422 on ``planId`` for a plan not sold online (free,
    enterprise); 409 ``SUBSCRIPTION_EXISTS`` when the organization has a subscription (change it
    with PATCH)."""
    kijko, account, org_id, _ = await _owner()
    return await checkout.start_checkout(kijko, account, org_id, data.plan_id, data.interval)


@bp.post("/checkout/<session_id>/sync")
@responds(*TENANT_ERRORS, CheckoutSessionNotFound, *STRIPE_ERRORS)
@validate_response(SubscriptionOrNone)
async def sync_checkout(session_id: str) -> SubscriptionOrNone:
    """The return page (owners): read the Checkout session's subscription from Stripe and store
    it, without waiting for the webhook; answers the organization's subscription (``null`` while
    the session is not completed). Another organization's, unknown or malformed session ids are
    404 ``CHECKOUT_SESSION_NOT_FOUND``."""
    kijko, account, org_id, user_id = await _owner()
    return SubscriptionOrNone(await checkout.sync_checkout(kijko, account, org_id, user_id, session_id))


@bp.patch("/subscription")
@responds(*TENANT_ERRORS, SubscriptionNotFound, *STRIPE_ERRORS)
@validate_request(ChangeSubscription)
@validate_response(SubscriptionOrNone)
async def change_subscription(data: ChangeSubscription) -> SubscriptionOrNone:
    """Change the plan (owners). An upgrade (a higher plan, or monthly to annual) applies now and
    invoices the prorated difference at once; a downgrade (a lower plan, or annual to monthly)
    is scheduled for the period's end (``planId`` unchanged until then, ``scheduledPlanId`` /
    ``scheduledInterval`` set, ``cancelAtPeriodEnd`` true); ``planId: free`` cancels at the
    period's end; the current plan again undoes a pending downgrade or cancellation. 422 on
    ``planId`` for enterprise; 404 ``SUBSCRIPTION_NOT_FOUND`` without a live subscription."""
    kijko, account, org_id, _ = await _owner()
    return SubscriptionOrNone(await manage.change_plan(kijko, account, org_id, data.plan_id, data.interval))


@bp.post("/subscription/cancel")
@responds(*TENANT_ERRORS, SubscriptionNotFound, *STRIPE_ERRORS)
@validate_response(SubscriptionOrNone)
async def cancel_subscription() -> SubscriptionOrNone:
    """Cancel at the period's end (owners): ``cancelAtPeriodEnd`` true; the plan stays until
    ``currentPeriodEnd``, then the organization is on the free plan. A scheduled downgrade is
    dropped."""
    kijko, account, org_id, _ = await _owner()
    return SubscriptionOrNone(await manage.cancel(kijko, account, org_id))


@bp.post("/subscription/resume")
@responds(*TENANT_ERRORS, SubscriptionNotFound, *STRIPE_ERRORS)
@validate_response(SubscriptionOrNone)
async def resume_subscription() -> SubscriptionOrNone:
    """Keep the subscription as it is (owners): undoes a cancellation at the period's end and a
    scheduled downgrade (``cancelAtPeriodEnd`` false)."""
    kijko, account, org_id, _ = await _owner()
    return SubscriptionOrNone(await manage.resume(kijko, account, org_id))
