"""Migration 0014: the database refuses impossible run states whatever the code does, and the
app role can do no more than ingestion needs (column grants, service-only index and chunks)."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.db.session import (
    ServiceActor,
    load_service_capability,
    service_session,
    system_session,
    tenant_session,
)
from kijko_core.runtime import Kijko
from tests.conftest import Account

API = "/api/v1/projects"


async def queued_run(client: Any, account: Account) -> tuple[str, str]:
    response = await client.post(
        API,
        json={"name": f"Schema {uuid.uuid4().hex[:6]}", "type": "manual", "customSettings": {"manualContent": "x"}},
        headers=account.headers,
    )
    project_id = (await response.get_json())["project"]["id"]
    response = await client.post(f"{API}/{project_id}/ingest", json={}, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    progress = await (await client.get(f"{API}/{project_id}/progress", headers=account.headers)).get_json()
    return project_id, progress["id"]


@pytest.mark.parametrize(
    "change",
    [
        "status = 'completed', progress_percent = 100",  # no completion time
        "completed_at = now()",  # a completion time on a live run
        "status = 'completed', completed_at = now(), progress_percent = 50",  # completed below 100 %
        "status = 'failed'",  # no error
        "status = 'failed', error_code = 'X_Y'",  # a code without a message
        "error_code = 'X_Y', error_message = 'boom'",  # an error on a live run
        "error_code = 'lower case', error_message = 'boom', status = 'failed'",
        "progress_percent = 100.5",
        "progress_percent = -1",
        "files_processed = -1",
        "chunks_created = -5",
        "status = 'paused'",
        "phase = 'uploading'",
        "previous_status = 'processing'",
        "estimated_completion_at = started_at - interval '1 second'",
        "completed_at = started_at - interval '1 second', status = 'completed', progress_percent = 100",
    ],
)
async def test_impossible_run_states_are_refused(client: Any, kijko: Kijko, alice: Account, change: str) -> None:
    _, run_id = await queued_run(client, alice)
    with pytest.raises(asyncpg.CheckViolationError):
        async with system_session(kijko.system_db) as db:
            await db.execute(f"UPDATE kijko.ingestion_runs SET {change} WHERE id = $1", UUID(run_id))  # noqa: S608


async def test_a_project_has_one_live_run_at_most(client: Any, kijko: Kijko, alice: Account) -> None:
    project_id, run_id = await queued_run(client, alice)
    capability = await load_service_capability(kijko.system_db)

    def as_service() -> Any:
        return service_session(kijko.app_db, capability, UUID(alice.org_id), ServiceActor("ingestion.run", "t"))

    with pytest.raises(asyncpg.UniqueViolationError):
        async with as_service() as db:
            await db.execute(
                "INSERT INTO kijko.ingestion_runs (organization_id, project_id, status, previous_status)"
                " VALUES ($1, $2, 'running', 'draft')",
                UUID(alice.org_id),
                UUID(project_id),
            )
    async with as_service() as db:  # a finished one does not count
        await db.execute(
            "INSERT INTO kijko.ingestion_runs (organization_id, project_id, status, previous_status)"
            " VALUES ($1, $2, 'cancelled', 'draft')",
            UUID(alice.org_id),
            UUID(project_id),
        )
    assert run_id


async def test_the_app_role_changes_only_what_ingestion_changes(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    project_id, run_id = await queued_run(client, alice)
    for change in (
        "project_id = gen_random_uuid()",
        "requested_by = NULL",
        "job_id = NULL",
        "previous_status = 'active'",
        "started_at = now()",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with tenant_session(kijko.app_db, alice.identity) as db:
                await db.execute(f"UPDATE kijko.ingestion_runs SET {change} WHERE id = $1", UUID(run_id))  # noqa: S608
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_session(kijko.app_db, alice.identity) as db:
            await db.execute("DELETE FROM kijko.ingestion_runs WHERE id = $1", UUID(run_id))
    # A member switches no index, even of their own project (the worker's service session does).
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_session(kijko.app_db, alice.identity) as db:
            await db.execute(
                "INSERT INTO kijko.project_indexes (organization_id, project_id, run_id) VALUES ($1, $2, $3)",
                UUID(alice.org_id),
                UUID(project_id),
                UUID(run_id),
            )
    # Nor starts a run in someone else's name.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_session(kijko.app_db, alice.identity) as db:
            await db.execute(
                "INSERT INTO kijko.ingestion_runs (organization_id, project_id, requested_by, previous_status, status)"
                " VALUES ($1, $2, $3, 'draft', 'failed')",
                UUID(alice.org_id),
                UUID(project_id),
                UUID(bob.user_id),
            )
    # Another organization sees none of it.
    async with tenant_session(kijko.app_db, bob.identity, readonly=True) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.ingestion_runs WHERE id = $1", UUID(run_id)) == 0
        updated = await db.fetchval(
            "SELECT count(*) FROM kijko.project_indexes WHERE project_id = $1", UUID(project_id)
        )
    assert updated == 0


async def test_deleting_a_project_deletes_its_runs_index_and_chunks(client: Any, kijko: Kijko, alice: Account) -> None:
    from kijko_core.jobs.worker import run_until_idle

    project_id, run_id = await queued_run(client, alice)
    await run_until_idle(kijko)
    async with system_session(kijko.system_db, readonly=True) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.chunks WHERE run_id = $1", UUID(run_id)) > 0
    response = await client.delete(f"{API}/{project_id}", headers=alice.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    async with system_session(kijko.system_db, readonly=True) as db:
        for table in ("ingestion_runs", "project_indexes", "chunks", "indexed_files"):
            count = await db.fetchval(f"SELECT count(*) FROM kijko.{table} WHERE project_id = $1", UUID(project_id))  # noqa: S608
            assert count == 0, table


# --- the sweeper ends runs nothing will finish ------------------------------------------------------


async def _orphan(kijko: Kijko, client: Any, account: Account, job_state: str) -> tuple[str, str]:
    project_id, run_id = await queued_run(client, account)
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.jobs SET state = $2, finished_at = now() WHERE id = (SELECT job_id FROM"
            " kijko.ingestion_runs WHERE id = $1)",
            UUID(run_id),
            job_state,
        )
        await db.execute(
            "UPDATE kijko.ingestion_runs SET updated_at = now() - interval '2 minutes' WHERE id = $1", UUID(run_id)
        )
    return project_id, run_id


async def test_the_sweeper_ends_runs_whose_job_is_over(client: Any, kijko: Kijko, alice: Account) -> None:
    from kijko_core.jobs import sweep_steps

    lost_project, lost_run = await _orphan(kijko, client, alice, "failed")
    cancelled_project, cancelled_run = await _orphan(kijko, client, alice, "cancelled")
    fresh_project, fresh_run = await queued_run(client, alice)  # its job is queued: left alone
    capability = await load_service_capability(kijko.system_db)
    async with service_session(kijko.app_db, capability, UUID(alice.org_id), ServiceActor("ingestion.run", "t")) as db:
        await db.execute(
            "INSERT INTO kijko.chunks (organization_id, project_id, run_id, source, path, language, start_line,"
            " end_line, content, content_hash, token_count) VALUES ($1, $2, $3, 'manual', 'stray.txt', 'text', 1, 1,"
            " 'stray', repeat('b', 64), 1)",
            UUID(alice.org_id),
            UUID(cancelled_project),
            UUID(cancelled_run),
        )
    assert await sweep_steps()["ingestion"](kijko) >= 3
    async with system_session(kijko.system_db, readonly=True) as db:
        runs = {
            str(r["id"]): (r["status"], r["error_code"])
            for r in await db.fetch(
                "SELECT id, status, error_code FROM kijko.ingestion_runs WHERE id = ANY($1::uuid[])",
                [UUID(lost_run), UUID(cancelled_run), UUID(fresh_run)],
            )
        }
        projects = {
            str(r["id"]): r["status"]
            for r in await db.fetch(
                "SELECT id, status FROM kijko.projects WHERE id = ANY($1::uuid[])",
                [UUID(lost_project), UUID(cancelled_project), UUID(fresh_project)],
            )
        }
        stray = await db.fetchval("SELECT count(*) FROM kijko.chunks WHERE run_id = $1", UUID(cancelled_run))
    assert runs == {
        lost_run: ("failed", "WORKER_LOST"),
        cancelled_run: ("cancelled", None),
        fresh_run: ("queued", None),
    }
    assert projects == {lost_project: "error", cancelled_project: "draft", fresh_project: "processing"}
    assert stray == 0
