"""Checkout Sessions: created by the API, completed by the test as the customer would.

``create`` checks what Stripe checks for the modes the stand-in speaks (``subscription`` and
``setup``); ``complete`` does what Stripe's hosted page does when the customer pays: a customer
if there was none, the payment method, the subscription and its first invoice (or, in setup
mode, a succeeded SetupIntent), then ``checkout.session.completed``. A card or iDEAL payment is
``paid`` at once (iDEAL leaves a SEPA Direct Debit method, ``generated_from`` its charge, for
the renewals); a SEPA debit completes ``unpaid`` and its outcome arrives later.
"""

from __future__ import annotations

from typing import Any

from tests.stripe_stand_in import billing, objects
from tests.stripe_stand_in.forms import StripeError, invalid, missing
from tests.stripe_stand_in.state import State, token

METHODS = ("card", "ideal", "sepa_debit")
#: Payment method types that only take euros.
_EURO_ONLY = {"ideal", "sepa_debit", "bancontact"}


def create(state: State, params: dict[str, Any]) -> dict[str, Any]:
    mode = params["mode"]
    if mode == "payment":
        raise StripeError(
            400, "The Stripe stand-in implements Checkout in `subscription` and `setup` mode only.", param="mode"
        )
    if params.get("customer") and params.get("customer_email"):
        raise invalid("customer_email", "You may only specify one of these parameters: customer, customer_email.")
    customer_id = params.get("customer")
    if customer_id:
        found = state.get(customer_id, "customer")
        if found is None or found.get("deleted"):
            raise missing("customer", customer_id, "customer")
    line_items: list[dict[str, Any]] = []
    currency = params.get("currency")
    if mode == "subscription":
        if not params.get("line_items"):
            raise invalid(
                "line_items", "You must provide at least one recurring price in `subscription` mode when using prices."
            )
        for index, entry in enumerate(params["line_items"]):
            if not entry.get("price"):
                raise invalid(
                    f"line_items[{index}][price]",
                    f"Missing required param: line_items[{index}][price].",
                    "parameter_missing",
                )
            price = state.get(entry["price"], "price")
            if price is None:
                raise missing("price", entry["price"], f"line_items[{index}][price]")
            if price["type"] != "recurring":
                raise invalid(
                    "line_items",
                    "You must provide at least one recurring price in `subscription` mode when using prices.",
                )
            quantity = entry.get("quantity") or 1
            currency = price["currency"]
            product = state.objects[price["product"]]
            line_items.append(
                {
                    "id": state.new_id("li"),
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": price["unit_amount"] * quantity,
                    "amount_tax": 0,
                    "amount_total": price["unit_amount"] * quantity,
                    "currency": price["currency"],
                    "description": product["name"],
                    "price": dict(price),
                    "quantity": quantity,
                }
            )
    elif line_items := params.get("line_items") or []:
        raise invalid("line_items", "You cannot pass `line_items` in `setup` mode.")
    types = params.get("payment_method_types")
    if mode == "setup" and not types and not currency:
        raise invalid("currency", "currency is required in setup mode when payment_method_types is not set.")
    for index, kind in enumerate(types or []):
        if kind not in METHODS:
            raise invalid(
                f"payment_method_types[{index}]", f"The stand-in does not implement payment method type `{kind}`."
            )
        if kind in _EURO_ONLY and currency and currency != "eur":
            raise invalid(
                "payment_method_types",
                f"The currency provided ({currency}) is invalid for one or more payment method types "
                f"provided ({kind}).",
            )
        if mode == "setup" and kind == "ideal":
            raise invalid(
                "payment_method_types",
                "The payment method type `ideal` cannot be used in `setup` mode; use `sepa_debit`.",
            )
    now = state.now(customer_id)
    session_id = f"cs_test_{token(58)}"
    total = sum(item["amount_total"] for item in line_items) if mode == "subscription" else None
    session = {
        "id": session_id,
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": params.get("allow_promotion_codes"),
        "amount_subtotal": total,
        "amount_total": total,
        "billing_address_collection": params.get("billing_address_collection"),
        "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id"),
        "client_secret": None,
        "created": now,
        "currency": currency,
        "custom_fields": [],
        "customer": customer_id,
        "customer_creation": None if customer_id else "always",
        "customer_details": None,
        "customer_email": params.get("customer_email"),
        "expires_at": params.get("expires_at") or now + 86400,
        "invoice": None,
        "livemode": False,
        "locale": params.get("locale"),
        "metadata": objects.merge_metadata({}, params.get("metadata") or {}),
        "mode": mode,
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "always",
        "payment_method_types": types or ["card"],
        "payment_status": "unpaid" if mode == "subscription" else "no_payment_required",
        "recovered_from": None,
        "setup_intent": None,
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": params.get("success_url"),
        "tax_id_collection": {
            "enabled": bool((params.get("tax_id_collection") or {}).get("enabled")),
            "required": "never",
        },
        "ui_mode": "hosted",
        "url": f"https://checkout.stripe.com/c/pay/{session_id}#fid{token(40)}",
    }
    state.add(
        session,
        line_items=line_items,
        subscription_data=params.get("subscription_data") or {},
        setup_intent_data=params.get("setup_intent_data") or {},
    )
    return session


def complete(
    state: State, session: dict[str, Any], method: str, outcome: str, email: str | None, name: str | None
) -> None:
    """The customer pays (or sets up) on the hosted page with ``method``; ``outcome`` is what
    the method's later payments do (``succeed`` or ``fail``; SEPA outcomes arrive on settle)."""
    if session["status"] != "open":
        raise ValueError(f"{session['id']} is {session['status']}")
    if method not in session["payment_method_types"]:
        raise ValueError(f"{method} is not offered by {session['id']} ({session['payment_method_types']})")
    if method == "card" and outcome == "fail" and session["mode"] == "subscription":
        raise ValueError("Checkout does not complete with a declined card: the customer stays on the page")
    hidden = state.hidden[session["id"]]
    customer = state.objects.get(session["customer"] or "")
    if customer is None:
        customer = objects.customer(state, {"email": email or session["customer_email"], "name": name})
        state.emit("customer.created", customer)
        session["customer"] = customer["id"]
    session["customer_details"] = {
        "address": customer.get("address") or objects.empty_address(),
        "email": customer.get("email") or email,
        "name": customer.get("name") or name,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }
    if session["mode"] == "setup":
        _complete_setup(state, session, customer, method, outcome)
        return
    first_payment: dict[str, Any]
    if method == "ideal":
        first_payment = _ideal(state, customer["id"])
        saved = objects.payment_method(state, "sepa_debit", None, outcome=outcome)
    else:
        saved = objects.payment_method(state, method, None, outcome=outcome)
        first_payment = saved
    saved["customer"] = customer["id"]
    state.emit("payment_method.attached", saved)
    prices = [(state.objects[item["price"]["id"]], item["quantity"]) for item in hidden["line_items"]]
    metadata = (hidden["subscription_data"] or {}).get("metadata") or {}
    sub = billing.create_subscription(state, customer["id"], prices, saved, metadata)
    sub["description"] = (hidden["subscription_data"] or {}).get("description")
    state.hidden[sub["id"]]["checkout"] = session["id"]
    invoice = billing.first_invoice(state, sub, first_payment)
    if method == "ideal":
        charge_id = state.objects[_intent_of(state, invoice)]["latest_charge"]
        saved["sepa_debit"]["generated_from"]["charge"] = charge_id
    session.update(status="complete", subscription=sub["id"], invoice=invoice["id"])
    session["payment_status"] = "paid" if invoice["status"] == "paid" else "unpaid"
    state.emit("checkout.session.completed", session)


def _intent_of(state: State, invoice: dict[str, Any]) -> str:
    payment = state.objects[state.hidden[invoice["id"]]["payment"]]
    return str(payment["payment"]["payment_intent"])


def _ideal(state: State, customer_id: str) -> dict[str, Any]:
    """The one-off iDEAL payment method of the first payment (never attached: Stripe keeps the
    SEPA Direct Debit method it generates instead)."""
    return state.add(
        {
            "id": state.new_id("pm"),
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": objects.empty_address(),
                "email": None,
                "name": None,
                "phone": None,
                "tax_id": None,
            },
            "created": state.now(customer_id),
            "customer": None,
            "ideal": {"bank": "ing", "bic": "INGBNL2A"},
            "livemode": False,
            "metadata": {},
            "type": "ideal",
        },
        outcome="succeed",
    )


def _complete_setup(state: State, session: dict[str, Any], customer: dict[str, Any], method: str, outcome: str) -> None:
    intent = objects.setup_intent(state, customer["id"], session["payment_method_types"])
    intent["metadata"] = dict((state.hidden[session["id"]]["setup_intent_data"] or {}).get("metadata") or {})
    state.emit("setup_intent.created", intent)
    pm = objects.payment_method(state, method, None, outcome=outcome)
    pm["customer"] = customer["id"]
    state.emit("payment_method.attached", pm)
    intent.update(status="succeeded", payment_method=pm["id"])
    if method == "sepa_debit":
        intent["mandate"] = state.new_id("mandate")
    state.emit("setup_intent.succeeded", intent)
    session.update(status="complete", setup_intent=intent["id"])
    state.emit("checkout.session.completed", session)


def expire(state: State, session: dict[str, Any]) -> None:
    if session["status"] != "open":
        raise StripeError(
            400,
            'Only Checkout Sessions with a status in ["open"] can be expired. '
            f'This Checkout Session has a status of "{session["status"]}".',
        )
    session["status"] = "expired"
    state.emit("checkout.session.expired", session)
