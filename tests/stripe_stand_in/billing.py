"""Subscriptions: created by Checkout, their items changed (with proration), cancelled, and
renewed as time passes (with the schedules' phases applied at the boundaries).

Every change emits the events Stripe emits for it, in Stripe's order. Choices where the
stand-in simplifies (decision 0146): a renewal invoice is finalized and charged at the period's
end (Stripe waits about an hour for a draft); proration is by the second, each line rounded
half up to a cent; a SEPA payment stays ``processing`` until the test settles it; a
subscription whose first SEPA payment is processing is ``active``, and a failed payment (first
or renewal) makes it ``past_due``.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.stripe_stand_in import objects, schedules
from tests.stripe_stand_in.forms import StripeError
from tests.stripe_stand_in.invoices import (
    charge_invoice,
    create_invoice,
    default_payment_method,
    finalize,
    line,
    set_status,
)
from tests.stripe_stand_in.periods import day, interval_months, next_end, prorate, shift
from tests.stripe_stand_in.state import State


def create_subscription(
    state: State,
    customer_id: str,
    prices: list[tuple[dict[str, Any], int]],
    pm: dict[str, Any] | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    now = state.now(customer_id)
    months = interval_months(prices[0][0])
    end = shift(now, months)
    sub_id = state.new_id("sub")
    items = [objects.subscription_item(state, sub_id, price, quantity, now, end) for price, quantity in prices]
    sub = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": now,
        "currency": prices[0][0]["currency"],
        "customer": customer_id,
        "days_until_due": None,
        "default_payment_method": pm["id"] if pm else None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": dict(metadata),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": now,
        "status": "incomplete",
        "test_clock": state.objects[customer_id].get("test_clock"),
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }
    state.add(sub, pending=[])
    return sub  # announced by first_invoice, with its latest_invoice set


def item_lines(state: State, invoice_id: str, sub: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
    lines = []
    for item in sub["items"]["data"]:
        price = item["price"]
        product = state.objects.get(price["product"], {})
        amount = price["unit_amount"] * item["quantity"]
        euros, cents = divmod(price["unit_amount"], 100)
        unit = f"{price['currency'].upper()} {euros}.{cents:02d} / {price['recurring']['interval']}"
        description = f"{item['quantity']} × {product.get('name', 'Product')} (at {unit})"
        lines.append(line(state, invoice_id, sub, item, amount, sub["currency"], description, start, end, False))
    return lines


def first_invoice(state: State, sub: dict[str, Any], pm: dict[str, Any] | None) -> dict[str, Any]:
    item = sub["items"]["data"][0]
    start, end = item["current_period_start"], item["current_period_end"]
    lines = item_lines(state, "", sub, start, end)
    invoice = create_invoice(state, sub, "subscription_create", lines, start, end, announce=False)
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.created", sub)
    state.emit("invoice.created", invoice)
    finalize(state, invoice)
    charge_invoice(state, invoice, pm)
    if sub["status"] == "incomplete" and invoice["status"] == "open" and pm and pm["type"] == "sepa_debit":
        set_status(state, sub, "active")  # a processing SEPA debit activates the subscription
    return invoice


def cancel_now(state: State, sub: dict[str, Any], reason: str = "cancellation_requested") -> None:
    now = state.now(sub["customer"])
    sub["status"] = "canceled"
    sub["canceled_at"] = sub["canceled_at"] or now
    sub["ended_at"] = now
    sub["cancellation_details"]["reason"] = reason
    state.emit("customer.subscription.deleted", sub)


def update_items(
    state: State, sub: dict[str, Any], entries: list[dict[str, Any]], behavior: str
) -> dict[str, Any] | None:
    """Change a subscription's items as ``POST /v1/subscriptions/:id`` does; the prorations are
    invoiced now (``always_invoice``), kept for the next invoice (``create_prorations``) or
    dropped (``none``). A change of interval restarts the period and invoices at once."""
    now = state.now(sub["customer"])
    old_items = copy.deepcopy(sub["items"])
    items = sub["items"]["data"]
    by_id = {item["id"]: item for item in items}
    first = items[0]
    start, end = first["current_period_start"], first["current_period_end"]
    credits: list[tuple[dict[str, Any], int]] = []  # (item as it was, amount)
    charges: list[tuple[dict[str, Any], int]] = []
    for entry in entries:
        target = by_id.get(entry.get("id") or "")
        if entry.get("id") and target is None:
            raise StripeError(400, f"Invalid subscription_item: {entry['id']}", param="items")
        if target is not None:
            credits.append((copy.deepcopy(target), target["price"]["unit_amount"] * target["quantity"]))
            if entry.get("deleted"):
                items.remove(target)
                continue
            if entry.get("price"):
                target["price"] = copy.deepcopy(objects.active_price(state, entry["price"]))
            if entry.get("quantity") is not None:
                target["quantity"] = entry["quantity"]
            if entry.get("metadata") is not None:
                target["metadata"] = objects.merge_metadata(target["metadata"], entry["metadata"])
            charges.append((target, target["price"]["unit_amount"] * target["quantity"]))
        else:
            if not entry.get("price"):
                raise StripeError(
                    400, "Missing required param: items[0][price].", code="parameter_missing", param="items[0][price]"
                )
            item = objects.subscription_item(
                state, sub["id"], objects.active_price(state, entry["price"]), entry.get("quantity") or 1, start, end
            )
            items.append(item)
            charges.append((item, item["price"]["unit_amount"] * item["quantity"]))
    new_months = interval_months(items[0]["price"])
    interval_changed = new_months != interval_months(old_items["data"][0]["price"])
    lines: list[dict[str, Any]] = []
    if behavior != "none":
        for item, amount in credits:
            if amount:
                lines.append(
                    line(
                        state,
                        "",
                        sub,
                        item,
                        -prorate(amount, end - now, end - start),
                        sub["currency"],
                        f"Unused time on {item['price']['id']} after {day(now)}",
                        now,
                        end,
                        True,
                    )
                )
        if not interval_changed:
            for item, amount in charges:
                lines.append(
                    line(
                        state,
                        "",
                        sub,
                        item,
                        prorate(amount, end - now, end - start),
                        sub["currency"],
                        f"Remaining time on {item['price']['id']} after {day(now)}",
                        now,
                        end,
                        True,
                    )
                )
    sub["items"]["total_count"] = len(items)
    invoice = None
    if interval_changed:
        new_end = shift(now, new_months)
        for item in items:
            item["current_period_start"], item["current_period_end"] = now, new_end
        sub["billing_cycle_anchor"] = now
        lines += state.hidden[sub["id"]].pop("pending", []) + item_lines(state, "", sub, now, new_end)
        state.hidden[sub["id"]]["pending"] = []
        invoice = _invoice_now(state, sub, lines, now, new_end, {"items": old_items})
    elif behavior == "always_invoice" and (lines or state.hidden[sub["id"]].get("pending")):
        lines = state.hidden[sub["id"]].pop("pending", []) + lines
        state.hidden[sub["id"]]["pending"] = []
        invoice = _invoice_now(state, sub, lines, now, end, {"items": old_items})
    else:
        state.hidden[sub["id"]].setdefault("pending", []).extend(lines)
        state.emit("customer.subscription.updated", sub, {"items": old_items})
    return invoice


def _invoice_now(
    state: State, sub: dict[str, Any], lines: list[dict[str, Any]], start: int, end: int, previous: dict[str, Any]
) -> dict[str, Any]:
    """Invoice a change at once: one ``customer.subscription.updated`` (the change and the new
    ``latest_invoice``), then the invoice's own events."""
    invoice = create_invoice(state, sub, "subscription_update", lines, start, end, announce=False)
    previous = {**previous, "latest_invoice": sub["latest_invoice"]}
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.updated", sub, previous)
    state.emit("invoice.created", invoice)
    finalize(state, invoice)
    charge_invoice(state, invoice, default_payment_method(state, sub))
    return invoice


# --- time passing ----------------------------------------------------------------------------


def run_until(state: State, target: int, customers: set[str] | None) -> None:
    """Everything due up to ``target`` for subscriptions of ``customers`` (all without a test
    clock when None), in time order: phase changes, cancellations at period end, renewals."""
    while True:
        due: list[tuple[int, dict[str, Any]]] = []
        for sub in state.of_kind("subscription"):
            if sub["status"] in ("canceled", "incomplete_expired"):
                continue
            customer = state.objects[sub["customer"]]
            on_clock = customer.get("test_clock")
            if (customers is None and on_clock) or (customers is not None and sub["customer"] not in customers):
                continue
            end = sub["items"]["data"][0]["current_period_end"]
            if end <= target:
                due.append((end, sub))
        if not due:
            return
        moment, sub = min(due, key=lambda pair: pair[0])
        state.moment = moment
        try:
            _period_end(state, sub, moment)
        finally:
            state.moment = None


def _period_end(state: State, sub: dict[str, Any], moment: int) -> None:
    if sub["cancel_at_period_end"] or (sub["cancel_at"] and sub["cancel_at"] <= moment):
        sub["status"] = "canceled"
        sub["ended_at"] = moment
        state.emit("customer.subscription.deleted", sub)
        return
    old_items = copy.deepcopy(sub["items"])
    schedule = state.objects.get(sub.get("schedule") or "")
    if schedule is not None:
        schedules.boundary(state, schedule, sub, moment)
    months = interval_months(sub["items"]["data"][0]["price"])
    end = next_end(sub["billing_cycle_anchor"], moment, months)
    for item in sub["items"]["data"]:
        item["current_period_start"], item["current_period_end"] = moment, end
    lines = state.hidden[sub["id"]].pop("pending", []) + item_lines(state, "", sub, moment, end)
    state.hidden[sub["id"]]["pending"] = []
    invoice = create_invoice(state, sub, "subscription_cycle", lines, moment, end, announce=False)
    previous = {"items": old_items, "latest_invoice": sub["latest_invoice"]}
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.updated", sub, previous)
    state.emit("invoice.created", invoice)
    finalize(state, invoice)
    charge_invoice(state, invoice, default_payment_method(state, sub))
    if (
        invoice["status"] == "open"
        and not any(state.objects[p]["status"] == "processing" for p in _intents_of(state, invoice))
        and sub["status"] == "active"
    ):
        set_status(state, sub, "past_due")


def _intents_of(state: State, invoice: dict[str, Any]) -> list[str]:
    payment = state.objects.get(state.hidden[invoice["id"]].get("payment") or "")
    return [payment["payment"]["payment_intent"]] if payment else []
