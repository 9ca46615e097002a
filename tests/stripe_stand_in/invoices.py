"""Invoices and their payments: finalizing, charging the default payment method, and the
bank's answer (a card at once, a SEPA debit ``processing`` until the test settles it).

Every change emits the events Stripe emits for it, in Stripe's order.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.stripe_stand_in import objects
from tests.stripe_stand_in.state import State


def line(
    state: State,
    invoice_id: str,
    sub: dict[str, Any] | None,
    item: dict[str, Any] | None,
    amount: int,
    currency: str,
    description: str,
    start: int,
    end: int,
    proration: bool,
) -> dict[str, Any]:
    return {
        "id": state.new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "parent": {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": sub["id"] if sub else None,
                "subscription_item": item["id"] if item else None,
            },
            "type": "subscription_item_details",
        },
        "period": {"end": end, "start": start},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": item["price"]["id"], "product": item["price"]["product"]} if item else None,
            "type": "price_details",
            "unit_amount_decimal": str(item["price"]["unit_amount"]) if item else None,
        },
        "quantity": item["quantity"] if item else 1,
        "subtotal": amount,
        "taxes": [],
    }


def create_invoice(
    state: State,
    sub: dict[str, Any],
    reason: str,
    lines: list[dict[str, Any]],
    start: int,
    end: int,
    announce: bool = True,
) -> dict[str, Any]:
    """A draft invoice; ``announce=False`` leaves ``invoice.created`` to the caller, which first
    records the subscription change the invoice belongs to (Stripe's order)."""
    customer = state.objects[sub["customer"]]
    invoice_id = state.new_id("in")
    for entry in lines:
        entry["invoice"] = invoice_id
    total = sum(entry["amount"] for entry in lines)
    address = customer.get("address")
    invoice = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "NL",
        "account_name": "Kijko (stand-in)",
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_reason": reason,
        "collection_method": "charge_automatically",
        "created": state.now(customer["id"]),
        "currency": sub["currency"],
        "customer": customer["id"],
        "customer_address": copy.deepcopy(address),
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "customer_tax_ids": [
            {"type": tax["type"], "value": tax["value"]}
            for tax in state.of_kind("tax_id")
            if tax["customer"] == customer["id"]
        ],
        "default_payment_method": None,
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]},
            "type": "subscription_details",
        },
        "period_end": end,
        "period_start": start,
        "receipt_number": None,
        "starting_balance": customer["balance"],
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": customer.get("test_clock"),
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }
    state.add(invoice)
    if announce:
        state.emit("invoice.created", invoice)
    return invoice


def finalize(state: State, invoice: dict[str, Any]) -> None:
    customer = state.objects[invoice["customer"]]
    due = invoice["total"] + customer["balance"]
    invoice["amount_due"] = max(0, due)
    invoice["amount_remaining"] = invoice["amount_due"]
    invoice["ending_balance"] = min(0, due)
    customer["balance"] = min(0, due)
    invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    invoice["hosted_invoice_url"], invoice["invoice_pdf"] = objects.hosted_urls(invoice["id"])
    invoice["status"] = "open"
    invoice["effective_at"] = invoice["status_transitions"]["finalized_at"] = state.now(customer["id"])
    state.emit("invoice.finalized", invoice)


def _mark_paid(state: State, invoice: dict[str, Any]) -> None:
    invoice["status"] = "paid"
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["status_transitions"]["paid_at"] = state.now(invoice["customer"])
    state.emit("invoice.paid", invoice)
    state.emit("invoice.payment_succeeded", invoice)


def charge_invoice(state: State, invoice: dict[str, Any], pm: dict[str, Any] | None) -> None:
    """Attempt the payment of an open invoice with ``pm``: a card settles at once, a SEPA debit
    (or an iDEAL payment's SEPA mandate after it) becomes ``processing``."""
    if invoice["amount_due"] == 0:
        _mark_paid(state, invoice)
        return
    if pm is None:
        invoice["attempted"] = True
        invoice["attempt_count"] += 1
        state.emit("invoice.payment_failed", invoice)
        return
    intent = objects.payment_intent(state, invoice["customer"], invoice["amount_due"], invoice["currency"], pm)
    if invoice["billing_reason"] != "subscription_create":
        intent["description"] = (
            "Subscription update" if invoice["billing_reason"] == "subscription_update" else "Subscription cycle"
        )
    payment = state.add(
        {
            "id": state.new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": invoice["amount_due"],
            "created": state.now(invoice["customer"]),
            "currency": invoice["currency"],
            "invoice": invoice["id"],
            "is_default": True,
            "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": intent["id"]},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }
    )
    state.hidden[invoice["id"]]["payment"] = payment["id"]
    state.hidden[intent["id"]]["invoice"] = invoice["id"]
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    state.emit("payment_intent.created", intent)
    if pm["type"] == "sepa_debit":
        intent["status"] = "processing"
        intent["processing"] = {"type": "sepa_debit"}
        charge = objects.charge(state, intent, "pending")
        intent["latest_charge"] = charge["id"]
        state.emit("charge.pending", charge)
        state.emit("payment_intent.processing", intent)
        return
    settle(state, intent, state.hidden[pm["id"]].get("outcome", "succeed") == "succeed")


def settle(state: State, intent: dict[str, Any], succeeded: bool) -> None:
    """The bank's answer for ``intent``: the invoice, subscription and checkout follow."""
    if intent["status"] not in ("processing", "requires_confirmation"):
        raise ValueError(f"{intent['id']} is {intent['status']}, not awaiting an outcome")
    invoice = state.objects[state.hidden[intent["id"]]["invoice"]]
    payment = state.objects[state.hidden[invoice["id"]]["payment"]]
    charge = state.objects.get(intent["latest_charge"] or "") or objects.charge(state, intent, "pending")
    intent["latest_charge"] = charge["id"]
    intent["processing"] = None
    now = state.now(intent["customer"])
    sub = state.objects[invoice["parent"]["subscription_details"]["subscription"]]
    session = state.objects.get(state.hidden[sub["id"]].get("checkout") or "")
    if succeeded:
        charge.update(status="succeeded", paid=True, captured=True, amount_captured=intent["amount"])
        intent.update(status="succeeded", amount_received=intent["amount"])
        payment.update(status="paid", amount_paid=intent["amount"])
        payment["status_transitions"]["paid_at"] = now
        state.emit("charge.succeeded", charge)
        state.emit("payment_intent.succeeded", intent)
        _mark_paid(state, invoice)
        if sub["status"] in ("incomplete", "past_due"):
            set_status(state, sub, "active")
        if (
            session is not None
            and invoice["billing_reason"] == "subscription_create"
            and session["payment_status"] == "unpaid"
            and session["status"] == "complete"
        ):
            session["payment_status"] = "paid"
            state.emit("checkout.session.async_payment_succeeded", session)
        return
    charge.update(
        status="failed",
        paid=False,
        failure_code="insufficient_funds",
        failure_message="The account has insufficient funds to cover this payment.",
    )
    pm = state.objects[intent["payment_method"]]
    intent.update(status="requires_payment_method", payment_method=None)
    intent["last_payment_error"] = {
        "code": "insufficient_funds" if pm["type"] == "sepa_debit" else "card_declined",
        "decline_code": "insufficient_funds",
        "message": "The account has insufficient funds to cover this payment.",
        "payment_method": copy.deepcopy(pm),
        "type": "card_error" if pm["type"] == "card" else "invalid_request_error",
    }
    state.emit("charge.failed", charge)
    state.emit("payment_intent.payment_failed", intent)
    invoice["next_payment_attempt"] = None
    state.emit("invoice.payment_failed", invoice)
    if sub["status"] in ("active", "incomplete"):
        set_status(state, sub, "past_due")
    if (
        session is not None
        and invoice["billing_reason"] == "subscription_create"
        and session["payment_status"] == "unpaid"
    ):
        state.emit("checkout.session.async_payment_failed", session)


def set_status(state: State, sub: dict[str, Any], status: str) -> None:
    previous = {"status": sub["status"]}
    sub["status"] = status
    state.emit("customer.subscription.updated", sub, previous)


def default_payment_method(state: State, sub: dict[str, Any]) -> dict[str, Any] | None:
    pm_id = (
        sub.get("default_payment_method")
        or state.objects[sub["customer"]]["invoice_settings"]["default_payment_method"]
    )
    return state.objects.get(pm_id) if pm_id else None
