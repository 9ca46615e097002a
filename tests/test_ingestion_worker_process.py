"""A ``kijko worker`` process killed with ``kill -9`` in the middle of an ingestion: the job
is retried from the start after its lease by another worker process, the partial chunks of
the killed attempt are removed, and the result is the same as a clean run's."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from tests import test_ingestion as base
from tests.conftest import Account
from tests.egress_server import GitServer
from tests.ingestion_kit import (
    chunks_of,
    files_of,
    indexed_run,
    ingest,
    progress,
    project_with_repository,
    runs_of,
    wait_for,
)
from tests.test_cli import kijko_env
from tests.test_ingestion import INGESTED, LEFT_OUT, SYMLINKS, _service_insert_chunk, repo_url
from tests.test_worker_process import Workers

pytestmark = pytest.mark.slow

# The fixtures of the in-process tests, on this module's git server.
ingestion_kijko = base.ingestion_kijko
web = base.web
carol = base.carol


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("ingestion-kill-git"))
    server.add_repository("acme", "widgets", {**INGESTED, **LEFT_OUT}, symlinks=SYMLINKS)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workers(database: Any, encryption_key: str, git_server: GitServer, tmp_path: Path) -> Iterator[Workers]:
    env = kijko_env(
        database,
        encryption_key,
        tmp_path,
        KIJKO_LOG_FORMAT="json",
        KIJKO_WORKER_POLL_SECONDS="0.3",
        KIJKO_JOB_RETRY_BASE_SECONDS="0.1",
        KIJKO_JOB_RETRY_MAX_SECONDS="0.5",
        KIJKO_DB_SYSTEM_POOL_SIZE="4",
        KIJKO_EGRESS_ALLOW_CIDRS="127.0.0.0/8",
        KIJKO_GIT_HOSTS=f"github={git_server.url}",
    )
    manager = Workers(env, tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()


async def test_a_worker_killed_mid_run_is_retried_to_the_same_result(
    web: Any, ingestion_kijko: Kijko, git_server: GitServer, carol: Account, workers: Workers
) -> None:
    kijko = ingestion_kijko
    # The reference: the same repository, ingested cleanly by this process.
    clean = await project_with_repository(web, carol, f"Clean {uuid.uuid4().hex[:6]}", repo_url(git_server))
    await ingest(web, carol, clean["id"])
    await run_until_idle(kijko)
    reference = await progress(web, carol, clean["id"])

    project = await project_with_repository(web, carol, f"Killed {uuid.uuid4().hex[:6]}", repo_url(git_server))
    git_server.delay = 3.0  # the first attempt is inside its clone when it dies
    started = await ingest(web, carol, project["id"])
    (run,) = await runs_of(kijko, project["id"])
    first = workers.start()
    await wait_for(lambda: _running(kijko, run["id"]))
    # What the killed attempt had indexed so far (the retry must not keep it).
    await _service_insert_chunk(kijko, carol.org_id, project["id"], str(run["id"]))
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    git_server.delay = 0.0
    workers.start()
    finished = await wait_for(lambda: _completed(kijko, run["id"]), within=90.0, every=0.2)
    assert finished

    result = await progress(web, carol, project["id"])
    assert result["metrics"] == reference["metrics"]
    ours, theirs = await chunks_of(kijko, run["id"]), await chunks_of(kijko, reference["id"])
    assert [(c["path"], c["start_line"], c["content_hash"]) for c in ours] == [
        (c["path"], c["start_line"], c["content_hash"]) for c in theirs
    ]
    assert "partial.py" not in {c["path"] for c in ours}
    assert [f["path"] for f in await files_of(kijko, run["id"])] == [
        f["path"] for f in await files_of(kijko, reference["id"])
    ]
    assert await indexed_run(kijko, project["id"]) == run["id"]
    # The job row is written just after the run's completion commits.
    job = await wait_for(lambda: _job_if_finished(kijko, started["jobId"]))
    assert (job["state"], job["attempts"]) == ("succeeded", 2)
    shown = await (await web.get(f"/api/v1/projects/{project['id']}", headers=carol.headers)).get_json()
    assert shown["status"] == "active" and shown["totalFiles"] == len(INGESTED)


async def _running(kijko: Kijko, run_id: Any) -> bool:
    async with system_session(kijko.system_db, readonly=True) as db:
        return await db.fetchval("SELECT status FROM kijko.ingestion_runs WHERE id = $1", run_id) == "running"


async def _completed(kijko: Kijko, run_id: Any) -> bool:
    async with system_session(kijko.system_db, readonly=True) as db:
        return await db.fetchval("SELECT status FROM kijko.ingestion_runs WHERE id = $1", run_id) == "completed"


async def _job_if_finished(kijko: Kijko, job_id: str) -> Any:
    async with system_session(kijko.system_db, readonly=True) as db:
        job = await db.fetchrow("SELECT state, attempts FROM kijko.jobs WHERE id = $1", UUID(job_id))
    return job if job is not None and job["state"] != "running" else None
