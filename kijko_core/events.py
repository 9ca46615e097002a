"""The events port: what happened, for whoever listens to a room (contract §4).

``publish(db, room=…, event=…, data=…)`` records an event in ``db``'s transaction; it is handed
to the port only **after that transaction commits** (``Session.after_commit``), so a listener
never hears of a change that was rolled back, nor before it can read it. ``send(room=…, …)``
hands over at once an event that describes no database change (a throttled progress update
whose state was written earlier). Rooms are ``project:<id>``, ``ingestion:<project id>``,
``user:<id>`` or ``org:<id>``; event names and payloads are the contract's
(``project_user:added``, ``activity:new``, ``progress_update`` …), with the payload's own casing.

The port in use is process-wide (:func:`use`). By default it is :class:`InProcessEvents`: it
keeps the last events in memory, where tests read them, and calls in-process subscribers.
``kijko_server.realtime`` installs the Socket.IO port in API processes (and, with Redis, in
workers); kijko_core never imports it.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kijko_core.db.session import Session
from kijko_core.logging import get_logger

log = get_logger("kijko.events")

_ROOM = re.compile(r"^(project|ingestion|user|org):[0-9a-f-]{36}$")


@dataclass(frozen=True)
class Event:
    room: str
    event: str
    data: dict[str, Any]
    #: When it was published (the envelope's ``timestamp``, contract §4.2).
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


class EventPort(Protocol):
    async def deliver(self, event: Event) -> None:
        """Hand a committed event to its listeners; must not raise for a listener's fault."""


Subscriber = Callable[[Event], Awaitable[None]]


class InProcessEvents:
    """Keeps the last ``capacity`` events (bounded, so a long-running process does not grow)
    and calls the subscribers of this process."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.events: deque[Event] = deque(maxlen=capacity)
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` for every delivered event; returns the unsubscribe function."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def recorded(self, room: str | None = None, event: str | None = None) -> list[Event]:
        """The recorded events, oldest first, of one room and/or one name."""
        return [e for e in self.events if (room is None or e.room == room) and (event is None or e.event == event)]

    async def deliver(self, event: Event) -> None:
        self.events.append(event)
        for subscriber in list(self._subscribers):
            try:
                await subscriber(event)
            except Exception:
                log.exception("event_subscriber_failed", room=event.room, name=event.event)


_port: EventPort = InProcessEvents()


def use(port: EventPort) -> EventPort:
    """Make ``port`` the one events go to (the transport, at start-up); returns the previous."""
    global _port
    previous, _port = _port, port
    return previous


def port() -> EventPort:
    return _port


def _event(room: str, event: str, data: dict[str, Any]) -> Event:
    if not _ROOM.fullmatch(room):
        raise ValueError("room: project:<id>, ingestion:<id>, user:<id> or org:<id>")
    return Event(room, event, data)


def publish(db: Session, *, room: str, event: str, data: dict[str, Any]) -> Event:
    """Record ``event`` for ``room``; delivered after ``db`` commits, dropped if it rolls back."""
    recorded = _event(room, event, data)

    async def deliver() -> None:
        # The port in use at delivery time (a transport swapped in meanwhile gets it).
        await _port.deliver(recorded)

    db.after_commit(deliver)
    return recorded


async def send(*, room: str, event: str, data: dict[str, Any]) -> Event:
    """Deliver ``event`` to ``room`` now: for events that describe no change of this moment's
    transaction (state already committed). Never raises for a listener's fault."""
    sent = _event(room, event, data)
    try:
        await _port.deliver(sent)
    except Exception:
        log.exception("event_delivery_failed", room=room, name=event)
    return sent
