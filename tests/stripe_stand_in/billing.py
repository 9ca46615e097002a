"""What Stripe Billing does between requests: checkout completion, invoices and payments,
renewals as time passes, proration, schedules' phases, delayed SEPA outcomes.

Every change emits the events Stripe emits for it, in Stripe's order. Choices where the
stand-in simplifies (decision 0146): a renewal invoice is finalized and charged at the period's
end (Stripe waits about an hour for a draft); proration is by the second, each line rounded
half up to a cent; a SEPA payment stays ``processing`` until the test settles it; a
subscription whose first SEPA payment is processing is ``active``, and a failed payment (first
or renewal) makes it ``past_due``.
"""

from __future__ import annotations

import calendar
import copy
from datetime import UTC, datetime
from typing import Any

from tests.stripe_stand_in import objects
from tests.stripe_stand_in.forms import StripeError
from tests.stripe_stand_in.state import State

# --- periods ---------------------------------------------------------------------------------


def shift(anchor: int, months: int) -> int:
    """``anchor`` moved by whole calendar months, the day clamped to the month's last day (as
    Stripe does for a subscription anchored on the 31st)."""
    moment = datetime.fromtimestamp(anchor, UTC)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def interval_months(price: dict[str, Any]) -> int:
    recurring = price["recurring"]
    unit = {"month": 1, "year": 12}.get(recurring["interval"])
    if unit is None:
        raise StripeError(400, "The stand-in bills monthly and yearly prices only.", param="recurring[interval]")
    return unit * int(recurring["interval_count"])


def next_end(anchor: int, after: int, months: int) -> int:
    """The first period boundary (``anchor`` + k intervals) later than ``after``."""
    k = 1
    while (end := shift(anchor, k * months)) <= after:
        k += 1
    return end


def prorate(amount: int, remaining: int, period: int) -> int:
    """``amount`` × ``remaining``/``period`` seconds, rounded half up to a cent (integers only)."""
    sign = -1 if amount < 0 else 1
    return sign * ((abs(amount) * remaining * 2 + period) // (2 * period))


# --- invoices and payments -------------------------------------------------------------------


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
    state: State, sub: dict[str, Any], reason: str, lines: list[dict[str, Any]], start: int, end: int
) -> dict[str, Any]:
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
        intent["latest_charge"] = objects.charge(state, intent, "pending")["id"]
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


# --- subscriptions ---------------------------------------------------------------------------


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
    state.emit("customer.subscription.created", sub)
    return sub


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
    invoice = create_invoice(state, sub, "subscription_create", item_lines(state, "", sub, start, end), start, end)
    previous = {"latest_invoice": sub["latest_invoice"]}
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.updated", sub, previous)
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
                target["price"] = copy.deepcopy(_price(state, entry["price"]))
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
                state, sub["id"], _price(state, entry["price"]), entry.get("quantity") or 1, start, end
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
                        f"Unused time on {item['price']['id']} after {_day(now)}",
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
                        f"Remaining time on {item['price']['id']} after {_day(now)}",
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
        state.emit("customer.subscription.updated", sub, {"items": old_items})
        invoice = _invoice_now(state, sub, lines, now, new_end)
    elif behavior == "always_invoice":
        state.emit("customer.subscription.updated", sub, {"items": old_items})
        lines = state.hidden[sub["id"]].pop("pending", []) + lines
        state.hidden[sub["id"]]["pending"] = []
        invoice = _invoice_now(state, sub, lines, now, end) if lines else None
    else:
        state.hidden[sub["id"]].setdefault("pending", []).extend(lines)
        state.emit("customer.subscription.updated", sub, {"items": old_items})
    return invoice


def _invoice_now(
    state: State, sub: dict[str, Any], lines: list[dict[str, Any]], start: int, end: int
) -> dict[str, Any]:
    invoice = create_invoice(state, sub, "subscription_update", lines, start, end)
    previous = {"latest_invoice": sub["latest_invoice"]}
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.updated", sub, previous)
    finalize(state, invoice)
    charge_invoice(state, invoice, default_payment_method(state, sub))
    return invoice


def _price(state: State, price_id: str) -> dict[str, Any]:
    price = state.get(price_id, "price")
    if price is None:
        raise StripeError(400, f"No such price: '{price_id}'", code="resource_missing", param="items[0][price]")
    if not price["active"]:
        raise StripeError(
            400, "The price specified is inactive. This field only accepts active prices.", param="items[0][price]"
        )
    return price


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %Y")


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
        _schedule_boundary(state, schedule, sub, moment)
    months = interval_months(sub["items"]["data"][0]["price"])
    end = next_end(sub["billing_cycle_anchor"], moment, months)
    for item in sub["items"]["data"]:
        item["current_period_start"], item["current_period_end"] = moment, end
    state.emit("customer.subscription.updated", sub, {"items": old_items})
    lines = state.hidden[sub["id"]].pop("pending", []) + item_lines(state, "", sub, moment, end)
    state.hidden[sub["id"]]["pending"] = []
    invoice = create_invoice(state, sub, "subscription_cycle", lines, moment, end)
    previous = {"latest_invoice": sub["latest_invoice"]}
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.updated", sub, previous)
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


# --- subscription schedules ------------------------------------------------------------------


def schedule_from_subscription(state: State, sub: dict[str, Any]) -> dict[str, Any]:
    if sub.get("schedule"):
        raise StripeError(
            400,
            f"You cannot migrate a subscription that is already attached to a schedule: `{sub['schedule']}`.",
            param="from_subscription",
        )
    item = sub["items"]["data"][0]
    start, end = item["current_period_start"], item["current_period_end"]
    phase = _phase(
        start, end, [{"price": i["price"]["id"], "quantity": i["quantity"]} for i in sub["items"]["data"]], {}
    )
    schedule = {
        "id": state.new_id("sub_sched"),
        "object": "subscription_schedule",
        "application": None,
        "canceled_at": None,
        "completed_at": None,
        "created": state.now(sub["customer"]),
        "current_phase": {"end_date": end, "start_date": start},
        "customer": sub["customer"],
        "default_settings": {
            "billing_cycle_anchor": "automatic",
            "collection_method": "charge_automatically",
            "default_payment_method": None,
            "description": None,
        },
        "end_behavior": "release",
        "livemode": False,
        "metadata": {},
        "phases": [phase],
        "released_at": None,
        "released_subscription": None,
        "status": "active",
        "subscription": sub["id"],
        "test_clock": sub["test_clock"],
    }
    state.add(schedule)
    state.emit("subscription_schedule.created", schedule)
    previous = {"schedule": None}
    sub["schedule"] = schedule["id"]
    state.emit("customer.subscription.updated", sub, previous)
    return schedule


def _phase(start: int, end: int, items: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    return {
        "add_invoice_items": [],
        "application_fee_percent": None,
        "billing_cycle_anchor": None,
        "collection_method": None,
        "currency": "eur",
        "default_payment_method": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "end_date": end,
        "invoice_settings": None,
        "items": [
            {
                "discounts": [],
                "metadata": {},
                "price": entry["price"],
                "quantity": entry.get("quantity") or 1,
                "tax_rates": [],
            }
            for entry in items
        ],
        "metadata": params.get("metadata") or {},
        "on_behalf_of": None,
        "proration_behavior": params.get("proration_behavior") or "create_prorations",
        "start_date": start,
        "transfer_data": None,
        "trial_end": None,
    }


def set_phases(state: State, schedule: dict[str, Any], phases: list[dict[str, Any]]) -> None:
    """``phases`` (update params) replace the schedule's; the current phase keeps its start."""
    if schedule["status"] not in ("active", "not_started"):
        raise StripeError(
            400, f"You cannot update a subscription schedule that is currently in the `{schedule['status']}` status."
        )
    if not phases:
        raise StripeError(400, "Missing required param: phases.", code="parameter_missing", param="phases")
    start = schedule["current_phase"]["start_date"]
    built = []
    for index, params in enumerate(phases):
        given = params.get("start_date")
        if index == 0 and given not in (None, start):
            raise StripeError(
                400, "You can not modify the start date of the current phase.", param="phases[0][start_date]"
            )
        if not params.get("items"):
            raise StripeError(
                400,
                f"Missing required param: phases[{index}][items].",
                code="parameter_missing",
                param=f"phases[{index}][items]",
            )
        first_price = _price(state, params["items"][0]["price"])
        if params.get("end_date") not in (None, "now"):
            end = int(params["end_date"])
        elif params.get("duration"):
            unit = {"month": 1, "year": 12}[params["duration"]["interval"]]
            end = shift(start, unit * (params["duration"].get("interval_count") or 1))
        else:
            end = shift(start, interval_months(first_price))
        if end <= start:
            raise StripeError(
                400, "The phase end date must be after its start date.", param=f"phases[{index}][end_date]"
            )
        built.append(_phase(start, end, params["items"], params))
        start = end
    previous = {"phases": copy.deepcopy(schedule["phases"])}
    schedule["phases"] = built
    schedule["current_phase"] = {"start_date": built[0]["start_date"], "end_date": built[0]["end_date"]}
    state.emit("subscription_schedule.updated", schedule, previous)


def _schedule_boundary(state: State, schedule: dict[str, Any], sub: dict[str, Any], moment: int) -> None:
    """At ``moment`` a phase starts (its items replace the subscription's) or the last phase ends
    (the schedule is released, the subscription goes on with its items)."""
    upcoming = [phase for phase in schedule["phases"] if phase["start_date"] == moment]
    if upcoming:
        phase = upcoming[0]
        sub["items"]["data"] = [
            objects.subscription_item(
                state, sub["id"], _price(state, entry["price"]), entry["quantity"], moment, moment
            )
            for entry in phase["items"]
        ]
        sub["items"]["total_count"] = len(sub["items"]["data"])
        previous = {"current_phase": dict(schedule["current_phase"])}
        schedule["current_phase"] = {"start_date": phase["start_date"], "end_date": phase["end_date"]}
        state.emit("subscription_schedule.updated", schedule, previous)
    elif schedule["phases"] and schedule["phases"][-1]["end_date"] <= moment:
        release(state, schedule, sub, moment)


def release(state: State, schedule: dict[str, Any], sub: dict[str, Any] | None, moment: int) -> None:
    schedule.update(
        status="released",
        released_at=moment,
        released_subscription=schedule["subscription"],
        subscription=None,
        current_phase=None,
    )
    state.emit("subscription_schedule.released", schedule)
    if sub is not None:
        sub["schedule"] = None
        state.emit("customer.subscription.updated", sub, {"schedule": schedule["id"]})
