"""Real Socket.IO servers and clients for the realtime tests.

``serving(kijko, …)`` runs uvicorn on a free port in the test's event loop with the ASGI app
``kijko serve`` runs (Socket.IO in front of Quart), on the test run's runtime; ``Listener`` is
python-socketio's ``AsyncClient`` recording every event it receives, with waits that poll
against a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import socketio
import uvicorn

from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from kijko_server.realtime import SOCKETIO_PATH, Realtime
from tests.net import free_port

WAIT_SECONDS = 10.0


@dataclass
class Served:
    url: str
    realtime: Realtime


@asynccontextmanager
async def serving(kijko: Kijko, **settings: Any) -> AsyncIterator[Served]:
    """The API with Socket.IO on a free port, ``settings`` overriding the runtime's."""
    config = kijko.settings.model_copy(update=settings)
    realtime = Realtime(create_app(config, kijko=kijko), config)
    async with uvicorn_serving(realtime.asgi) as url:
        yield Served(url, realtime)


@asynccontextmanager
async def uvicorn_serving(asgi: Any) -> AsyncIterator[str]:
    """``asgi`` under uvicorn on a free port (lifespan on), in this event loop: its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(asgi, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), what="uvicorn to start")
    if task.done():
        await task  # raises what stopped it
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def until(condition: Callable[[], object], *, what: str, within: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Listener:
    """An ``AsyncClient`` that records what it receives: ``events`` (name, payload) in order,
    ``refusal`` (the connect_error's data) and ``disconnected`` (the reason)."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        #: When each event arrived (time.monotonic()), index for index with ``events``.
        self.times: list[float] = []
        self.refusal: Any = None
        self.disconnected: str | None = None

        @self.client.on("*")
        async def anything(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            self.times.append(time.monotonic())

        @self.client.event
        async def connect_error(data: Any) -> None:
            self.refusal = data

        @self.client.event
        async def disconnect(reason: Any = None) -> None:
            self.disconnected = str(reason)

    async def connect(self, url: str, *, token: str | None, project_id: str | None = None, **auth: Any) -> None:
        """Connect (websocket transport), raising ``socketio.exceptions.ConnectionError`` on a
        refusal."""
        target = url if project_id is None else f"{url}?projectId={project_id}"
        payload = {**({"token": token} if token is not None else {}), **auth}
        await self.client.connect(
            target, socketio_path=SOCKETIO_PATH, auth=payload, transports=["websocket"], wait_timeout=WAIT_SECONDS
        )

    def named(self, name: str) -> list[Any]:
        return [data for event, data in self.events if event == name]

    async def received(self, name: str, count: int = 1, *, within: float = WAIT_SECONDS) -> list[Any]:
        await until(lambda: len(self.named(name)) >= count, what=f"{count} × {name}", within=within)
        return self.named(name)

    async def closed(self, *, within: float = WAIT_SECONDS) -> str:
        await until(lambda: self.disconnected is not None, what="the disconnect", within=within)
        assert self.disconnected is not None
        return self.disconnected

    async def close(self) -> None:
        if self.client.connected:
            await self.client.disconnect()


@asynccontextmanager
async def listening(url: str, *, token: str | None, project_id: str | None = None) -> AsyncIterator[Listener]:
    listener = Listener()
    await listener.connect(url, token=token, project_id=project_id)
    try:
        yield listener
    finally:
        await listener.close()
