"""The organization's payment methods, invoices and the Stripe Customer Portal (docs/billing.md
"Payment methods, invoices and the portal", decision 0164): read from Stripe, the source of
truth. Owners manage them, admins view them; members and viewers get 403. Without Stripe
configured every route answers 503 ``BILLING_DISABLED``; Stripe unreachable, 503
``PAYMENT_PROVIDER_UNAVAILABLE`` with nothing changed."""

from __future__ import annotations

from pydantic import RootModel
from quart import Blueprint
from quart_schema import validate_querystring, validate_request

from kijko_core.billing import details, invoices, payments
from kijko_core.billing.invoices import InvoiceList, InvoiceQuery
from kijko_core.billing.payments import (
    Account,
    CheckoutSession,
    PaymentMethod,
    PaymentMethodInUse,
    PaymentMethodNotFound,
    PortalSession,
    SetupRequest,
)
from kijko_core.billing.stripe_api import BillingDisabled, PaymentProviderUnavailable, Stripe, require
from kijko_core.errors import UpstreamError
from kijko_core.wire import Success
from kijko_server.openapi import responds
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("billing_payments", __name__, url_prefix="/api/v1/billing")

#: What every route here may answer besides its own errors: billing off, Stripe failing.
STRIPE_ERRORS = (BillingDisabled, PaymentProviderUnavailable, UpstreamError)


class PaymentMethodList(RootModel[list[PaymentMethod]]):
    pass


def _stripe() -> Stripe:
    return require(runtime().stripe)


async def _account(*, manage: bool) -> tuple[Stripe, Account]:
    """Stripe, and the caller's organization's account as stored, after the role check (a
    member is refused whether billing is on or not); the transaction is closed before Stripe
    is asked."""
    async with tenant(readonly=True) as db:
        (details.authorize_manage if manage else details.authorize_view)(db.principal)
        stripe = _stripe()
        return stripe, await payments.account_of(db, db.principal.org_id)


@bp.get("/payment-methods")
@responds(*TENANT_ERRORS, *STRIPE_ERRORS)
@validate_response(PaymentMethodList)
async def list_payment_methods() -> PaymentMethodList:
    """The organization's card and SEPA Direct Debit payment methods, newest first, as Stripe
    has them (owners and admins); exactly one ``isDefault`` when there are any. ``id`` is
    Stripe's payment method id; ``userId`` is null."""
    stripe, account = await _account(manage=False)
    return PaymentMethodList(await payments.list_methods(stripe, account))


@bp.post("/payment-methods/setup")
@responds(*TENANT_ERRORS, *STRIPE_ERRORS)
@validate_request(SetupRequest)
@validate_response(CheckoutSession)
async def setup_payment_method(data: SetupRequest) -> CheckoutSession:
    """Add a payment method (owners): a Stripe Checkout page in ``setup`` mode for a ``card`` or
    a ``sepa_debit`` mandate. Send the browser to ``checkoutUrl``; it returns to the billing
    settings with ``?setup=success&session_id=…`` (or ``?setup=cancelled``)."""
    kijko = runtime()
    async with tenant(readonly=True) as db:
        details.authorize_manage(db.principal)
        stripe = _stripe()
        org_id, user_id = db.principal.org_id, db.principal.user_id
    return await payments.setup_session(kijko, stripe, org_id, user_id, data.type)


@bp.post("/payment-methods/<pm_id>/default")
@responds(*TENANT_ERRORS, *STRIPE_ERRORS, PaymentMethodNotFound)
@validate_response(PaymentMethodList)
async def set_default_payment_method(pm_id: str) -> PaymentMethodList:
    """Make a payment method the default (owners): the one invoices and the subscription are
    charged to. Answers the updated list. Another organization's or an unknown id: 404."""
    stripe, account = await _account(manage=True)
    return PaymentMethodList(await payments.set_default(stripe, account, pm_id))


@bp.delete("/payment-methods/<pm_id>")
@responds(*TENANT_ERRORS, *STRIPE_ERRORS, PaymentMethodNotFound, PaymentMethodInUse)
@validate_response(Success)
async def delete_payment_method(pm_id: str) -> Success:
    """Remove a payment method (owners). Not the default one while the organization has a
    subscription that has not ended (409 ``PAYMENT_METHOD_IN_USE``: make another the default
    first). Another organization's or an unknown id: 404."""
    stripe, account = await _account(manage=True)
    await payments.remove(stripe, account, pm_id)
    return Success()


@bp.get("/invoices")
@responds(*TENANT_ERRORS, *STRIPE_ERRORS)
@validate_querystring(InvoiceQuery)
@validate_response(InvoiceList)
async def list_invoices(query_args: InvoiceQuery) -> InvoiceList:
    """The organization's invoices, newest first, ``limit`` (1–100, default 10) at a time
    (owners and admins). ``hasMore``: ask again with ``startingAfter`` the last invoice's
    ``id``; a ``startingAfter`` that is not one of the organization's invoices is 422."""
    stripe, account = await _account(manage=False)
    return await invoices.list_invoices(stripe, account.customer_id, query_args)


@bp.get("/portal")
@responds(*TENANT_ERRORS, *STRIPE_ERRORS)
@validate_response(PortalSession)
async def billing_portal() -> PortalSession:
    """A Stripe Customer Portal session of the organization (owners): ``url`` is where to send
    the browser; it returns to the billing settings."""
    kijko = runtime()
    async with tenant(readonly=True) as db:
        details.authorize_manage(db.principal)
        stripe = _stripe()
        org_id, user_id = db.principal.org_id, db.principal.user_id
    return await payments.portal_session(kijko, stripe, org_id, user_id)
