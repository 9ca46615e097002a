"""Subscriptions (update items, cancel at period end, cancel) and subscription schedules."""

from __future__ import annotations

from typing import Any

from tests.stripe_stand_in import billing, objects, schedules
from tests.stripe_stand_in.forms import Required, Spec, invalid
from tests.stripe_stand_in.routes import (
    EXPAND,
    INTERVALS,
    PAGE,
    PRORATION,
    find,
    not_attached,
    page,
    route,
)
from tests.stripe_stand_in.state import State

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
    if params.get("payment_behavior", "allow_incomplete") != "allow_incomplete":
        raise invalid(
            "payment_behavior",
            "The stand-in implements payment_behavior `allow_incomplete` (Stripe's default) only: a failed "
            "payment leaves the change applied and the invoice open.",
        )
    now = state.now(sub["customer"])
    if "default_payment_method" in params:
        pm_id = params["default_payment_method"] or None
        if pm_id and find(state, pm_id, "payment_method", "default_payment_method")["customer"] != sub["customer"]:
            raise invalid(
                "default_payment_method",
                not_attached(pm_id),
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
    for key in ("invoice_now", "prorate"):
        if params.get(key):
            raise invalid(
                key, f"The stand-in cancels without a final invoice or proration; `{key}` is not implemented."
            )
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
