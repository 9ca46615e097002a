"""A real ingestion watched over Socket.IO: a project's run executed by a worker of this process
while python-socketio's and Node's clients sit in its room — every event arrives, in the
contract's order, valid for the frontend's validators, progress updates throttled — and a
client joining afterwards is sent the progress snapshot ``GET /progress`` answers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

import pytest

from kijko_core.ingestion import reporter
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from kijko_server.realtime import SOCKETIO_PATH
from tests import contract_events
from tests.conftest import Account
from tests.node_clients import NodeClients
from tests.realtime import listening, serving, until

pytestmark = pytest.mark.slow

API = "/api/v1/projects"
TEXT = "\n".join(f"Paragraph {n}: the quick brown fox jumps over the lazy dog." for n in range(400))


async def text_project(client: Any, account: Account) -> dict[str, Any]:
    response = await client.post(
        API,
        json={"name": f"Notes {uuid.uuid4().hex[:6]}", "type": "manual", "customSettings": {"manualContent": TEXT}},
        headers=account.headers,
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    project: dict[str, Any] = (await response.get_json())["project"]
    return project


async def test_a_real_ingestion_reaches_both_clients_in_order_and_a_late_joiner_gets_the_snapshot(
    kijko: Kijko, client: Any, alice: Account
) -> None:
    project = await text_project(client, alice)
    pid = project["id"]
    async with serving(kijko) as served:
        started = await client.post(f"{API}/{pid}/ingest", json={}, headers=alice.headers)
        assert started.status_code == 200, await started.get_data(as_text=True)
        assert (await started.get_json())["wsNamespaceUrl"] == f"{SOCKETIO_PATH}?projectId={pid}"
        async with (
            listening(served.url, token=alice.access_token, project_id=pid) as python,
            await NodeClients.start(
                url=served.url, path=SOCKETIO_PATH, token=alice.access_token, project_id=pid
            ) as node,
        ):
            await node.wait_event("connect")
            # Joined before the run: the snapshot of the queued run first.
            [queued] = await python.received("progress_update")
            assert queued["id"] and queued["progressPercent"] == 0 and "completedAt" not in queued
            await run_until_idle(kijko)
            await python.received("ingestion_complete", within=30)
            await node.wait_event("ingestion_complete", within=30)

            watched = [(name, data) for name, data in python.events if name != "token_refresh_required"][1:]
            names = [name + (":" + data["phase"] if name == "phase_started" else "") for name, data in watched]
            assert contract_events.order_problems(names) == []
            assert [n for n in names if n.startswith("phase_started")] == [
                f"phase_started:{phase}" for phase in contract_events.PHASES
            ]
            assert names[-1] == "ingestion_complete"
            for name, data in watched:
                contract_events.assert_valid(name, data)
            assert watched[-1][1]["project"]["id"] == pid and watched[-1][1]["success"] is True
            # Node saw exactly the same events, in the same order.
            from_node = [
                (e.event, e.data) for e in node.events if e.event not in ("connect", "ready", "token_refresh_required")
            ]
            assert from_node == [("progress_update", queued), *watched]
            # Throttled: within a phase, progress updates at least ~500 ms apart (but the last,
            # flushed before the completion).
            times = [t for (name, _), t in zip(python.events, python.times, strict=True) if name == "progress_update"]
            updates = python.named("progress_update")
            spaced = list(zip(updates[1:-2], updates[2:-1], times[1:-2], times[2:-1], strict=True))
            for before, after, sent, next_sent in spaced:
                if before["phase"] == after["phase"]:
                    assert next_sent - sent >= 0.4, (before, after)

        # A client joining now recovers the state without a REST call.
        shown = await (await client.get(f"{API}/{pid}/progress", headers=alice.headers)).get_json()
        async with listening(served.url, token=alice.access_token, project_id=pid) as late:
            [snapshot] = await late.received("progress_update")
        assert snapshot == {key: value for key, value in shown.items() if value is not None}
        assert snapshot["completedAt"] and snapshot["progressPercent"] == 100
        contract_events.assert_valid("progress_update", snapshot)


async def test_progress_updates_are_throttled_on_the_wire_with_the_latest_kept_and_flushed(
    kijko: Kijko, client: Any, alice: Account
) -> None:
    """The worker's throttle (kijko_core.ingestion.reporter) as a client sees it: 40 offers in
    ~1.2 s arrive as a few updates ≥ 500 ms apart, the last offer flushed before completion."""
    project = await text_project(client, alice)
    pid = UUID(project["id"])
    async with (
        serving(kijko) as served,
        listening(served.url, token=alice.access_token, project_id=project["id"]) as watcher,
    ):
        throttle = reporter.throttle(pid)
        for n in range(40):
            payload = {
                "projectId": project["id"],
                "phase": "chunking",
                "progressPercent": n * 2.5,
                "message": f"{n}",
                "metrics": dict.fromkeys(contract_events.METRICS, n),
            }
            await throttle.offer(payload)
            await asyncio.sleep(0.03)
        await reporter.finish_throttle(pid)
        await watcher.received("progress_update", within=5)
        await until(lambda: watcher.named("progress_update")[-1]["message"] == "39", what="the flushed last offer")
        updates = watcher.named("progress_update")
        assert 2 <= len(updates) <= 5, [u["message"] for u in updates]
        assert updates[0]["message"] == "0"  # the first goes out at once
        times = [t for (name, _), t in zip(watcher.events, watcher.times, strict=True) if name == "progress_update"]
        assert all(later - earlier >= 0.4 for earlier, later in zip(times[:-1], times[1:-1], strict=False))
