"""The stand-in's account: every object by id, the clock, the recorded events.

One ``State`` per server; request handlers and test controls both run under ``state.lock`` (an
``RLock``), so a request sees the account as one consistent snapshot, as Stripe's would be.
Objects are kept in their API shape (plain dicts, expandable fields as ids); what Stripe knows
but does not show (a payment method's scripted outcome, which checkout made a subscription) is
in ``state.hidden``.
"""

from __future__ import annotations

import copy
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_ALPHABET = string.ascii_letters + string.digits


def token(length: int = 24) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass
class Saved:
    """A POST's answer kept under its idempotency key (per API key, as Stripe scopes them)."""

    method: str
    path: str
    params: Any
    status: int
    body: Any
    request_id: str


@dataclass
class Recorded:
    """One request as the stand-in received it (after decoding), for assertions."""

    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    status: int = 0
    replayed: bool = False


@dataclass
class State:
    api_version: str
    api_keys: set[str]
    lock: threading.RLock = field(default_factory=threading.RLock)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: id -> creation sequence number: lists are newest first, ties broken by this.
    sequence: dict[str, int] = field(default_factory=dict)
    hidden: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[tuple[str, str], Saved] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    #: Seconds added to the wall clock for objects without a test clock (``advance_time``).
    offset: int = 0
    #: The next requests' fate: "500" or "reset" each (an outage).
    outages: list[str] = field(default_factory=list)
    #: While time passes, the instant being processed (a renewal's events carry it).
    moment: int | None = None
    #: The request being handled: its id and idempotency key go into the events it causes.
    current_request: dict[str, Any] | None = None

    # --- ids, time -------------------------------------------------------------------------

    def new_id(self, prefix: str, length: int = 24) -> str:
        return f"{prefix}_{token(length)}"

    def add(self, obj: dict[str, Any], **hidden: Any) -> dict[str, Any]:
        self.objects[obj["id"]] = obj
        self.sequence[obj["id"]] = len(self.sequence)
        self.hidden[obj["id"]] = dict(hidden)
        return obj

    def get(self, object_id: str, kind: str | None = None) -> dict[str, Any] | None:
        obj = self.objects.get(object_id)
        if obj is None or (kind is not None and obj.get("object") != kind):
            return None
        return obj

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Objects of one kind, newest first (Stripe's list order)."""
        found = [obj for obj in self.objects.values() if obj.get("object") == kind and not obj.get("deleted")]
        return sorted(found, key=lambda obj: (obj.get("created", 0), self.sequence[obj["id"]]), reverse=True)

    def wall_now(self) -> int:
        return int(time.time()) + self.offset

    def now(self, customer_id: str | None = None) -> int:
        """The time for objects of ``customer_id``: its test clock's frozen time if it has one."""
        if self.moment is not None:
            return self.moment
        clock_id = self.objects.get(customer_id or "", {}).get("test_clock")
        if clock_id and (clock := self.objects.get(clock_id)):
            return int(clock["frozen_time"])
        return self.wall_now()

    # --- events ----------------------------------------------------------------------------

    def emit(self, kind: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record an event: a snapshot of ``obj`` now, with ``previous_attributes`` on updates."""
        customer = obj.get("customer") if isinstance(obj.get("customer"), str) else None
        if obj.get("object") == "customer":
            customer = obj["id"]
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        request = self.current_request or {}
        event = {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": self.api_version,
            "created": self.now(customer),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": request.get("id"), "idempotency_key": request.get("idempotency_key")},
            "type": kind,
        }
        self.events.append(event)
        self.objects[event["id"]] = event
        self.sequence[event["id"]] = len(self.sequence)
        return event
