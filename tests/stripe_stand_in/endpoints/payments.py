"""Payment methods (attach, detach, list), setup and payment intents, charges, invoices."""

from __future__ import annotations

from typing import Any

from tests.stripe_stand_in import objects
from tests.stripe_stand_in.forms import Required, invalid
from tests.stripe_stand_in.routes import (
    EXPAND,
    PAGE,
    find,
    page,
    route,
)
from tests.stripe_stand_in.state import State

# --- payment methods, intents, charges -------------------------------------------------------

#: Stripe's test payment method tokens that ``attach`` accepts (a fresh method each time).
TEST_TOKENS = {
    "pm_card_visa": ("card", "visa", "succeed"),
    "pm_card_mastercard": ("card", "mastercard", "succeed"),
    "pm_card_chargeCustomerFail": ("card", "visa", "fail"),
}


@route("GET", "/v1/payment_methods", {**PAGE, "customer": "str", "type": "str"})
def list_payment_methods(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    if params.get("customer"):
        find(state, params["customer"], "customer", "customer")
    found = [
        pm
        for pm in state.of_kind("payment_method")
        if pm["customer"]
        and params.get("customer") in (None, pm["customer"])
        and params.get("type") in (None, pm["type"])
    ]
    url = f"/v1/customers/{params['customer']}/payment_methods" if params.get("customer") else "/v1/payment_methods"
    return page(state, found, params, url, "payment_method")


@route("GET", "/v1/payment_methods/{id}", EXPAND)
def get_payment_method(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "payment_method")


@route("POST", "/v1/payment_methods/{id}/attach", {"customer": Required("str"), **EXPAND})
def attach_payment_method(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    customer = find(state, params["customer"], "customer", "customer")
    if ids[0] in TEST_TOKENS:
        kind, brand, outcome = TEST_TOKENS[ids[0]]
        pm = objects.payment_method(state, kind, None, outcome=outcome, brand=brand)
    else:
        pm = find(state, ids[0], "payment_method")
    if pm["customer"] == customer["id"]:
        return pm
    if pm["customer"]:
        raise invalid("payment_method", "The payment method you provided has already been attached to a customer.")
    pm["customer"] = customer["id"]
    state.emit("payment_method.attached", pm)
    return pm


@route("POST", "/v1/payment_methods/{id}/detach", EXPAND)
def detach_payment_method(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    pm = find(state, ids[0], "payment_method")
    if not pm["customer"]:
        raise invalid(
            "payment_method",
            "The payment method you provided is not attached to a customer so detachment is impossible.",
        )
    customer = state.objects[pm["customer"]]
    previous_customer = pm["customer"]
    pm["customer"] = None
    state.emit("payment_method.detached", pm, {"customer": previous_customer})
    if customer.get("invoice_settings", {}).get("default_payment_method") == pm["id"]:
        customer["invoice_settings"]["default_payment_method"] = None
        state.emit("customer.updated", customer, {"invoice_settings": {"default_payment_method": pm["id"]}})
    for sub in state.of_kind("subscription"):
        if sub["default_payment_method"] == pm["id"]:
            sub["default_payment_method"] = None
            state.emit("customer.subscription.updated", sub, {"default_payment_method": pm["id"]})
    return pm


@route("GET", "/v1/setup_intents/{id}", EXPAND)
def get_setup_intent(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "setup_intent")


@route("GET", "/v1/payment_intents/{id}", EXPAND)
def get_payment_intent(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "payment_intent")


@route("GET", "/v1/charges/{id}", EXPAND)
def get_charge(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "charge")


# --- invoices --------------------------------------------------------------------------------


@route(
    "GET",
    "/v1/invoices",
    {**PAGE, "customer": "str", "subscription": "str", "status": ("draft", "open", "paid", "uncollectible", "void")},
)
def list_invoices(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    found = [
        i
        for i in state.of_kind("invoice")
        if params.get("customer") in (None, i["customer"])
        and params.get("subscription") in (None, i["parent"]["subscription_details"]["subscription"])
        and params.get("status") in (None, i["status"])
    ]
    return page(state, found, params, "/v1/invoices", "invoice")


@route("GET", "/v1/invoices/{id}", EXPAND)
def get_invoice(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "invoice")
