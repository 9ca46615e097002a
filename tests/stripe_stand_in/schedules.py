"""Subscription schedules: made from a subscription, their phases replaced by updates, applied
at the phase boundaries as time passes (a downgrade at the period's end), released after the
last phase (``end_behavior: release``) or on request.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.stripe_stand_in import objects
from tests.stripe_stand_in.forms import StripeError
from tests.stripe_stand_in.periods import interval_months, shift
from tests.stripe_stand_in.state import State


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
        first_price = objects.active_price(state, params["items"][0]["price"])
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


def boundary(state: State, schedule: dict[str, Any], sub: dict[str, Any], moment: int) -> None:
    """At ``moment`` a phase starts (its items replace the subscription's) or the last phase ends
    (the schedule is released, the subscription goes on with its items)."""
    upcoming = [phase for phase in schedule["phases"] if phase["start_date"] == moment]
    if upcoming:
        phase = upcoming[0]
        sub["items"]["data"] = [
            objects.subscription_item(
                state, sub["id"], objects.active_price(state, entry["price"]), entry["quantity"], moment, moment
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
