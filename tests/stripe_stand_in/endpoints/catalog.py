"""Products and prices (recurring prices with lookup keys)."""

from __future__ import annotations

from typing import Any

from tests.stripe_stand_in import objects
from tests.stripe_stand_in.forms import Required, Spec, invalid
from tests.stripe_stand_in.routes import (
    EXPAND,
    INTERVALS,
    PAGE,
    find,
    page,
    route,
)
from tests.stripe_stand_in.state import State

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
