"""Test clocks and events."""

from __future__ import annotations

import re
from typing import Any

from tests.stripe_stand_in import billing, objects
from tests.stripe_stand_in.expand import render
from tests.stripe_stand_in.forms import Required, invalid
from tests.stripe_stand_in.routes import (
    EXPAND,
    PAGE,
    deleted,
    find,
    page,
    route,
)
from tests.stripe_stand_in.state import State


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
    state.objects[clock["id"]] = deleted(clock)
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
