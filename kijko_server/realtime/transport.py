"""How events leave a process: the Socket.IO client manager and the events port over it.

Every API process runs an ``AsyncServer`` whose client manager is shared through Redis when
``KIJKO_REDIS_URL`` is set (``AsyncRedisManager`` on the channel ``KIJKO_REALTIME_CHANNEL``),
else kept in the process (``AsyncManager``: ``kijko serve`` with its in-process worker). A
``kijko worker`` process has no server: with Redis it publishes through a *write-only*
``AsyncRedisManager`` on the same channel, and the API processes emit to their clients.

The port never raises: an event is a hint (the state is in PostgreSQL), so a Redis outage
costs live updates, never the change that announced them (decision 0090).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from pydantic_core import to_jsonable_python

from kijko_core.config import Settings
from kijko_core.events import Event
from kijko_core.logging import get_logger

log = get_logger("kijko.realtime")

#: The Socket.IO namespace of every Kijko event (the default one).
NAMESPACE = "/"
#: How long one delivery may take before it is given up (a Redis that does not answer).
DELIVERY_TIMEOUT_SECONDS = 5.0

#: ``emit(event, data, room=…, namespace=…)`` of a server or of a write-only manager.
Emit = Callable[..., Awaitable[Any]]


def redis_options() -> dict[str, Any]:
    # No read timeout: the subscriber blocks on the channel between events by design.
    return {"socket_connect_timeout": 2, "socket_keepalive": True}


def client_manager(settings: Settings, *, write_only: bool = False) -> socketio.AsyncManager:
    """The manager of this process: shared through Redis when it is configured."""
    if settings.redis_url is None:
        if write_only:
            raise ValueError("a write-only manager needs KIJKO_REDIS_URL")
        return socketio.AsyncManager()
    return socketio.AsyncRedisManager(
        settings.redis_url.get_secret_value(),
        channel=settings.realtime_channel,
        write_only=write_only,
        logger=logging.getLogger("kijko.realtime.redis"),
        redis_options=redis_options(),
    )


class SocketIOEvents:
    """The events port (kijko_core.events) over Socket.IO: ``Event(room, event, data)`` is
    emitted to the Socket.IO room of the same name."""

    def __init__(self, emit: Emit, manager: Any = None) -> None:
        self._emit = emit
        self._manager = manager  # closed by ``aclose`` (the worker's write-only manager)

    async def aclose(self) -> None:
        if self._manager is not None:
            await close_manager(self._manager)

    async def deliver(self, event: Event) -> None:
        data = to_jsonable_python(event.data)  # UUIDs, datetimes, models: what JSON carries
        try:
            await asyncio.wait_for(
                self._emit(event.event, data, room=event.room, namespace=NAMESPACE),
                DELIVERY_TIMEOUT_SECONDS,
            )
        except Exception:
            log.warning("realtime_delivery_failed", room=event.room, name=event.event, exc_info=True)


async def close_manager(manager: Any) -> None:
    """Stop a manager's Redis subscriber (a task python-socketio never stops itself) and close
    its client; nothing to do for an in-process manager."""
    listener = getattr(manager, "thread", None)
    if isinstance(listener, asyncio.Task) and not listener.done():
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
    redis = getattr(manager, "redis", None)
    if redis is not None:
        with contextlib.suppress(Exception):
            await redis.aclose()


def worker_port(settings: Settings) -> SocketIOEvents | None:
    """The port of a ``kijko worker`` process: a write-only Redis manager, or None without
    Redis (events of a separate worker then reach nobody live; clients read the progress)."""
    if settings.redis_url is None:
        return None
    manager = client_manager(settings, write_only=True)
    manager.initialize()
    return SocketIOEvents(manager.emit, manager)
