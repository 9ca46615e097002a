"""The route table: each endpoint's method, path, the parameters Stripe takes there that the
stand-in implements, and its handler (the handlers are in ``tests/stripe_stand_in/endpoints/``).

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

from tests.stripe_stand_in.expand import render
from tests.stripe_stand_in.forms import Spec, invalid, missing
from tests.stripe_stand_in.state import State

Handler = Callable[[State, dict[str, Any], list[str]], dict[str, Any]]

EXPAND: Spec = {"expand": "strs"}
PAGE: Spec = {"limit": "int", "starting_after": "str", "ending_before": "str", **EXPAND}
ADDRESS: Spec = {"city": "str", "country": "str", "line1": "str", "line2": "str", "postal_code": "str", "state": "str"}
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


def not_attached(pm_id: str) -> str:
    return (
        f"The customer does not have a payment method with the ID {pm_id}. "
        "The payment method must be attached to the customer."
    )


def deleted(obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": obj["id"], "object": obj["object"], "deleted": True}
