"""Shared pieces of the ingestion tests: a Kijko that may reach the local git server, its app,
a recorder of the events port, and helpers to start runs and wait for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from kijko_core import events
from kijko_core.db.session import system_session
from kijko_core.events import InProcessEvents
from kijko_core.jobs.worker import Worker
from kijko_core.runtime import Kijko
from tests.conftest import Account

API = "/api/v1/projects"
#: The test kinds import nothing here; the worker runs every registered kind.
DEADLINE_SECONDS = 60.0


async def wait_for(
    check: Callable[[], Awaitable[Any]], *, within: float = DEADLINE_SECONDS, every: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


@asynccontextmanager
async def recording() -> AsyncIterator[InProcessEvents]:
    """The process's events go to a fresh recorder for the block."""
    recorder = InProcessEvents()
    previous = events.use(recorder)
    try:
        yield recorder
    finally:
        events.use(previous)


@asynccontextmanager
async def running_worker(kijko: Kijko, *, concurrency: int | None = None) -> AsyncIterator[Worker]:
    """A worker of this process, claiming and running jobs until the block ends."""
    worker = Worker(kijko, concurrency=concurrency)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.drain(grace_seconds=10)
        await task


async def project_with_repository(client: Any, account: Account, name: str, url: str, **project: Any) -> dict[str, Any]:
    response = await client.post(API, json={"name": name, "type": "repository", **project}, headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    created: dict[str, Any] = (await response.get_json())["project"]
    response = await client.post(
        f"{API}/{created['id']}/repositories",
        json={"provider": "github", "repositoryUrl": url, "branch": "main"},
        headers=account.headers,
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return created


async def ingest(client: Any, account: Account, project_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"{API}/{project_id}/ingest", json=body, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    answer: dict[str, Any] = await response.get_json()
    return answer


async def progress(client: Any, account: Account, project_id: str) -> Any:
    response = await client.get(f"{API}/{project_id}/progress", headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def run_row(kijko: Kijko, run_id: UUID | str) -> dict[str, Any]:
    async with system_session(kijko.system_db, readonly=True) as db:
        row = await db.fetchrow("SELECT * FROM kijko.ingestion_runs WHERE id = $1", UUID(str(run_id)))
    assert row is not None
    return dict(row)


async def runs_of(kijko: Kijko, project_id: str) -> list[dict[str, Any]]:
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch(
            "SELECT * FROM kijko.ingestion_runs WHERE project_id = $1 ORDER BY started_at", UUID(project_id)
        )
    return [dict(row) for row in rows]


async def indexed_run(kijko: Kijko, project_id: str) -> UUID | None:
    async with system_session(kijko.system_db, readonly=True) as db:
        value: UUID | None = await db.fetchval(
            "SELECT run_id FROM kijko.project_indexes WHERE project_id = $1", UUID(project_id)
        )
    return value


async def chunks_of(kijko: Kijko, run_id: UUID | str) -> list[dict[str, Any]]:
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch(
            "SELECT source, path, language, start_line, end_line, symbol, content, content_hash, token_count"
            " FROM kijko.chunks WHERE run_id = $1 ORDER BY source, path, start_line, id",
            UUID(str(run_id)),
        )
    return [dict(row) for row in rows]


async def files_of(kijko: Kijko, run_id: UUID | str) -> list[dict[str, Any]]:
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch(
            "SELECT source, path, language, size_bytes, line_count, chunk_count FROM kijko.indexed_files"
            " WHERE run_id = $1 ORDER BY source, path",
            UUID(str(run_id)),
        )
    return [dict(row) for row in rows]


P = "/api/v1/projects/{project_id}"
BODY = {"400", "413", "415", "422"}
#: The statuses each ingestion operation documents besides its success and 500 (pinned here,
#: triggered for real in tests/test_ingestion_routes.py).
INGESTION_OPERATIONS: dict[tuple[str, str], set[str]] = {
    # 429: the plan's ingestions of the period (tests/test_quotas.py).
    ("post", f"{P}/ingest"): {"401", "403", "404", "409", "429"} | BODY,
    ("get", f"{P}/progress"): {"401", "403", "404"},
    ("post", f"{P}/cancel-ingestion"): {"401", "403", "404"},
    ("put", f"{P}/progress"): {"401", "403", "404", "409"} | BODY,
    ("post", f"{P}/progress/snapshot"): {"401", "403", "404", "409"} | BODY,
    ("post", f"{P}/progress/complete"): {"401", "403", "404", "409"} | BODY,
}
