"""The servers of the Socket.IO fan-out bench (bench/socketio_fanout.py), one per process:
``python -m bench.socketio_serve bare|kijko PORT``.

- **bare:** a python-socketio ``AsyncServer`` at ``/api/v1/socket.io`` and nothing else: every
  handshake is accepted and joins ``ingestion:<projectId>`` (no token check, no database).
- **kijko:** the app as ``kijko serve`` builds it (runtime, ``create_app``, ``with_realtime``,
  its uvicorn configuration), on uvloop and httptools like the bare one.

With ``KIJKO_BENCH_FANOUT_REDIS_URL`` both share rooms across processes through Redis (bare: an
``AsyncRedisManager``; kijko: its own, configured by ``KIJKO_REDIS_URL``), and events come from
the bench's publisher process. Without it, events are emitted inside the server process, as the
worker of ``kijko serve`` does on embedded defaults: ``POST /__bench/emit`` (a route of this
wrapper only, never of Kijko) starts ``count`` events at ``rate`` per second to ``room``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
import uvloop

PATH = "/api/v1/socket.io"
Emit = Callable[[str, str, dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]


def payload(project_id: str, seq: int) -> dict[str, Any]:
    """A ``progress_update``-sized payload (contract §4.1) with the bench's sequence number and
    the epoch milliseconds at which it is sent."""
    return {
        "projectId": project_id,
        "phase": "chunking",
        "progress": seq % 101,
        "message": f"Chunking src/module_{seq:05d}.py",
        "metrics": {
            "filesProcessed": seq,
            "totalFiles": 10_000,
            "tokensProcessed": seq * 1_234,
            "bytesProcessed": seq * 10_240,
            "chunksCreated": seq * 3,
            "errorsEncountered": 0,
        },
        "estimatedTimeRemaining": 120,
        "seq": seq,
        "sentAt": time.time() * 1000,
    }


async def emit_paced(emit: Emit, room: str, event: str, count: int, rate: float, first: int = 0) -> None:
    """``count`` events at ``rate``/s on an absolute schedule (a late one does not delay the rest)."""
    project_id = room.split(":", 1)[1]
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await emit(room, event, payload(project_id, first + n))


def with_emit_route(app: ASGIApp, emit: Emit) -> ASGIApp:
    """``app`` plus ``POST /__bench/emit {room, event, count, rate, first}`` → 202 (starts the
    emission) and ``GET /__bench/emit`` → ``{"running", "seconds"}`` of the last one (how long
    emitting took: more than count/rate when emitting cannot keep up)."""
    tasks: set[asyncio.Task[None]] = set()
    last: dict[str, Any] = {"running": False, "seconds": 0.0}

    async def timed(order: dict[str, Any]) -> None:
        last.update(running=True, seconds=0.0)
        started = time.monotonic()
        try:
            await emit_paced(emit, order["room"], order["event"], order["count"], order["rate"], order.get("first", 0))
        finally:
            last.update(running=False, seconds=time.monotonic() - started)

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/__bench/emit":
            await app(scope, receive, send)
            return
        if scope["method"] == "GET":
            body = json.dumps(last).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        last["running"] = True  # before the answer, so a poll right after it sees it
        task = asyncio.create_task(timed(json.loads(body)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    return wrapper


def bare_app(redis_url: str | None) -> tuple[ASGIApp, Emit]:
    import socketio

    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins=[])

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
        await sio.enter_room(sid, f"ingestion:{query.get('projectId')}")

    async def emit(room: str, event: str, data: dict[str, Any]) -> None:
        await sio.emit(event, data, room=room)

    return socketio.ASGIApp(sio, socketio_path=PATH.strip("/")), emit


async def serve_kijko(port: int) -> None:
    """Kijko as ``kijko serve`` runs it: the runtime started first, ``create_app(kijko=…)``,
    Socket.IO in front (``with_realtime``), uvicorn with ``kijko serve``'s configuration."""
    from kijko_cli.serve import start_runtime, uvicorn_config
    from kijko_core import events
    from kijko_core.config import load_settings
    from kijko_core.logging import configure_logging
    from kijko_server.app import create_app
    from kijko_server.realtime import with_realtime

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    kijko = await start_runtime(settings)
    try:

        async def emit(room: str, event: str, data: dict[str, Any]) -> None:
            await events.send(room=room, event=event, data=data)

        config = uvicorn_config(with_emit_route(with_realtime(create_app(kijko=kijko)), emit), settings)
        config.host, config.port, config.http = "127.0.0.1", port, "httptools"
        await uvicorn.Server(config).serve()
    finally:
        await kijko.stop()


def main() -> None:
    which, port = sys.argv[1], int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a thousand sockets
    if which == "kijko":
        uvloop.run(serve_kijko(port))
        return
    app, emit = bare_app(os.environ.get("KIJKO_BENCH_FANOUT_REDIS_URL") or None)
    uvicorn.run(
        with_emit_route(app, emit), host="127.0.0.1", port=port, http="httptools", loop="uvloop",
        access_log=False, log_config=None, lifespan="off",
    )  # fmt: skip


if __name__ == "__main__":
    main()
