"""Checkout Sessions and billing portal sessions."""

from __future__ import annotations

from typing import Any

from tests.stripe_stand_in import checkout
from tests.stripe_stand_in.forms import Required, Spec
from tests.stripe_stand_in.routes import (
    EXPAND,
    PAGE,
    find,
    page,
    route,
)
from tests.stripe_stand_in.state import State

# --- checkout --------------------------------------------------------------------------------

CHECKOUT: Spec = {
    "mode": Required(("payment", "setup", "subscription")),
    "customer": "str",
    "customer_email": "str",
    "client_reference_id": "str",
    "line_items": [{"price": "str", "quantity": "int"}],
    "payment_method_types": "strs",
    "success_url": "str",
    "cancel_url": "str",
    "metadata": "map",
    "currency": "str",
    "locale": "str",
    "expires_at": "int",
    "allow_promotion_codes": "bool",
    "billing_address_collection": ("auto", "required"),
    "subscription_data": {"metadata": "map", "description": "str"},
    "setup_intent_data": {"metadata": "map", "description": "str"},
    "tax_id_collection": {"enabled": Required("bool")},
    "customer_update": {"address": ("auto", "never"), "name": ("auto", "never")},
    **EXPAND,
}


@route("POST", "/v1/checkout/sessions", CHECKOUT)
def create_checkout_session(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    return checkout.create(state, params)


@route("GET", "/v1/checkout/sessions/{id}", EXPAND)
def get_checkout_session(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "checkout.session")


@route(
    "GET",
    "/v1/checkout/sessions",
    {**PAGE, "customer": "str", "subscription": "str", "status": ("complete", "expired", "open")},
)
def list_checkout_sessions(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    found = [
        s
        for s in state.of_kind("checkout.session")
        if all(params.get(key) in (None, s[key]) for key in ("customer", "subscription", "status"))
    ]
    return page(state, found, params, "/v1/checkout/sessions", "checkout.session")


@route("POST", "/v1/checkout/sessions/{id}/expire", EXPAND)
def expire_checkout_session(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    session = find(state, ids[0], "checkout.session")
    checkout.expire(state, session)
    return session


@route("GET", "/v1/checkout/sessions/{id}/line_items", PAGE)
def list_checkout_line_items(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    find(state, ids[0], "checkout.session")
    return page(
        state, state.hidden[ids[0]].get("line_items", []), params, f"/v1/checkout/sessions/{ids[0]}/line_items", "item"
    )


# --- billing portal, test clocks, events -----------------------------------------------------


@route(
    "POST",
    "/v1/billing_portal/sessions",
    {"customer": Required("str"), "return_url": "str", "configuration": "str", "locale": "str", **EXPAND},
)
def create_portal_session(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    customer = find(state, params["customer"], "customer", "customer")
    session_id = state.new_id("bps")
    return state.add(
        {
            "id": session_id,
            "object": "billing_portal.session",
            "configuration": params.get("configuration") or "bpc_1StandInDefault0000",
            "created": state.now(customer["id"]),
            "customer": customer["id"],
            "flow": None,
            "livemode": False,
            "locale": params.get("locale"),
            "on_behalf_of": None,
            "return_url": params.get("return_url"),
            "url": f"https://billing.stripe.com/p/session/test_{session_id[4:]}",
        }
    )
