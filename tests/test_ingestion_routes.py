"""The ingestion routes without a worker (contract §2.2.5): every documented error with its
documented code, the internal progress routes of an external runner (project admins only,
the contract's shapes and rules, events valid for the frontend), and the throttle."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session
from kijko_core.ingestion.reporter import ProgressThrottle
from kijko_core.runtime import Kijko
from tests import contract_events
from tests.conftest import Account
from tests.ingestion_kit import INGESTION_OPERATIONS, P, recording
from tests.memberships import add_member
from tests.quotas_kit import answered_when_spent
from tests.test_openapi_errors import answers_not_as_documented, documented_errors, openapi

API = "/api/v1/projects"


def metrics(**values: int) -> dict[str, int]:
    return {name: values.get(name, 0) for name in contract_events.METRICS}


async def text_project(client: Any, account: Account, name: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        API,
        json={
            "name": f"{name} {uuid.uuid4().hex[:6]}",
            "type": "manual",
            "customSettings": {"manualContent": "Hello."},
            **body,
        },
        headers=account.headers,
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    project: dict[str, Any] = (await response.get_json())["project"]
    return project


async def start(client: Any, account: Account, project_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"{API}/{project_id}/ingest", json=body, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    answer: dict[str, Any] = await response.get_json()
    return answer


async def on_project(kijko: Kijko, account: Account, project_id: str, role: str) -> None:
    """Make ``account`` (a member of the organization) a project member with ``role``."""
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.project_members (organization_id, project_id, user_id, email, role, accepted_at)"
            " VALUES ($1, $2, $3, $4, $5, now())",
            UUID(account.org_id),
            UUID(project_id),
            UUID(account.user_id),
            account.email,
            role,
        )


# --- the OpenAPI document tells the truth ---------------------------------------------------------


async def test_ingestion_operations_document_exactly_their_errors(client: Any) -> None:
    spec = await openapi(client)
    for (method, path), statuses in INGESTION_OPERATIONS.items():
        assert set(documented_errors(spec, method, path)) == statuses | {"500"}, (method, path)
    ingest = documented_errors(spec, "post", f"{P}/ingest")
    assert {"ALREADY_PROCESSING", "INVALID_STATUS"} <= set(ingest["409"].replace(",", " ").split())
    assert "NO_SOURCES" in ingest["422"] and "CUSTOM_CHUNKER_MISSING" in ingest["422"]
    assert "NO_ACTIVE_INGESTION" in documented_errors(spec, "post", f"{P}/cancel-ingestion")["404"]
    assert "NO_ACTIVE_INGESTION" in documented_errors(spec, "put", f"{P}/progress")["404"]


async def test_every_documented_ingestion_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, alice: Account, make_settings: Any, tmp_path: Path
) -> None:
    async def ingest_spent(web: Any, owner: Account) -> Any:
        project = await text_project(web, owner, "Spent")
        return await web.post(f"{API}/{project['id']}/ingest", json={}, headers=owner.headers)

    over_quota = await answered_when_spent(make_settings, tmp_path, ingest_spent)
    gone = await add_member(kijko, alice.org_id, "member")
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    viewer = await add_member(kijko, alice.org_id, "viewer")
    idle = await text_project(client, alice, "Idle", privacy="shared")
    busy = await text_project(client, alice, "Busy", privacy="shared")
    await start(client, alice, busy["id"])
    empty = (
        await (
            await client.post(
                API, json={"name": f"Empty {uuid.uuid4().hex[:6]}", "type": "manual"}, headers=alice.headers
            )
        ).get_json()
    )["project"]
    custom = await text_project(client, alice, "Custom", chunkingStrategy="custom")
    unknown = str(uuid.uuid4())

    def send(method: str, path: str, account: Account | None, **kwargs: Any) -> Any:
        headers = dict(account.headers) if account else {}
        return lambda: client.open(path, method=method.upper(), headers=headers, **kwargs)

    def raw(method: str, path: str, data: bytes, content_type: str = "application/json") -> Any:
        headers = {**alice.headers, "Content-Type": content_type}
        return lambda: client.open(path, method=method.upper(), headers=headers, data=data)

    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("post", f"{P}/ingest"): {"forceReprocess": False},
        ("put", f"{P}/progress"): {"message": "working"},
        ("post", f"{P}/progress/snapshot"): {"metrics": metrics()},
        ("post", f"{P}/progress/complete"): {"metrics": metrics(), "totalDurationSeconds": 1},
    }
    bad_bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("post", f"{P}/ingest"): {"forceReprocess": "sometimes"},
        ("put", f"{P}/progress"): {"progressPercent": 101},
        ("post", f"{P}/progress/snapshot"): {"metrics": {**metrics(), "chunksCreated": -1}},
        ("post", f"{P}/progress/complete"): {"metrics": metrics()},  # no totalDurationSeconds
    }
    huge = b'{"message": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    triggers: dict[tuple[str, str], dict[str, Any]] = {}
    for (method, template), statuses in INGESTION_OPERATIONS.items():
        at = template.format(project_id=idle["id"])
        body = bodies.get((method, template))
        kwargs = {"json": body} if body is not None else {}
        cases = {
            "401": send(method, at, None, **kwargs),
            "403": send(method, at, gone, **kwargs),
            "404": send(method, template.format(project_id=unknown), alice, **kwargs),
            "404 malformed": send(method, template.format(project_id="not-an-id"), alice, **kwargs),
        }
        if "400" in statuses:
            cases["400"] = raw(method, at, b'{"message": ')
            cases["413"] = raw(method, at, huge)
            cases["415"] = raw(method, at, b"message=x", "application/x-www-form-urlencoded")
            cases["422"] = send(method, at, alice, json=bad_bodies[(method, template)])
        triggers[(method, template)] = cases
    ingest = f"{P}/ingest"
    triggers[("post", ingest)].update(
        {
            "403 viewer": send("post", ingest.format(project_id=idle["id"]), viewer, json={}),
            "409": send("post", ingest.format(project_id=busy["id"]), alice, json={}),
            "422 no sources": send("post", ingest.format(project_id=empty["id"]), alice, json={}),
            "422 custom": send("post", ingest.format(project_id=custom["id"]), alice, json={}),
            "429": over_quota,
        }
    )
    for method, template in (
        ("post", f"{P}/cancel-ingestion"),
        ("put", f"{P}/progress"),
        ("post", f"{P}/progress/complete"),
    ):
        body = bodies.get((method, template))
        triggers[(method, template)]["404 no active ingestion"] = send(
            method, template.format(project_id=idle["id"]), alice, **({"json": body} if body else {})
        )
    for method, template in (
        ("put", f"{P}/progress"),
        ("post", f"{P}/progress/snapshot"),
        ("post", f"{P}/progress/complete"),
    ):
        triggers[(method, template)]["403 viewer"] = send(
            method, template.format(project_id=busy["id"]), viewer, json=bodies[(method, template)]
        )
        # Busy's run is Kijko's worker's: an external runner's reports on it are refused.
        triggers[(method, template)]["409 run by the worker"] = send(
            method, template.format(project_id=busy["id"]), alice, json=bodies[(method, template)]
        )

    spec = await openapi(client)
    problems = []
    for (method, template), statuses in INGESTION_OPERATIONS.items():
        cases = triggers[(method, template)]
        assert {label.split()[0] for label in cases} == statuses, (method, template)
        problems += await answers_not_as_documented(method, template, cases, documented_errors(spec, method, template))
    assert problems == []
    # The one that answers 409 INVALID_STATUS: an active project without forceReprocess.
    async with system_session(kijko.system_db) as db:
        await db.execute("UPDATE kijko.projects SET status = 'active' WHERE id = $1", UUID(idle["id"]))
    response = await client.post(ingest.format(project_id=idle["id"]), json={}, headers=alice.headers)
    assert response.status_code == 409 and (await response.get_json())["code"] == "INVALID_STATUS"


# --- an external runner ------------------------------------------------------------------------------


async def test_an_external_runner_reports_and_completes_a_run(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await text_project(client, alice, "External")
    pid = project["id"]
    room = f"ingestion:{pid}"
    async with recording() as recorder:
        await start(client, alice, pid, runner="external")
        response = await client.put(
            f"{API}/{pid}/progress",
            json={"phase": "parsing", "message": "Parsing", "metrics": metrics(totalFiles=10, filesProcessed=2)},
            headers=alice.headers,
        )
        assert response.status_code == 200, await response.get_data(as_text=True)
        shown = await response.get_json()
        assert shown["phase"] == "parsing" and shown["progressPercent"] == 0 and shown["metrics"]["totalFiles"] == 10
        for percent in (10, 20, 30):  # three within 500 ms: one sent at once, the last kept
            response = await client.put(
                f"{API}/{pid}/progress", json={"progressPercent": percent}, headers=alice.headers
            )
            assert response.status_code == 200
        response = await client.post(
            f"{API}/{pid}/progress/snapshot",
            json={"metrics": metrics(totalFiles=10, filesProcessed=5)},
            headers=alice.headers,
        )
        assert response.status_code == 200 and (await response.get_json())["success"] is True
        current = await (await client.get(f"{API}/{pid}/progress", headers=alice.headers)).get_json()
        assert current["progressPercent"] == 30 and current["metrics"]["filesProcessed"] == 5
        final = metrics(totalFiles=10, filesProcessed=10, tokensProcessed=1234, bytesProcessed=4096, chunksCreated=12)
        response = await client.post(
            f"{API}/{pid}/progress/complete",
            json={"metrics": final, "totalDurationSeconds": 42.5},
            headers=alice.headers,
        )
        assert response.status_code == 200 and await response.get_json() == {"success": True}
        recorded = recorder.recorded(room=room)

    done = await (await client.get(f"{API}/{pid}/progress", headers=alice.headers)).get_json()
    assert done["progressPercent"] == 100 and done["completedAt"] and done["metrics"] == final
    shown = await (await client.get(f"{API}/{pid}", headers=alice.headers)).get_json()
    assert shown["status"] == "active" and shown["totalFiles"] == 10
    assert shown["optimizedTokens"] == 1234 and shown["ingestionTimeSeconds"] == 42.5
    names = [e.event for e in recorded]
    assert names[0] == "phase_started" and names[-1] == "ingestion_complete"
    updates = [e.data["progressPercent"] for e in recorded if e.event == "progress_update"]
    # The phase's first at once; 10, 20, 30 within its window: the latest kept, flushed before
    # ingestion_complete (a slow machine may let the window end between two of them).
    assert updates[0] == 0 and updates[-1] == 30 and len(updates) <= 4
    for event in recorded:
        contract_events.assert_valid(event.event, event.data)
    assert recorded[-1].data["project"]["status"] == "active"
    # The run is over: nothing to report on.
    response = await client.put(f"{API}/{pid}/progress", json={"message": "late"}, headers=alice.headers)
    assert response.status_code == 404 and (await response.get_json())["code"] == "NO_ACTIVE_INGESTION"
    response = await client.post(f"{API}/{pid}/progress/snapshot", json={"metrics": final}, headers=alice.headers)
    assert response.status_code == 200 and (await response.get_json())["success"] is False


async def test_an_external_runner_fails_a_run(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await text_project(client, alice, "Fails")
    pid = project["id"]
    await start(client, alice, pid, runner="external")
    async with recording() as recorder:
        response = await client.put(
            f"{API}/{pid}/progress",
            json={"errorMessage": "The runner ran out of disk", "errorCode": "DISK_FULL"},
            headers=alice.headers,
        )
        assert response.status_code == 200
        failed = await response.get_json()
    assert failed["errorCode"] == "DISK_FULL" and failed["errorMessage"] == "The runner ran out of disk"
    assert failed["completedAt"] is None
    (error,) = recorder.recorded(event="error")
    contract_events.assert_valid("error", error.data)
    shown = await (await client.get(f"{API}/{pid}", headers=alice.headers)).get_json()
    assert shown["status"] == "error"


async def test_only_project_admins_report_progress(client: Any, kijko: Kijko, alice: Account) -> None:
    """The internal routes: the project's admins and the organization's owners and admins;
    not its managers or developers (who may start and cancel it)."""
    project = await text_project(client, alice, "Roles", privacy="shared")
    pid = project["id"]
    admin, manager, developer = [await add_member(kijko, alice.org_id, "member") for _ in range(3)]
    for account, role in ((admin, "admin"), (manager, "manager"), (developer, "developer")):
        await on_project(kijko, account, pid, role)
    org_admin = await add_member(kijko, alice.org_id, "admin")
    response = await client.post(f"{API}/{pid}/ingest", json={"runner": "external"}, headers=developer.headers)
    assert response.status_code == 403  # an external run is reported on: not a developer's
    response = await client.post(f"{API}/{pid}/ingest", json={}, headers=developer.headers)
    assert response.status_code == 200  # a developer runs ingestions (on Kijko's worker)
    response = await client.put(f"{API}/{pid}/progress", json={"message": "x"}, headers=admin.headers)
    assert response.status_code == 409 and (await response.get_json())["code"] == "INGESTION_RUN_BY_WORKER"
    response = await client.post(f"{API}/{pid}/cancel-ingestion", headers=developer.headers)
    assert response.status_code == 200
    started = await start(client, admin, pid, runner="external")
    async with system_session(kijko.system_db) as db:  # an external run queues no job
        live = "SELECT job_id FROM kijko.ingestion_runs WHERE project_id = $1 AND status IN ('queued', 'running')"
        assert await db.fetchval(live, UUID(pid)) is None
        assert await db.fetchval("SELECT count(*) FROM kijko.jobs WHERE id = $1", UUID(started["jobId"])) == 0
    body = {"message": "from a runner"}
    for account, status in ((manager, 403), (developer, 403), (admin, 200), (org_admin, 200), (alice, 200)):
        response = await client.put(f"{API}/{pid}/progress", json=body, headers=account.headers)
        assert response.status_code == status, account
        response = await client.post(
            f"{API}/{pid}/progress/snapshot", json={"metrics": metrics()}, headers=account.headers
        )
        assert response.status_code == status, account
    response = await client.post(f"{API}/{pid}/cancel-ingestion", headers=manager.headers)
    assert response.status_code == 200


# --- the throttle --------------------------------------------------------------------------------------


async def test_progress_updates_are_throttled_to_one_per_window_with_the_latest_kept() -> None:
    project_id = uuid.uuid4()
    room = f"ingestion:{project_id}"
    async with recording() as recorder:
        throttle = ProgressThrottle(project_id, interval=0.3)
        for percent in range(10):
            await throttle.offer({"progressPercent": percent})
        assert [e.data["progressPercent"] for e in recorder.recorded(room=room)] == [0]  # the rest wait
        await asyncio.sleep(0.45)  # the window ends: the latest pending goes out, once
        assert [e.data["progressPercent"] for e in recorder.recorded(room=room)] == [0, 9]
        await throttle.offer({"progressPercent": 10})  # inside the new window: kept
        await throttle.flush()  # before ingestion_complete / error: sent now
        assert [e.data["progressPercent"] for e in recorder.recorded(room=room)] == [0, 9, 10]
        await throttle.offer({"progressPercent": 11})
        throttle.new_phase()  # the pending one of the old phase is dropped
        await throttle.offer({"progressPercent": 0})  # the new phase's first: at once
        await asyncio.sleep(0.4)
        sent = recorder.recorded(room=room)
    assert [e.data["progressPercent"] for e in sent] == [0, 9, 10, 0]
    assert all(e.room == f"ingestion:{project_id}" and e.event == "progress_update" for e in sent)
    assert (sent[1].timestamp - sent[0].timestamp).total_seconds() >= 0.25


@pytest.mark.parametrize(
    ("event", "payload", "wrong"),
    [
        (
            "progress_update",
            {"projectId": "p", "phase": "parsing", "progressPercent": 101, "message": "", "metrics": metrics()},
            "progressPercent",
        ),
        (
            "progress_update",
            {
                "projectId": "p",
                "phase": "parsing",
                "progressPercent": 1,
                "message": "",
                "metrics": {**metrics(), "totalFiles": -1},
            },
            "totalFiles",
        ),
        ("progress_update", {"projectId": "p", "phase": "parsing", "progressPercent": 1, "message": ""}, "metrics"),
        (
            "phase_started",
            {
                "projectId": "",
                "phase": "parsing",
                "message": "",
                "startTime": "2026-01-01T00:00:00Z",
                "currentPhaseIndex": 1,
            },
            "projectId",
        ),
        (
            "phase_started",
            {"projectId": "p", "phase": "parsing", "message": "", "startTime": "yesterday", "currentPhaseIndex": 1},
            "startTime",
        ),
        ("error", {"projectId": "p", "phase": "parsing", "errorCode": "", "errorMessage": "x"}, "errorCode"),
        (
            "ingestion_complete",
            {
                "projectId": "p",
                "success": True,
                "totalDurationSeconds": 1,
                "finalMetrics": metrics(),
                "project": {"name": "x"},
            },
            "project",
        ),
    ],
)
def test_the_contract_validators_refuse_what_the_client_drops(event: str, payload: dict[str, Any], wrong: str) -> None:
    found = contract_events.problems(event, payload)
    assert found and any(wrong in problem for problem in found), found


async def test_a_progress_record_as_the_snapshot_realtime_sends_on_join(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    from kijko_core.db.session import tenant_session
    from kijko_core.ingestion import service
    from kijko_server.realtime.server import snapshot_of

    project = await text_project(client, alice, "Snapshot")
    async with tenant_session(kijko.app_db, alice.identity, readonly=True) as db:
        assert await service.current_progress(db, UUID(project["id"])) is None
    await start(client, alice, project["id"])
    async with tenant_session(kijko.app_db, alice.identity, readonly=True) as db:
        payload = await snapshot_of(db, UUID(project["id"]))
    assert payload is not None
    contract_events.assert_valid("progress_update", payload)
    assert payload["projectId"] == project["id"] and payload["phase"] == "repository_fetch"


async def test_uploaded_files_and_manual_text_are_ingested(client: Any, kijko: Kijko, alice: Account) -> None:
    from kijko_core.jobs.worker import run_until_idle
    from tests.ingestion_kit import chunks_of, files_of
    from tests.test_sources import upload

    project = await text_project(client, alice, "Uploads", type="files")
    pid = project["id"]
    response = await upload(
        client,
        alice,
        ("notes.md", b"# Notes\n\nThe uploaded notes.\n", "text/markdown"),
        ("tool.py", b"def uploaded_tool():\n    return 1\n", "text/x-python"),
        project_id=pid,
    )
    assert response.status_code in (200, 201), await response.get_data(as_text=True)
    await start(client, alice, pid)
    await run_until_idle(kijko)
    done = await (await client.get(f"{API}/{pid}/progress", headers=alice.headers)).get_json()
    assert done["completedAt"] and done["metrics"]["totalFiles"] == 3 and done["metrics"]["errorsEncountered"] == 0
    files = await files_of(kijko, done["id"])
    uploaded = sorted(f["path"] for f in files if f["source"] == "uploads")
    assert uploaded == ["notes.md", "tool.py"] and [f["source"] for f in files].count("manual") == 1
    chunks = await chunks_of(kijko, done["id"])
    assert any("def uploaded_tool" in c["content"] for c in chunks)
    assert any("Hello." in c["content"] for c in chunks if c["source"] == "manual")


def test_the_estimate_follows_its_documented_rule() -> None:
    from kijko_core.ingestion.service import estimate_seconds

    nothing = {
        "repositories": 0,
        "known_files": 0,
        "unknown_repositories": 0,
        "uploads": 0,
        "upload_bytes": 0,
        "manual_bytes": 0,
    }
    assert estimate_seconds(nothing) == 5  # the fixed start
    # One repository never ingested: a clone (10 s), 500 files at 200/s, 500 × 8 KiB at 5 MiB/s.
    assert estimate_seconds({**nothing, "repositories": 1, "unknown_repositories": 1}) == 19
    # One repository of 20,000 known files: 10 + 100 + 20,000 × 8 KiB / 5 MiB/s (31.25) + 5.
    assert estimate_seconds({**nothing, "repositories": 1, "known_files": 20_000}) == 147
    # Uploads: 2 files of 10 MiB together.
    assert estimate_seconds({**nothing, "uploads": 2, "upload_bytes": 10 * 1024 * 1024}) == 8


async def test_an_uploaded_file_gone_from_storage_fails_the_run(client: Any, kijko: Kijko, alice: Account) -> None:
    from kijko_core.jobs.worker import run_until_idle
    from tests.test_sources import upload

    project = await text_project(client, alice, "Gone", type="files")
    pid = project["id"]
    response = await upload(client, alice, ("gone.md", b"# Gone\n", "text/markdown"), project_id=pid)
    assert response.status_code in (200, 201)
    async with system_session(kijko.system_db, readonly=True) as db:
        key = await db.fetchval("SELECT storage_key FROM kijko.uploaded_files WHERE project_id = $1", UUID(pid))
    assert kijko.storage is not None
    await kijko.storage.delete(key)
    await start(client, alice, pid)
    await run_until_idle(kijko)
    failed = await (await client.get(f"{API}/{pid}/progress", headers=alice.headers)).get_json()
    assert failed["errorCode"] == "SOURCE_MISSING" and "gone.md" in failed["errorMessage"]
    shown = await (await client.get(f"{API}/{pid}", headers=alice.headers)).get_json()
    assert shown["status"] == "error"


async def test_an_estimate_before_the_runs_start_is_a_422_not_a_500(client: Any, alice: Account) -> None:
    """The run's row refuses an estimated completion before its start (a check constraint):
    the runner hears which field, whether its time carries a zone or not."""
    project = await text_project(client, alice, "Estimate")
    pid = project["id"]
    await start(client, alice, pid, runner="external")
    for moment in ("1970-01-01T00:00:00Z", "0001-01-01T00:00:00"):
        response = await client.put(
            f"{API}/{pid}/progress", json={"estimatedCompletionAt": moment}, headers=alice.headers
        )
        assert response.status_code == 422, await response.get_data(as_text=True)
        assert (await response.get_json())["field"] == "estimatedCompletionAt"
    response = await client.put(
        f"{API}/{pid}/progress", json={"estimatedCompletionAt": "2999-01-01T00:00:00Z"}, headers=alice.headers
    )
    assert response.status_code == 200
    assert (await response.get_json())["estimatedCompletionAt"].startswith("2999-01-01")


async def test_cancelling_a_run_pointed_at_another_projects_job_leaves_that_job_alone(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    """A statement injected into a member's tenant session may write a run of their own
    project whose job_id is another project's job (the app role inserts runs, and reads the
    organization's jobs); cancelling that run must not cancel the other project's job."""
    from kijko_core.db.session import tenant_session

    victim = await text_project(client, alice, "Victim")
    started = await start(client, alice, victim["id"])
    mallory = await add_member(kijko, alice.org_id, "member")
    own = await text_project(client, mallory, "Mallory's")
    async with tenant_session(kijko.app_db, mallory.identity) as db:
        await db.execute(
            "INSERT INTO kijko.ingestion_runs"
            " (organization_id, project_id, job_id, requested_by, status, previous_status)"
            " VALUES ($1, $2, $3, $4, 'running', 'draft')",
            UUID(alice.org_id),
            UUID(own["id"]),
            UUID(started["jobId"]),
            UUID(mallory.user_id),
        )
    response = await client.post(f"{API}/{own['id']}/cancel-ingestion", headers=mallory.headers)
    assert response.status_code == 200  # the forged run is cancelled …
    async with system_session(kijko.system_db) as db:
        state = await db.fetchval("SELECT state FROM kijko.jobs WHERE id = $1", UUID(started["jobId"]))
    assert state == "queued"  # … and the victim's job is not
    response = await client.post(f"{API}/{victim['id']}/cancel-ingestion", headers=alice.headers)
    assert response.status_code == 200
    async with system_session(kijko.system_db) as db:
        state = await db.fetchval("SELECT state FROM kijko.jobs WHERE id = $1", UUID(started["jobId"]))
    assert state == "cancelled"  # its own run's cancel still cancels it
