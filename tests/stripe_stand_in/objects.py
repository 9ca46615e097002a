"""Builders of Stripe objects in the shape of the API version the stand-in speaks.

Field names and nesting follow stripe-python's resource classes and Stripe's OpenAPI fixtures
for that version (``2026-10-28.endive``): a subscription's period is on its items
(``items.data[].current_period_start/end``), an invoice reaches its subscription through
``parent.subscription_details.subscription`` and its payments through the includable
``payments`` list (``payments.data[].payment.payment_intent``). Each object carries the fields
billing code reads plus Stripe's identity fields (``id``, ``object``, ``created``, ``livemode``,
``metadata``); fields the stand-in has no behaviour for are left out rather than faked.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.stripe_stand_in.forms import StripeError
from tests.stripe_stand_in.state import State, token

ACCOUNT = "acct_1StandInKijko000"


def empty_address() -> dict[str, Any]:
    return {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}


def merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe's metadata update: ``""`` clears all, a key with ``""`` is removed, others set."""
    if update == "":
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def customer(state: State, params: dict[str, Any]) -> dict[str, Any]:
    created = state.now() if not params.get("test_clock") else int(state.objects[params["test_clock"]]["frozen_time"])
    address = empty_address()
    address.update(params.get("address") or {})
    settings = params.get("invoice_settings") or {}
    obj = {
        "id": state.new_id("cus", 14),
        "object": "customer",
        "address": address if params.get("address") else None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": params.get("description"),
        "discount": None,
        "email": params.get("email"),
        "invoice_prefix": token(8).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": settings.get("default_payment_method"),
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": merge_metadata({}, params.get("metadata") or {}),
        "name": params.get("name"),
        "next_invoice_sequence": 1,
        "phone": params.get("phone"),
        "preferred_locales": params.get("preferred_locales") or [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": params.get("test_clock"),
    }
    return state.add(obj)


def tax_id(state: State, customer_id: str, kind: str, value: str) -> dict[str, Any]:
    country = value[:2].upper() if kind == "eu_vat" else None
    return state.add(
        {
            "id": state.new_id("txi"),
            "object": "tax_id",
            "country": country,
            "created": state.now(customer_id),
            "customer": customer_id,
            "livemode": False,
            "owner": {"customer": customer_id, "type": "customer"},
            "type": kind,
            "value": value,
            "verification": {"status": "pending", "verified_address": None, "verified_name": None},
        }
    )


def product(state: State, params: dict[str, Any]) -> dict[str, Any]:
    now = state.now()
    return state.add(
        {
            "id": params.get("id") or state.new_id("prod", 14),
            "object": "product",
            "active": params.get("active", True),
            "created": now,
            "default_price": None,
            "description": params.get("description"),
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": merge_metadata({}, params.get("metadata") or {}),
            "name": params["name"],
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": now,
            "url": None,
        }
    )


def price(state: State, params: dict[str, Any], product_id: str) -> dict[str, Any]:
    recurring = params.get("recurring")
    amount = params.get("unit_amount")
    return state.add(
        {
            "id": state.new_id("price"),
            "object": "price",
            "active": params.get("active", True),
            "billing_scheme": "per_unit",
            "created": state.now(),
            "currency": params["currency"].lower(),
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": params.get("lookup_key"),
            "metadata": merge_metadata({}, params.get("metadata") or {}),
            "nickname": params.get("nickname"),
            "product": product_id,
            "recurring": (
                {
                    "interval": recurring["interval"],
                    "interval_count": recurring.get("interval_count") or 1,
                    "meter": None,
                    "trial_period_days": None,
                    "usage_type": "licensed",
                }
                if recurring
                else None
            ),
            "tax_behavior": params.get("tax_behavior", "unspecified"),
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": amount,
            "unit_amount_decimal": None if amount is None else str(amount),
        }
    )


#: The payment methods a completed checkout or a test token can make, as Stripe's test data.
_CARDS = {
    "visa": {"brand": "visa", "last4": "4242", "funding": "credit", "country": "US"},
    "mastercard": {"brand": "mastercard", "last4": "4444", "funding": "credit", "country": "US"},
}


def payment_method(
    state: State,
    kind: str,
    customer_id: str | None,
    *,
    outcome: str = "succeed",
    brand: str = "visa",
    generated_from: str | None = None,
) -> dict[str, Any]:
    """A card or SEPA debit payment method; ``outcome`` decides its future payments (hidden, as
    Stripe's test numbers decide: 4000000000000341 attaches but fails; AT86…3202 fails)."""
    obj: dict[str, Any] = {
        "id": state.new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {"address": empty_address(), "email": None, "name": None, "phone": None, "tax_id": None},
        "created": state.now(customer_id),
        "customer": customer_id,
        "livemode": False,
        "metadata": {},
        "type": kind,
    }
    if kind == "card":
        card = _CARDS[brand]
        last4 = "0341" if outcome == "fail" else card["last4"]
        obj["card"] = {
            "brand": card["brand"],
            "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
            "country": card["country"],
            "display_brand": card["brand"],
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": token(16),
            "funding": card["funding"],
            "generated_from": None,
            "last4": last4,
            "networks": {"available": [card["brand"]], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        }
    elif kind == "sepa_debit":
        obj["sepa_debit"] = {
            "bank_code": "19043",
            "branch_code": "",
            "country": "AT",
            "fingerprint": token(16),
            "generated_from": {"charge": generated_from, "setup_attempt": None},
            "last4": "3202" if outcome == "fail" else "3201",
        }
    else:
        raise AssertionError(kind)
    return state.add(obj, outcome=outcome)


def setup_intent(state: State, customer_id: str | None, types: list[str]) -> dict[str, Any]:
    sid = state.new_id("seti")
    return state.add(
        {
            "id": sid,
            "object": "setup_intent",
            "application": None,
            "automatic_payment_methods": None,
            "cancellation_reason": None,
            "client_secret": f"{sid}_secret_{token(32)}",
            "created": state.now(customer_id),
            "customer": customer_id,
            "description": None,
            "last_setup_error": None,
            "latest_attempt": None,
            "livemode": False,
            "mandate": None,
            "metadata": {},
            "next_action": None,
            "payment_method": None,
            "payment_method_types": types,
            "status": "requires_payment_method",
            "usage": "off_session",
        }
    )


def payment_intent(state: State, customer_id: str, amount: int, currency: str, pm: dict[str, Any]) -> dict[str, Any]:
    pid = state.new_id("pi")
    return state.add(
        {
            "id": pid,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{pid}_secret_{token(24)}",
            "confirmation_method": "automatic",
            "created": state.now(customer_id),
            "currency": currency,
            "customer": customer_id,
            "description": "Subscription creation",
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "next_action": None,
            "payment_method": pm["id"],
            "payment_method_types": [pm["type"]],
            "processing": None,
            "status": "requires_confirmation",
        }
    )


def charge(state: State, intent: dict[str, Any], status: str) -> dict[str, Any]:
    return state.add(
        {
            "id": state.new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if status == "succeeded" else 0,
            "amount_refunded": 0,
            "captured": status == "succeeded",
            "created": state.now(intent["customer"]),
            "currency": intent["currency"],
            "customer": intent["customer"],
            "disputed": False,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": {},
            "paid": status == "succeeded",
            "payment_intent": intent["id"],
            "payment_method": intent["payment_method"],
            "status": status,
        }
    )


def dispute(state: State, charge_obj: dict[str, Any], reason: str) -> dict[str, Any]:
    now = state.now(charge_obj["customer"])
    return state.add(
        {
            "id": state.new_id("dp"),
            "object": "dispute",
            "amount": charge_obj["amount"],
            "balance_transactions": [],
            "charge": charge_obj["id"],
            "created": now,
            "currency": charge_obj["currency"],
            "evidence_details": {
                "due_by": now + 7 * 86400,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "payment_intent": charge_obj["payment_intent"],
            "reason": reason,
            "status": "needs_response",
        }
    )


def subscription_item(
    state: State, sub_id: str, price_obj: dict[str, Any], quantity: int, start: int, end: int
) -> dict[str, Any]:
    return {
        "id": state.new_id("si", 14),
        "object": "subscription_item",
        "created": start,
        "current_period_end": end,
        "current_period_start": start,
        "discounts": [],
        "metadata": {},
        "price": copy.deepcopy(price_obj),
        "quantity": quantity,
        "subscription": sub_id,
        "tax_rates": [],
    }


def test_clock(state: State, frozen_time: int, name: str | None) -> dict[str, Any]:
    return state.add(
        {
            "id": state.new_id("clock"),
            "object": "test_helpers.test_clock",
            "created": state.wall_now(),
            "deletes_after": state.wall_now() + 30 * 86400,
            "frozen_time": frozen_time,
            "livemode": False,
            "name": name,
            "status": "ready",
            "status_details": {},
        }
    )


def hosted_urls(invoice_id: str) -> tuple[str, str]:
    """The hosted invoice page and PDF addresses, in the form Stripe gives them."""
    secret = f"test_{token(40)}"
    return (
        f"https://invoice.stripe.com/i/{ACCOUNT}/{secret}?s=ap",
        f"https://pay.stripe.com/invoice/{ACCOUNT}/{secret}/pdf?s=ap",
    )


def active_price(state: State, price_id: str) -> dict[str, Any]:
    """A price a subscription may use (Stripe refuses unknown and inactive ones)."""
    price = state.get(price_id, "price")
    if price is None:
        raise StripeError(400, f"No such price: '{price_id}'", code="resource_missing", param="items[0][price]")
    if not price["active"]:
        raise StripeError(
            400, "The price specified is inactive. This field only accepts active prices.", param="items[0][price]"
        )
    return price
