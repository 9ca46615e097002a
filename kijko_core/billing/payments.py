"""The organization's payment methods and the Customer Portal (docs/billing.md "Payment methods,
invoices and the portal", decision 0164).

Stripe is the source of truth: nothing here is stored by Kijko. A request reads what it needs
from the database (the organization's Stripe customer, its current subscription), closes the
transaction, then asks Stripe. A payment method is shown only if it is attached to *this*
organization's customer: any other id — another customer's, unknown, malformed — is the same
404, so no request can learn that someone else's payment method exists.

The default payment method is the customer's ``invoice_settings.default_payment_method``. A
customer with payment methods always has one: when Stripe has none (the first method was just
added through a setup Checkout, or the default was removed), reading the list makes one the
default — the current subscription's own default method if it has one, else the oldest (as
Stripe made the first source a customer's default).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID, uuid4

from kijko_core.billing import customers
from kijko_core.billing.stripe_api import Stripe, StripeRefused, field, idempotency_key, is_missing, object_id, writes
from kijko_core.billing.subscriptions import ENDED
from kijko_core.db.session import Session
from kijko_core.errors import Conflict, NotFound
from kijko_core.wire import WireInput, WireModel

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

PaymentMethodType = Literal["card", "sepa_debit"]
CardBrand = Literal["visa", "mastercard", "amex", "discover", "unknown"]
_BRANDS = frozenset({"visa", "mastercard", "amex", "discover"})
#: A Stripe payment method id: anything else is not looked up at Stripe at all.
_PM_ID = re.compile(r"pm_[A-Za-z0-9]{1,250}")
#: Sessions (setup Checkout, portal) asked for twice within this many seconds by the same user
#: are the same session: a double click opens one page.
SESSION_WINDOW_SECONDS = 60


class PaymentMethodNotFound(NotFound):
    code = "PAYMENT_METHOD_NOT_FOUND"
    default_message = "Payment method not found"


class PaymentMethodInUse(Conflict):
    code = "PAYMENT_METHOD_IN_USE"
    default_message = (
        "This is the default payment method of the organization's subscription: make another one the default first"
    )


class PaymentMethod(WireModel):
    """The contract's PaymentMethod (§3.6), read from Stripe. ``id`` is Stripe's payment method
    id (the same as ``stripePaymentMethodId``: Kijko stores no payment methods); ``userId`` is
    null — billing is the organization's and Stripe does not record who added a method."""

    id: str
    user_id: UUID | None
    type: PaymentMethodType
    stripe_payment_method_id: str
    is_default: bool
    card_brand: CardBrand | None
    card_last4: str | None
    card_exp_month: int | None
    card_exp_year: int | None
    #: Stripe's ``sepa_debit.bank_code`` (the bank code inside the IBAN; Stripe shows no BIC).
    sepa_bank_code: str | None
    sepa_last4: str | None
    sepa_country: str | None
    created_at: datetime


class SetupRequest(WireInput):
    """``POST /billing/payment-methods/setup``."""

    type: PaymentMethodType


class CheckoutSession(WireModel):
    """Where to send the browser: Stripe's hosted Checkout page, and the session's id."""

    checkout_url: str
    session_id: str


class PortalSession(WireModel):
    url: str


# --- what a request reads before asking Stripe ----------------------------------------------------


@dataclass(frozen=True)
class Account:
    """The organization's Stripe customer (None: none yet) and its current subscription (None:
    none, or it has ended)."""

    customer_id: str | None
    subscription_id: str | None


_SUBSCRIPTION = "SELECT stripe_subscription_id, stripe_status FROM kijko.subscriptions WHERE organization_id = $1"


async def account_of(db: Session, org_id: UUID) -> Account:
    customer_id = await customers.stored_customer(db, org_id)
    row = await db.fetchrow(_SUBSCRIPTION, org_id)
    live = row is not None and row["stripe_status"] not in ENDED
    return Account(customer_id, str(row["stripe_subscription_id"]) if live and row is not None else None)


# --- reading -----------------------------------------------------------------------------------------


def _shown(pm: Any, default_id: str | None) -> PaymentMethod:
    card = field(pm, "card") if pm.type == "card" else None
    sepa = field(pm, "sepa_debit") if pm.type == "sepa_debit" else None
    brand = field(card, "brand") if card is not None else None
    return PaymentMethod(
        id=pm.id,
        user_id=None,
        type=pm.type,
        stripe_payment_method_id=pm.id,
        is_default=pm.id == default_id,
        card_brand=None if card is None else (brand if brand in _BRANDS else "unknown"),
        card_last4=None if card is None else field(card, "last4"),
        card_exp_month=None if card is None else field(card, "exp_month"),
        card_exp_year=None if card is None else field(card, "exp_year"),
        sepa_bank_code=None if sepa is None else (field(sepa, "bank_code") or None),
        sepa_last4=None if sepa is None else field(sepa, "last4"),
        sepa_country=None if sepa is None else field(sepa, "country"),
        created_at=datetime.fromtimestamp(pm.created, UTC),
    )


async def _attached(stripe: Stripe, customer_id: str) -> list[Any]:
    """The customer's card and SEPA Direct Debit methods, newest first (Stripe's order)."""
    found: list[Any] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = await stripe.call(stripe.v1.customers.payment_methods.list_async(customer_id, params))
        found += [pm for pm in page.data if pm.type in ("card", "sepa_debit")]
        if not page.has_more or not page.data:
            return found
        params = {"limit": 100, "starting_after": page.data[-1].id}


async def _subscription_default(stripe: Stripe, subscription_id: str | None) -> str | None:
    if subscription_id is None:
        return None
    try:
        sub = await stripe.call(stripe.v1.subscriptions.retrieve_async(subscription_id))
    except StripeRefused as exc:
        if is_missing(exc):
            return None
        raise
    return object_id(sub.default_payment_method)


async def _set_customer_default(stripe: Stripe, customer_id: str, pm_id: str) -> None:
    # Setting a value is harmless to repeat; a key naming the value would make a later A→B→A
    # replay the first answer without doing it, so the key covers this request's retries only.
    await stripe.call(
        stripe.v1.customers.update_async(
            customer_id,
            {"invoice_settings": {"default_payment_method": pm_id}},
            writes(idempotency_key("payment-method-default", customer_id, pm_id, uuid4())),
        )
    )


@dataclass
class _Methods:
    attached: list[Any]
    default_id: str | None
    subscription_default: str | None

    def shown(self) -> list[PaymentMethod]:
        return [_shown(pm, self.default_id) for pm in self.attached]

    def ids(self) -> set[str]:
        return {pm.id for pm in self.attached}


async def _methods(stripe: Stripe, account: Account) -> _Methods:
    """The customer's methods and its default, made up when Stripe has none (module doc)."""
    assert account.customer_id is not None
    try:
        customer = await stripe.call(stripe.v1.customers.retrieve_async(account.customer_id))
    except StripeRefused as exc:
        if is_missing(exc):  # Stripe deleted the customer: nothing is attached any more
            return _Methods([], None, None)
        raise
    if field(customer, "deleted"):
        return _Methods([], None, None)
    attached = await _attached(stripe, account.customer_id)
    ids = {pm.id for pm in attached}
    default_id = object_id(field(field(customer, "invoice_settings"), "default_payment_method"))
    subscription_default = await _subscription_default(stripe, account.subscription_id)
    if attached and default_id not in ids:
        default_id = subscription_default if subscription_default in ids else attached[-1].id
        assert default_id is not None
        await _set_customer_default(stripe, account.customer_id, default_id)
    return _Methods(attached, default_id, subscription_default)


async def list_methods(stripe: Stripe, account: Account) -> list[PaymentMethod]:
    """The organization's payment methods (none without a customer), exactly one the default."""
    if account.customer_id is None:
        return []
    return (await _methods(stripe, account)).shown()


def _checked_id(pm_id: str) -> str:
    if not _PM_ID.fullmatch(pm_id):
        raise PaymentMethodNotFound()
    return pm_id


async def set_default(stripe: Stripe, account: Account, pm_id: str) -> list[PaymentMethod]:
    """Make ``pm_id`` (one of the organization's methods) the default: the customer's and, when
    there is a current subscription, the subscription's. Returns the list."""
    pm_id = _checked_id(pm_id)
    if account.customer_id is None:
        raise PaymentMethodNotFound()
    methods = await _methods(stripe, account)
    if pm_id not in methods.ids():
        raise PaymentMethodNotFound()
    if methods.default_id != pm_id:
        await _set_customer_default(stripe, account.customer_id, pm_id)
        methods.default_id = pm_id
    if account.subscription_id is not None and methods.subscription_default != pm_id:
        await stripe.call(
            stripe.v1.subscriptions.update_async(
                account.subscription_id,
                {"default_payment_method": pm_id},
                writes(idempotency_key("subscription-payment-method", account.subscription_id, pm_id, uuid4())),
            )
        )
    return methods.shown()


async def remove(stripe: Stripe, account: Account, pm_id: str) -> None:
    """Detach ``pm_id`` from the organization's customer; not the default one (nor the
    subscription's own) while the organization has a subscription that has not ended."""
    pm_id = _checked_id(pm_id)
    if account.customer_id is None:
        raise PaymentMethodNotFound()
    methods = await _methods(stripe, account)
    if pm_id not in methods.ids():
        raise PaymentMethodNotFound()
    if account.subscription_id is not None and pm_id in (methods.default_id, methods.subscription_default):
        raise PaymentMethodInUse()
    # A detached payment method cannot be attached again: detaching it is a one-time write.
    await stripe.call(
        stripe.v1.payment_methods.detach_async(pm_id, None, writes(idempotency_key("payment-method-detach", pm_id)))
    )


# --- sessions on Stripe's pages --------------------------------------------------------------------


def _window() -> int:
    return int(time.time()) // SESSION_WINDOW_SECONDS


def billing_page(app_url: str) -> str:
    return f"{app_url.rstrip('/')}/settings/billing"


async def setup_session(
    kijko: Kijko, stripe: Stripe, org_id: UUID, user_id: UUID, kind: PaymentMethodType
) -> CheckoutSession:
    """A Checkout Session in ``setup`` mode where the customer adds a ``kind`` payment method
    (the organization's customer is made first if it has none)."""
    customer_id = await customers.ensure_customer(kijko, stripe, org_id)
    page = billing_page(kijko.settings.app_url)
    metadata = {"organization_id": str(org_id), "user_id": str(user_id), "purpose": "payment_method_setup"}
    session = await stripe.call(
        stripe.v1.checkout.sessions.create_async(
            {
                "mode": "setup",
                "customer": customer_id,
                "payment_method_types": [kind],
                # SEPA Direct Debit mandates are in euros, as Kijko's prices are.
                "currency": "eur",
                "success_url": f"{page}?setup=success&session_id={{CHECKOUT_SESSION_ID}}",
                "cancel_url": f"{page}?setup=cancelled",
                "metadata": metadata,
                "setup_intent_data": {"metadata": metadata},
            },
            writes(idempotency_key("setup-session", customer_id, user_id, kind, _window())),
        )
    )
    stripe.check_livemode(session)
    return CheckoutSession(checkout_url=session.url, session_id=session.id)


async def portal_session(kijko: Kijko, stripe: Stripe, org_id: UUID, user_id: UUID) -> PortalSession:
    """A Customer Portal session of the organization's customer, returning to the billing page."""
    customer_id = await customers.ensure_customer(kijko, stripe, org_id)
    session = await stripe.call(
        stripe.v1.billing_portal.sessions.create_async(
            {"customer": customer_id, "return_url": billing_page(kijko.settings.app_url)},
            writes(idempotency_key("portal-session", customer_id, user_id, _window())),
        )
    )
    return PortalSession(url=session.url)
