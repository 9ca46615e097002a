"""The realtime server with the npm ``socket.io-client`` a browser app would use, run by Node
(tests/node_clients.py): refusals as ``connect_error`` with the contract's codes, ingestion events
in order, ``reauth`` answered through the acknowledgement, and the expiry's
``disconnect_reason`` before the server's disconnect. Skipped only where Node or npm is absent."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kijko_core import events
from kijko_core.runtime import Kijko
from kijko_server.realtime import SOCKETIO_PATH
from tests.conftest import Account
from tests.node_clients import Event, NodeClients
from tests.projects import created
from tests.realtime import serving
from tests.tokens import forge

pytestmark = pytest.mark.slow

METRICS = dict.fromkeys(
    ("filesProcessed", "totalFiles", "tokensProcessed", "bytesProcessed", "chunksCreated", "errorsEncountered"), 1
)


async def node(url: str, **options: Any) -> NodeClients:
    return await NodeClients.start(url=url, path=SOCKETIO_PATH, **options)


async def test_node_clients_are_refused_with_the_contract_codes(
    kijko: Kijko, client: Any, alice: Account, bob: Account
) -> None:
    theirs = await created(client, bob, "Not yours")
    async with serving(kijko) as served:
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({}, "NO_TOKEN", "Authentication token is required"),
            ({"token": alice.access_token, "project_id": ""}, "NO_PROJECT_ID", "Project ID is required"),
            ({"token": "x.y.z", "project_id": theirs["id"]}, "INVALID_TOKEN", "Invalid or expired token"),
            (
                {"token": alice.access_token, "project_id": theirs["id"]},
                "ACCESS_DENIED",
                "You do not have access to this project",
            ),
        ]
        for options, code, message in cases:
            async with await node(served.url, **options) as clients:
                refused = await clients.wait_event("connect_error")
                assert refused.data == {"message": code, "data": {"code": code, "message": message}}


async def test_a_node_client_receives_the_ingestion_events_in_order_and_renews_its_token(
    kijko: Kijko, client: Any, alice: Account
) -> None:
    project = await created(client, alice, "Node watched")
    pid, room = project["id"], f"ingestion:{project['id']}"
    short = await forge(kijko, alice.access_token, exp=int(time.time()) + 120)
    async with serving(kijko) as served, await node(served.url, token=short, project_id=pid) as clients:
        await clients.wait_event("connect")
        warning = await clients.wait_event("token_refresh_required")
        assert warning.data["reason"] == "Token expiring soon"
        phases = ["repository_fetch", "parsing", "chunking", "optimization", "indexing"]
        for index, phase in enumerate(phases):
            await events.send(
                room=room,
                event="phase_started",
                data={
                    "projectId": pid,
                    "phase": phase,
                    "message": phase,
                    "startTime": "2026-11-28T00:00:00Z",
                    "totalPhases": 5,
                    "currentPhaseIndex": index,
                },
            )
            await events.send(
                room=room,
                event="progress_update",
                data={"projectId": pid, "phase": phase, "progressPercent": 100, "message": "done", "metrics": METRICS},
            )
        await events.send(
            room=room,
            event="ingestion_complete",
            data={
                "projectId": pid,
                "success": True,
                "totalDurationSeconds": 2,
                "finalMetrics": METRICS,
                "project": {"id": pid, "name": "Node watched"},
            },
        )
        await clients.wait_event("ingestion_complete")
        seen = [e for e in clients.events if e.event in ("phase_started", "progress_update", "ingestion_complete")]
        assert [(e.event, e.data.get("phase")) for e in seen] == [
            *[(name, phase) for phase in phases for name in ("phase_started", "progress_update")],
            ("ingestion_complete", None),
        ]
        await clients.send({"emit": "reauth", "data": {"token": alice.access_token}, "ack": True})
        answer = await clients.wait_event("ack")
        assert answer.data["ok"] is True and answer.data["expiresAt"] > warning.data["expiresAt"]


async def test_a_node_client_whose_token_expires_is_told_why_then_disconnected(kijko: Kijko, alice: Account) -> None:
    short = await forge(kijko, alice.access_token, exp=int(time.time()) + 2)
    async with serving(kijko) as served, await node(served.url, token=short) as clients:
        await clients.wait_event("connect")
        reason = await clients.wait_event("disconnect_reason", within=10)
        assert reason.data == {"code": "INVALID_TOKEN", "message": "Invalid or expired token"}
        gone: Event = await clients.wait_event("disconnect")
        assert gone.data["reason"] == "io server disconnect"  # the client does not reconnect by itself
        assert clients.events.index(reason) < clients.events.index(gone)
