"""Customers: create, retrieve, update, delete, list, search; their tax ids and payment methods."""

from __future__ import annotations

import re
from typing import Any

from tests.stripe_stand_in import billing, objects
from tests.stripe_stand_in.endpoints.payments import list_payment_methods
from tests.stripe_stand_in.expand import render
from tests.stripe_stand_in.forms import Required, Spec, invalid, missing
from tests.stripe_stand_in.routes import (
    ADDRESS,
    EXPAND,
    PAGE,
    deleted,
    find,
    not_attached,
    page,
    route,
)
from tests.stripe_stand_in.state import State

CUSTOMER: Spec = {
    "name": "str",
    "email": "str",
    "description": "str",
    "phone": "str",
    "metadata": "map",
    "address": ADDRESS,
    "preferred_locales": "strs",
    "invoice_settings": {"default_payment_method": "str", "footer": "str"},
    **EXPAND,
}


# --- customers -------------------------------------------------------------------------------


@route(
    "POST",
    "/v1/customers",
    {**CUSTOMER, "test_clock": "str", "tax_id_data": [{"type": Required("str"), "value": Required("str")}]},
)
def create_customer(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    if params.get("test_clock"):
        find(state, params["test_clock"], "test_helpers.test_clock", "test_clock")
    pm = (params.get("invoice_settings") or {}).get("default_payment_method")
    if pm:
        raise invalid(
            "invoice_settings[default_payment_method]",
            f"No such PaymentMethod: '{pm}'; the payment method must be attached first.",
        )
    customer = objects.customer(state, params)
    state.emit("customer.created", customer)
    for entry in params.get("tax_id_data") or []:
        state.emit("customer.tax_id.created", objects.tax_id(state, customer["id"], entry["type"], entry["value"]))
    return customer


@route("GET", "/v1/customers/{id}", EXPAND)
def get_customer(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    obj = state.get(ids[0], "customer")
    if obj is None:
        raise missing("customer", ids[0])
    return obj


@route("POST", "/v1/customers/{id}", CUSTOMER)
def update_customer(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    customer = find(state, ids[0], "customer")
    previous: dict[str, Any] = {}
    for key in ("name", "email", "description", "phone", "preferred_locales"):
        if key in params and params[key] != customer[key]:
            previous[key] = customer[key]
            customer[key] = params[key] if params[key] != "" else None
    if "metadata" in params:
        merged = objects.merge_metadata(customer["metadata"], params["metadata"])
        if merged != customer["metadata"]:
            previous["metadata"] = customer["metadata"]
            customer["metadata"] = merged
    if "address" in params:
        address = (
            None
            if params["address"] == ""
            # An empty value unsets that line (Stripe shows it as null).
            else {
                **(customer["address"] or objects.empty_address()),
                **{key: value or None for key, value in params["address"].items()},
            }
        )
        if address != customer["address"]:
            previous["address"] = customer["address"]
            customer["address"] = address
    settings = params.get("invoice_settings") or {}
    if "default_payment_method" in settings:
        pm_id = settings["default_payment_method"] or None
        if pm_id is not None:
            pm = find(state, pm_id, "payment_method", "invoice_settings[default_payment_method]")
            if pm["customer"] != customer["id"]:
                raise invalid(
                    "invoice_settings[default_payment_method]",
                    not_attached(pm_id),
                )
        if pm_id != customer["invoice_settings"]["default_payment_method"]:
            previous["invoice_settings"] = {
                "default_payment_method": customer["invoice_settings"]["default_payment_method"]
            }
            customer["invoice_settings"]["default_payment_method"] = pm_id
    if "footer" in settings:
        customer["invoice_settings"]["footer"] = settings["footer"] or None
    if previous:
        state.emit("customer.updated", customer, previous)
    return customer


@route("DELETE", "/v1/customers/{id}", {})
def delete_customer(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    customer = find(state, ids[0], "customer")
    for sub in state.of_kind("subscription"):
        if sub["customer"] == customer["id"] and sub["status"] != "canceled":
            billing.cancel_now(state, sub)
    state.emit("customer.deleted", customer)
    state.objects[customer["id"]] = deleted(customer)
    return state.objects[customer["id"]]


@route("GET", "/v1/customers", {**PAGE, "email": "str", "test_clock": "str"})
def list_customers(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    found = [
        c
        for c in state.of_kind("customer")
        if params.get("email") in (None, c["email"]) and params.get("test_clock") in (None, c["test_clock"])
    ]
    return page(state, found, params, "/v1/customers", "customer")


_CLAUSE = re.compile(r"""^\s*(metadata\[(['"])(?P<key>[^'"]+)\2\]|email|name)\s*:\s*(['"])(?P<value>[^'"]*)\4\s*$""")


@route("GET", "/v1/customers/search", {"query": Required("str"), "limit": "int", "page": "str", **EXPAND})
def search_customers(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    """Search Query Language, the exact-match clauses joined by AND the billing code may use
    (``metadata['k']:'v'``, ``email:'x'``, ``name:'x'``). Stripe's search index lags writes by up
    to a minute; the stand-in's does not."""
    tests = []
    for clause in re.split(r"\s+AND\s+", params["query"]):
        match = _CLAUSE.match(clause)
        if match is None:
            raise invalid("query", f"The stand-in does not implement this search query: {params['query']}")
        tests.append(match)
    found = []
    for customer in state.of_kind("customer"):
        if all(
            (customer["metadata"].get(m["key"]) if m["key"] else customer.get(m.group(1))) == m["value"] for m in tests
        ):
            found.append(render(state, customer))
    limit = params.get("limit") or 10
    return {
        "object": "search_result",
        "data": found[:limit],
        "has_more": len(found) > limit,
        "next_page": None,
        "url": "/v1/customers/search",
    }


@route("POST", "/v1/customers/{id}/tax_ids", {"type": Required("str"), "value": Required("str"), **EXPAND})
def create_tax_id(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    customer = find(state, ids[0], "customer")
    if params["type"] == "eu_vat" and not re.fullmatch(r"[A-Z]{2}[0-9A-Z]{2,13}", params["value"]):
        raise invalid("value", "Invalid value for eu_vat.", "tax_id_invalid")
    tax = objects.tax_id(state, customer["id"], params["type"], params["value"])
    state.emit("customer.tax_id.created", tax)
    return tax


@route("GET", "/v1/customers/{id}/tax_ids", PAGE)
def list_tax_ids(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    find(state, ids[0], "customer")
    found = [t for t in state.of_kind("tax_id") if t["customer"] == ids[0]]
    return page(state, found, params, f"/v1/customers/{ids[0]}/tax_ids", "tax_id")


@route("DELETE", "/v1/customers/{id}/tax_ids/{tax}", {})
def delete_tax_id(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    find(state, ids[0], "customer")
    tax = find(state, ids[1], "tax_id")
    state.emit("customer.tax_id.deleted", tax)
    state.objects[tax["id"]] = deleted(tax)
    return state.objects[tax["id"]]


@route("GET", "/v1/customers/{id}/payment_methods", {**PAGE, "type": "str", "allow_redisplay": "str"})
def list_customer_payment_methods(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    find(state, ids[0], "customer")
    return list_payment_methods(state, {**params, "customer": ids[0]}, [])
