"""``expand[]``: ids in an answer replaced by the objects, as far as Stripe allows.

Only the fields Stripe marks expandable for an object (stripe-python's ``ExpandableField``
annotations) can be expanded; includable fields (``invoice.payments``,
``checkout.session.line_items``, ``customer.tax_ids``) appear only when expanded; lists are
expanded through ``data.…``; at most four levels. Anything else is Stripe's 400 ``This property
cannot be expanded (x).``
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tests.stripe_stand_in.forms import StripeError
from tests.stripe_stand_in.state import State

#: Expandable fields by object type, as dotted paths inside the object.
EXPANDABLE: dict[str, set[str]] = {
    "charge": {"customer", "payment_intent"},
    "checkout.session": {"customer", "invoice", "payment_intent", "payment_link", "setup_intent", "subscription"},
    "customer": {"default_source", "invoice_settings.default_payment_method", "test_clock"},
    "dispute": {"charge", "payment_intent"},
    "invoice": {"customer", "default_payment_method", "parent.subscription_details.subscription", "test_clock"},
    "invoice_payment": {"invoice", "payment.charge", "payment.payment_intent"},
    "payment_intent": {"customer", "latest_charge", "payment_method"},
    "payment_method": {"customer"},
    "price": {"product"},
    "product": {"default_price"},
    "setup_intent": {"customer", "latest_attempt", "mandate", "payment_method"},
    "subscription": {
        "customer",
        "default_payment_method",
        "latest_invoice",
        "pending_setup_intent",
        "schedule",
        "test_clock",
    },
    "subscription_schedule": {"customer", "subscription", "test_clock"},
    "tax_id": {"customer"},
}


def _list(data: list[dict[str, Any]], url: str) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": False, "url": url}


def _invoice_payments(state: State, invoice: dict[str, Any]) -> dict[str, Any]:
    found = [render(state, p) for p in state.of_kind("invoice_payment") if p["invoice"] == invoice["id"]]
    return _list(found, f"/v1/invoices/{invoice['id']}/payments")


def _line_items(state: State, session: dict[str, Any]) -> dict[str, Any]:
    return _list(
        copy.deepcopy(state.hidden[session["id"]].get("line_items", [])),
        f"/v1/checkout/sessions/{session['id']}/line_items",
    )


def _tax_ids(state: State, customer: dict[str, Any]) -> dict[str, Any]:
    found = [render(state, t) for t in state.of_kind("tax_id") if t["customer"] == customer["id"]]
    return _list(found, f"/v1/customers/{customer['id']}/tax_ids")


def _subscriptions(state: State, customer: dict[str, Any]) -> dict[str, Any]:
    found = [
        render(state, s)
        for s in state.of_kind("subscription")
        if s["customer"] == customer["id"] and s["status"] != "canceled"
    ]
    return _list(found, f"/v1/customers/{customer['id']}/subscriptions")


#: Fields absent unless expanded, by object type: how to compute them.
INCLUDABLE: dict[str, dict[str, Callable[[State, dict[str, Any]], dict[str, Any]]]] = {
    "checkout.session": {"line_items": _line_items},
    "customer": {"subscriptions": _subscriptions, "tax_ids": _tax_ids},
    "invoice": {"payments": _invoice_payments},
}


def render(state: State, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API shows it (a copy: answers and events never share state)."""
    return copy.deepcopy(obj)


def expand(state: State, answer: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    for path in paths:
        segments = path.split(".")
        if len(segments) > 4:
            raise StripeError(400, "You cannot expand more than 4 levels of a property.", param="expand")
        _apply(state, answer, segments, answer.get("object", ""), "", top=True)
    return answer


def _cannot(segment: str, hint: bool) -> StripeError:
    message = f"This property cannot be expanded ({segment})."
    if hint:
        message += f" You may want to try expanding 'data.{segment}' instead."
    return StripeError(400, message, param="expand")


def _apply(state: State, node: dict[str, Any], segments: list[str], owner: str, prefix: str, top: bool = False) -> None:
    segment, rest = segments[0], segments[1:]
    if node.get("object") in ("list", "search_result") and not prefix:
        if segment != "data":
            raise _cannot(segment, hint=top)
        if rest:
            for element in node["data"]:
                _apply(state, element, rest, element.get("object", ""), "")
        return
    dotted = prefix + segment
    includable = INCLUDABLE.get(owner, {}).get(dotted) if not prefix else None
    if includable is not None:
        node[segment] = includable(state, node)
    elif dotted in EXPANDABLE.get(owner, set()):
        value = node.get(segment)
        if isinstance(value, str):
            target = state.objects.get(value)
            if target is not None:
                node[segment] = render(state, target)
    elif not (rest and isinstance(node.get(segment), dict)):
        raise _cannot(segment, hint=False)
    if rest:
        child = node.get(segment)
        if not isinstance(child, dict):
            if child is None:
                return  # expanding through a null field gives null, as Stripe does
            raise _cannot(rest[0], hint=False)
        if "object" in child:
            _apply(state, child, rest, child["object"], "")
        else:
            _apply(state, child, rest, owner, dotted + ".")
