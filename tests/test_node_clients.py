"""The Node socket.io-client harness (tests/node_clients.py, tests/realtime_clients/client.mjs)
against a small python-socketio server started here under uvicorn: handshake data, refusals,
server events, client commands, several connections in one process, the fan-out report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import socketio
import uvicorn

from tests.net import free_port
from tests.node_clients import NodeClients

pytestmark = pytest.mark.slow

PATH = "/api/v1/socket.io"


@dataclass
class Server:
    url: str
    sio: socketio.AsyncServer
    handshakes: list[dict[str, Any]] = field(default_factory=list)
    sids: list[str] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[])
    port = free_port()
    state = Server(f"http://127.0.0.1:{port}", sio)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
        query = dict(pair.split("=", 1) for pair in environ.get("QUERY_STRING", "").split("&") if "=" in pair)
        if not auth or auth.get("token") != "good-token":
            raise socketio.exceptions.ConnectionRefusedError(
                "The token is not valid", {"code": "INVALID_TOKEN", "message": "The token is not valid"}
            )
        state.handshakes.append({"auth": auth, "projectId": query.get("projectId")})
        state.sids.append(sid)
        await sio.enter_room(sid, f"ingestion:{query.get('projectId')}")
        await sio.emit("welcome", {"projectId": query.get("projectId")}, to=sid)

    @sio.on("reauth")
    async def reauth(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.emit("reauthed", {"token": data["token"]}, to=sid)
        return {"ok": True}

    @sio.on("bye")
    async def bye(sid: str, data: Any) -> None:
        await sio.disconnect(sid)

    config = uvicorn.Config(
        socketio.ASGIApp(sio, socketio_path=PATH.strip("/")),
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    deadline = time.monotonic() + 10
    while not uv.started:
        assert not task.done(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        await asyncio.sleep(0.02)
    yield state
    uv.should_exit = True
    await task


async def test_events_commands_and_disconnect(server: Server) -> None:
    before = time.time() * 1000
    async with await NodeClients.start(url=server.url, path=PATH, token="good-token", project_id="p-1") as clients:
        connect = await clients.wait_event("connect")
        assert connect.client == 0 and connect.data["id"]
        # Emitted by the server's connect handler, it reaches socket.io-client before "connect".
        welcome = await clients.wait_event("welcome")
        assert welcome.data == {"projectId": "p-1"}
        assert [e.event for e in clients.events[:2]] == ["welcome", "connect"]
        assert before <= welcome.t <= time.time() * 1000
        assert server.handshakes == [{"auth": {"token": "good-token"}, "projectId": "p-1"}]

        await clients.send({"emit": "reauth", "data": {"token": "newer"}, "ack": True})
        assert (await clients.wait_event("reauthed")).data == {"token": "newer"}
        assert (await clients.wait_event("ack")).data == {"ok": True}

        await server.sio.emit("progress_update", {"a": 1}, room="ingestion:p-1")
        await server.sio.emit("two_args", ("x", 2), room="ingestion:p-1")
        assert (await clients.wait_event("progress_update")).data == {"a": 1}
        assert (await clients.wait_event("two_args")).data == ["x", 2]

        await clients.send({"emit": "bye"})
        gone = await clients.wait_event("disconnect")
        assert gone.data["reason"] == "io server disconnect"
    assert clients.process.returncode == 0


async def test_refused_handshake_reports_message_and_data(server: Server) -> None:
    async with await NodeClients.start(url=server.url, path=PATH, token="bad", project_id="p-1") as clients:
        refused = await clients.wait_event("connect_error")
        assert refused.data == {
            "message": "The token is not valid",
            "data": {"code": "INVALID_TOKEN", "message": "The token is not valid"},
        }
        ready = await clients.wait_event("ready")
        assert ready.data == {"connected": 0, "failed": 1}
    assert server.handshakes == []


async def test_several_connections_in_one_process(server: Server) -> None:
    async with await NodeClients.start(
        url=server.url, path=PATH, token="good-token", project_id="p-2", count=3
    ) as clients:
        assert (await clients.wait_event("ready")).data == {"connected": 3, "failed": 0}
        assert len(set(server.sids)) == 3  # three connections, not one multiplexed
        await server.sio.emit("note", {"n": 1}, room="ingestion:p-2")
        got = {(await clients.wait_event("note")).client for _ in range(3)}
        assert got == {0, 1, 2}
        # A command for one connection reaches that one only.
        await clients.send({"emit": "reauth", "data": {"token": "t1"}, "client": 1})
        assert (await clients.wait_event("reauthed")).client == 1
        await clients.send({"close": True})
        closed = {(await clients.wait_event("disconnect")).client for _ in range(3)}
        assert closed == {0, 1, 2}
    assert not [e for e in clients.events if e.event == "reauthed" and e.client != 1]


async def test_quiet_mode_reports_counts_latencies_and_sequences(server: Server) -> None:
    async with await NodeClients.start(
        url=server.url, path=PATH, token="good-token", project_id="p-3", count=2, quiet=True, measure="tick"
    ) as clients:
        assert (await clients.wait_event("ready")).data == {"connected": 2, "failed": 0}
        # Counted, but not measured: only "tick" is.
        await server.sio.emit("probe", {"seq": 0, "sentAt": time.time() * 1000}, room="ingestion:p-3")
        for seq in range(5):
            await server.sio.emit("tick", {"seq": seq, "sentAt": time.time() * 1000}, room="ingestion:p-3")
        deadline = time.monotonic() + 10
        while True:  # poll the report until all 10 deliveries are in
            await clients.send({"report": True})
            report = (await clients.wait_event("report")).data
            if report["received"].get("tick") == [5, 5] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert report["received"]["tick"] == [5, 5]
        assert report["sequences"] == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
        assert len(report["latencies"]) == 10
        assert all(0 <= ms < 5000 for ms in report["latencies"])
        assert not [e for e in clients.events if e.event == "tick"]  # not printed one by one
        await clients.send({"report": True, "full": False})
        assert (await clients.wait_event("report")).data == {
            "received": {"welcome": [1, 1], "probe": [1, 1], "tick": [5, 5]},
            "latencyCount": 10,
        }
        await clients.send({"report": True, "reset": True})
        assert (await clients.wait_event("report")).data["received"]["tick"] == [5, 5]
        await clients.send({"report": True})
        assert (await clients.wait_event("report")).data == {"received": {}, "latencies": [], "sequences": [[], []]}
