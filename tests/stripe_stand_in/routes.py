"""The endpoints: method, path, the parameters Stripe takes there that the stand-in implements,
and what they do.

A parameter Stripe knows but the stand-in does not implement is refused like an unknown one
(``parameter_unknown``): billing code that starts to rely on it fails loudly here rather than
being answered something Stripe would not say. Parameter names and nesting follow
stripe-python's request types (``stripe.params``) for the pinned API version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.stripe_stand_in import billing, checkout, objects, schedules
from tests.stripe_stand_in.expand import render
from tests.stripe_stand_in.forms import Required, Spec, invalid, missing
from tests.stripe_stand_in.state import State

Handler = Callable[[State, dict[str, Any], list[str]], dict[str, Any]]

EXPAND: Spec = {"expand": "strs"}
PAGE: Spec = {"limit": "int", "starting_after": "str", "ending_before": "str", **EXPAND}
ADDRESS: Spec = {"city": "str", "country": "str", "line1": "str", "line2": "str", "postal_code": "str", "state": "str"}
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
INTERVALS = ("day", "month", "week", "year")
PRORATION = ("always_invoice", "create_prorations", "none")

#: How Stripe names each kind in "No such …" errors.
_NAMES = {
    "payment_method": "PaymentMethod",
    "setup_intent": "setupintent",
    "checkout.session": "checkout.session",
    "test_helpers.test_clock": "test_clock",
    "subscription_schedule": "subscription_schedule",
}


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    spec: Spec
    handler: Handler


ROUTES: list[Route] = []


def route(method: str, path: str, spec: Spec) -> Callable[[Handler], Handler]:
    pattern = re.compile("^" + re.sub(r"\{\w+\}", r"([^/]+)", path) + "$")

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, pattern, spec, handler))
        return handler

    return register


def find(state: State, object_id: str, kind: str, param: str = "id") -> dict[str, Any]:
    obj = state.get(object_id, kind)
    if obj is None or obj.get("deleted"):
        raise missing(_NAMES.get(kind, kind), object_id, param)
    return obj


def page(state: State, items: list[dict[str, Any]], params: dict[str, Any], url: str, kind: str) -> dict[str, Any]:
    """Stripe's cursor pagination over ``items`` (newest first)."""
    limit = params.get("limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= 100:
        raise invalid(
            "limit",
            "This value must be greater than or equal to 1."
            if limit < 1
            else "This value must be less than or equal to 100.",
        )
    ids = [item["id"] for item in items]
    if params.get("starting_after"):
        cursor = params["starting_after"]
        if cursor not in ids:
            raise missing(_NAMES.get(kind, kind), cursor, "starting_after")
        items = items[ids.index(cursor) + 1 :]
        chosen = items[:limit]
    elif params.get("ending_before"):
        cursor = params["ending_before"]
        if cursor not in ids:
            raise missing(_NAMES.get(kind, kind), cursor, "ending_before")
        items = items[: ids.index(cursor)]
        chosen = items[-limit:]
    else:
        chosen = items[:limit]
    return {
        "object": "list",
        "data": [render(state, item) for item in chosen],
        "has_more": len(items) > len(chosen),
        "url": url,
    }


def _not_attached(pm_id: str) -> str:
    return (
        f"The customer does not have a payment method with the ID {pm_id}. "
        "The payment method must be attached to the customer."
    )


def _deleted(obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": obj["id"], "object": obj["object"], "deleted": True}


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
            else {**(customer["address"] or objects.empty_address()), **params["address"]}
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
                    _not_attached(pm_id),
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
    state.objects[customer["id"]] = _deleted(customer)
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
    state.objects[tax["id"]] = _deleted(tax)
    return state.objects[tax["id"]]


@route("GET", "/v1/customers/{id}/payment_methods", {**PAGE, "type": "str", "allow_redisplay": "str"})
def list_customer_payment_methods(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    find(state, ids[0], "customer")
    return list_payment_methods(state, {**params, "customer": ids[0]}, [])


# --- products and prices ---------------------------------------------------------------------


@route(
    "POST",
    "/v1/products",
    {"name": Required("str"), "id": "str", "active": "bool", "description": "str", "metadata": "map", **EXPAND},
)
def create_product(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    if params.get("id") and params["id"] in state.objects:
        raise invalid("id", "Product already exists.", "resource_already_exists")
    product = objects.product(state, params)
    state.emit("product.created", product)
    return product


@route("GET", "/v1/products/{id}", EXPAND)
def get_product(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "product")


@route("GET", "/v1/products", {**PAGE, "active": "bool", "ids": "strs"})
def list_products(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    found = [
        p
        for p in state.of_kind("product")
        if params.get("active") in (None, p["active"]) and (not params.get("ids") or p["id"] in params["ids"])
    ]
    return page(state, found, params, "/v1/products", "product")


@route(
    "POST",
    "/v1/products/{id}",
    {"name": "str", "active": "bool", "description": "str", "metadata": "map", "default_price": "str", **EXPAND},
)
def update_product(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    product = find(state, ids[0], "product")
    previous = {key: product[key] for key in ("name", "active", "description", "default_price") if key in params}
    product.update({key: params[key] for key in previous})
    if "metadata" in params:
        previous["metadata"] = product["metadata"]
        product["metadata"] = objects.merge_metadata(product["metadata"], params["metadata"])
    product["updated"] = state.now()
    state.emit("product.updated", product, previous)
    return product


PRICE: Spec = {
    "currency": Required("str"),
    "unit_amount": "int",
    "product": "str",
    "product_data": {"name": Required("str"), "metadata": "map"},
    "recurring": {"interval": Required(INTERVALS), "interval_count": "int"},
    "lookup_key": "str",
    "transfer_lookup_key": "bool",
    "nickname": "str",
    "metadata": "map",
    "active": "bool",
    "tax_behavior": ("exclusive", "inclusive", "unspecified"),
    **EXPAND,
}


def _lookup_key_free(state: State, key: str | None, transfer: bool, keep: str | None = None) -> None:
    for other in state.of_kind("price"):
        if key and other["lookup_key"] == key and other["id"] != keep:
            if not transfer:
                raise invalid("lookup_key", f"A price (`{other['id']}`) already uses that lookup key.")
            other["lookup_key"] = None


@route("POST", "/v1/prices", PRICE)
def create_price(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    if params.get("product") and params.get("product_data"):
        raise invalid("product_data", "You may only specify one of these parameters: product, product_data.")
    if params.get("product"):
        product_id = find(state, params["product"], "product", "product")["id"]
    elif params.get("product_data"):
        product = objects.product(state, params["product_data"])
        state.emit("product.created", product)
        product_id = product["id"]
    else:
        raise invalid("product", "Missing required param: product.", "parameter_missing")
    if params.get("unit_amount") is None:
        raise invalid("unit_amount", "Missing required param: unit_amount.", "parameter_missing")
    _lookup_key_free(state, params.get("lookup_key"), bool(params.get("transfer_lookup_key")))
    price = objects.price(state, params, product_id)
    state.emit("price.created", price)
    return price


@route("GET", "/v1/prices/{id}", EXPAND)
def get_price(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "price")


@route(
    "GET",
    "/v1/prices",
    {
        **PAGE,
        "lookup_keys": "strs",
        "active": "bool",
        "product": "str",
        "currency": "str",
        "type": ("one_time", "recurring"),
    },
)
def list_prices(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    keys = params.get("lookup_keys")
    found = [
        p
        for p in state.of_kind("price")
        if (not keys or p["lookup_key"] in keys)
        and params.get("active") in (None, p["active"])
        and params.get("product") in (None, p["product"])
        and params.get("currency") in (None, p["currency"])
        and params.get("type") in (None, p["type"])
    ]
    return page(state, found, params, "/v1/prices", "price")


@route(
    "POST",
    "/v1/prices/{id}",
    {
        "active": "bool",
        "lookup_key": "str",
        "transfer_lookup_key": "bool",
        "nickname": "str",
        "metadata": "map",
        **EXPAND,
    },
)
def update_price(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    price = find(state, ids[0], "price")
    previous: dict[str, Any] = {}
    if "lookup_key" in params:
        _lookup_key_free(state, params["lookup_key"], bool(params.get("transfer_lookup_key")), keep=price["id"])
    for key in ("active", "lookup_key", "nickname"):
        if key in params:
            previous[key] = price[key]
            price[key] = params[key] if params[key] != "" else None
    if "metadata" in params:
        previous["metadata"] = price["metadata"]
        price["metadata"] = objects.merge_metadata(price["metadata"], params["metadata"])
    state.emit("price.updated", price, previous)
    return price


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


# --- subscriptions ---------------------------------------------------------------------------

SUB_STATUSES = (
    "active",
    "all",
    "canceled",
    "ended",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
)


@route("GET", "/v1/subscriptions/{id}", EXPAND)
def get_subscription(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "subscription")


@route(
    "GET", "/v1/subscriptions", {**PAGE, "customer": "str", "status": SUB_STATUSES, "price": "str", "test_clock": "str"}
)
def list_subscriptions(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    status = params.get("status")

    def wanted(sub: dict[str, Any]) -> bool:
        if status is None:
            return sub["status"] != "canceled"  # Stripe's default list leaves canceled ones out
        if status == "all":
            return True
        if status == "ended":
            return sub["status"] in ("canceled", "incomplete_expired")
        return bool(sub["status"] == status)

    found = [
        s
        for s in state.of_kind("subscription")
        if wanted(s)
        and params.get("customer") in (None, s["customer"])
        and (not params.get("price") or any(i["price"]["id"] == params["price"] for i in s["items"]["data"]))
    ]
    return page(state, found, params, "/v1/subscriptions", "subscription")


@route(
    "POST",
    "/v1/subscriptions/{id}",
    {
        "items": [{"id": "str", "price": "str", "quantity": "int", "deleted": "bool", "metadata": "map"}],
        "proration_behavior": PRORATION,
        "cancel_at_period_end": "bool",
        "default_payment_method": "str",
        "metadata": "map",
        "cancellation_details": {"comment": "str", "feedback": "str"},
        "payment_behavior": ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"),
        **EXPAND,
    },
)
def update_subscription(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    sub = find(state, ids[0], "subscription")
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid("id", "A canceled subscription can only update its cancellation_details and metadata.")
    now = state.now(sub["customer"])
    if "default_payment_method" in params:
        pm_id = params["default_payment_method"] or None
        if pm_id and find(state, pm_id, "payment_method", "default_payment_method")["customer"] != sub["customer"]:
            raise invalid(
                "default_payment_method",
                _not_attached(pm_id),
            )
        previous_pm = sub["default_payment_method"]
        sub["default_payment_method"] = pm_id
        state.emit("customer.subscription.updated", sub, {"default_payment_method": previous_pm})
    if "metadata" in params:
        previous_metadata = sub["metadata"]
        sub["metadata"] = objects.merge_metadata(sub["metadata"], params["metadata"])
        state.emit("customer.subscription.updated", sub, {"metadata": previous_metadata})
    if "cancel_at_period_end" in params and params["cancel_at_period_end"] != sub["cancel_at_period_end"]:
        previous = {key: sub[key] for key in ("cancel_at", "cancel_at_period_end", "canceled_at")}
        previous["cancellation_details"] = dict(sub["cancellation_details"])
        if params["cancel_at_period_end"]:
            sub.update(
                cancel_at_period_end=True, cancel_at=sub["items"]["data"][0]["current_period_end"], canceled_at=now
            )
            sub["cancellation_details"]["reason"] = "cancellation_requested"
        else:
            sub.update(cancel_at_period_end=False, cancel_at=None, canceled_at=None)
            sub["cancellation_details"]["reason"] = None
        if params.get("cancellation_details"):
            sub["cancellation_details"].update(params["cancellation_details"])
        state.emit("customer.subscription.updated", sub, previous)
    if params.get("items"):
        billing.update_items(state, sub, params["items"], params.get("proration_behavior") or "create_prorations")
    return sub


@route(
    "DELETE",
    "/v1/subscriptions/{id}",
    {"cancellation_details": {"comment": "str", "feedback": "str"}, "invoice_now": "bool", "prorate": "bool", **EXPAND},
)
def cancel_subscription(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    sub = find(state, ids[0], "subscription")
    if sub["status"] == "canceled":
        raise invalid("id", f"No such subscription: '{sub['id']}'", "resource_missing")
    if params.get("cancellation_details"):
        sub["cancellation_details"].update(params["cancellation_details"])
    billing.cancel_now(state, sub)
    return sub


# --- subscription schedules ------------------------------------------------------------------

PHASE: Spec = {
    "items": [{"price": Required("str"), "quantity": "int", "metadata": "map"}],
    "start_date": "ts",
    "end_date": "ts",
    "duration": {"interval": Required(INTERVALS), "interval_count": "int"},
    "proration_behavior": PRORATION,
    "metadata": "map",
}
END_BEHAVIOR = ("cancel", "none", "release", "renew")


@route(
    "POST",
    "/v1/subscription_schedules",
    {
        "from_subscription": "str",
        "customer": "str",
        "phases": [PHASE],
        "end_behavior": END_BEHAVIOR,
        "metadata": "map",
        **EXPAND,
    },
)
def create_schedule(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    if not params.get("from_subscription"):
        raise invalid(
            "from_subscription",
            "The stand-in creates subscription schedules from a subscription only (from_subscription).",
        )
    for key in ("phases", "end_behavior", "customer"):
        if key in params:
            raise invalid(key, f"You cannot set `{key}` if `from_subscription` is set.")
    sub = find(state, params["from_subscription"], "subscription", "from_subscription")
    schedule = schedules.schedule_from_subscription(state, sub)
    if params.get("metadata"):
        schedule["metadata"] = objects.merge_metadata({}, params["metadata"])
    return schedule


@route("GET", "/v1/subscription_schedules/{id}", EXPAND)
def get_schedule(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "subscription_schedule")


@route(
    "POST",
    "/v1/subscription_schedules/{id}",
    {"phases": [PHASE], "end_behavior": END_BEHAVIOR, "proration_behavior": PRORATION, "metadata": "map", **EXPAND},
)
def update_schedule(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    schedule = find(state, ids[0], "subscription_schedule")
    if params.get("end_behavior"):
        if params["end_behavior"] not in ("release", "cancel"):
            raise invalid("end_behavior", "The stand-in implements end_behavior `release` and `cancel` only.")
        schedule["end_behavior"] = params["end_behavior"]
    if "metadata" in params:
        schedule["metadata"] = objects.merge_metadata(schedule["metadata"], params["metadata"])
    if "phases" in params:
        schedules.set_phases(state, schedule, params["phases"])
    return schedule


@route("POST", "/v1/subscription_schedules/{id}/release", {"preserve_cancel_date": "bool", **EXPAND})
def release_schedule(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    schedule = find(state, ids[0], "subscription_schedule")
    if schedule["status"] not in ("active", "not_started"):
        raise invalid(
            "schedule",
            f"You cannot release a subscription schedule that is currently in the `{schedule['status']}` status. "
            "It must be in one of the following statuses: `not_started`, `active`.",
        )
    sub = state.objects.get(schedule["subscription"] or "")
    schedules.release(state, schedule, sub, state.now(schedule["customer"]))
    return schedule


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


@route("POST", "/v1/test_helpers/test_clocks", {"frozen_time": Required("int"), "name": "str", **EXPAND})
def create_test_clock(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    clock = objects.test_clock(state, params["frozen_time"], params.get("name"))
    state.emit("test_helpers.test_clock.created", clock)
    return clock


@route("GET", "/v1/test_helpers/test_clocks/{id}", EXPAND)
def get_test_clock(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "test_helpers.test_clock")


@route("GET", "/v1/test_helpers/test_clocks", PAGE)
def list_test_clocks(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    return page(
        state,
        state.of_kind("test_helpers.test_clock"),
        params,
        "/v1/test_helpers/test_clocks",
        "test_helpers.test_clock",
    )


@route("POST", "/v1/test_helpers/test_clocks/{id}/advance", {"frozen_time": Required("int"), **EXPAND})
def advance_test_clock(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    clock = find(state, ids[0], "test_helpers.test_clock")
    if params["frozen_time"] <= clock["frozen_time"]:
        raise invalid("frozen_time", "The frozen time must be after the current frozen time of the test clock.")
    customers = {c["id"] for c in state.of_kind("customer") if c["test_clock"] == clock["id"]}
    clock["status"] = "advancing"
    state.emit("test_helpers.test_clock.advancing", clock)
    billing.run_until(state, params["frozen_time"], customers)
    clock["frozen_time"] = params["frozen_time"]
    answer = render(state, clock)  # the answer says "advancing", as Stripe's does; the work is
    clock["status"] = "ready"  # done at once, so the next read says "ready"
    state.emit("test_helpers.test_clock.ready", clock)
    return answer


@route("DELETE", "/v1/test_helpers/test_clocks/{id}", {})
def delete_test_clock(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    clock = find(state, ids[0], "test_helpers.test_clock")
    state.objects[clock["id"]] = _deleted(clock)
    return state.objects[clock["id"]]


@route("GET", "/v1/events/{id}", EXPAND)
def get_event(state: State, params: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return find(state, ids[0], "event")


@route("GET", "/v1/events", {**PAGE, "type": "str", "types": "strs"})
def list_events(state: State, params: dict[str, Any], _: list[str]) -> dict[str, Any]:
    def wanted(kind: str) -> bool:
        if params.get("type"):
            pattern = re.escape(params["type"]).replace(r"\*", ".*")
            return re.fullmatch(pattern, kind) is not None
        return not params.get("types") or kind in params["types"]

    found = [e for e in state.of_kind("event") if wanted(e["type"])]
    return page(state, found, params, "/v1/events", "event")
