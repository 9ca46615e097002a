"""A project's index written the way the ingestion job writes it: a run in a service session,
its chunks and files in bulk, then ``kijko.project_indexes`` pointed at it when the run
completes.

PostgreSQL refuses ``COPY FROM`` into a table under row-level security ("COPY FROM not
supported with row-level security", even forced on the owner), and the app role may not
create temporary tables to stage a COPY; so each batch is one ``INSERT … SELECT … FROM
unnest(…)`` with an array per column, which the policies check: the job's own statements
(``kijko_core.ingestion.repository.INSERT_CHUNKS``/``INSERT_FILES``)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from kijko_core.db.session import ServiceActor, ServiceCapability, service_session
from kijko_core.ingestion.repository import INSERT_CHUNKS, INSERT_FILES
from kijko_core.runtime import Kijko

#: What COPY into kijko.chunks names (everything but the generated ``id`` and ``search``).
CHUNK_COLUMNS = (
    "organization_id",
    "project_id",
    "run_id",
    "source",
    "path",
    "language",
    "start_line",
    "end_line",
    "symbol",
    "content",
    "content_hash",
    "token_count",
)
FILE_COLUMNS = (
    "organization_id",
    "project_id",
    "run_id",
    "source",
    "path",
    "language",
    "size_bytes",
    "line_count",
    "chunk_count",
)


async def insert_rows(connection: asyncpg.Connection, statement: str, records: list[tuple[Any, ...]]) -> None:
    """``records`` of one run (tuples in the order of the *_COLUMNS above) with one of the job's
    statements: organization, project and run once, then an array per other column."""
    org, project, run = records[0][:3]
    columns = (list(column) for column in zip(*(record[3:] for record in records), strict=True))
    await connection.execute(statement, org, project, run, *columns)


@dataclass(frozen=True)
class Chunk:
    path: str
    content: str
    symbol: str | None = None
    language: str = "python"
    source: str = "acme/app"
    start_line: int = 1

    @property
    def end_line(self) -> int:
        return self.start_line + max(self.content.count("\n"), 1) - 1


async def index(
    kijko: Kijko,
    capability: ServiceCapability,
    org_id: str,
    project_id: str,
    chunks: list[Chunk],
    *,
    status: str = "completed",
    current: bool | None = None,
) -> UUID:
    """A run of ``project_id`` with ``chunks`` (and one indexed file per path), ending in
    ``status``; it becomes the project's index when ``current`` (by default: when completed)."""
    org, project, run = UUID(org_id), UUID(project_id), uuid.uuid4()
    actor = ServiceActor("ingestion", f"test-{run.hex[:12]}")
    async with service_session(kijko.app_db, capability, org, actor) as db:
        await db.execute(
            "INSERT INTO kijko.ingestion_runs (id, organization_id, project_id, status, previous_status, phase)"
            " VALUES ($1, $2, $3, 'running', 'draft', 'indexing')",
            run,
            org,
            project,
        )
        records = [
            (
                org,
                project,
                run,
                c.source,
                c.path,
                c.language,
                c.start_line,
                c.end_line,
                c.symbol,
                c.content,
                hashlib.sha256(c.content.encode()).hexdigest(),
                len(c.content) // 4,
            )
            for c in chunks
        ]
        await insert_rows(db.connection, INSERT_CHUNKS, records)
        per_file: dict[tuple[str, str], list[Chunk]] = {}
        for c in chunks:
            per_file.setdefault((c.source, c.path), []).append(c)
        files = [
            (
                org,
                project,
                run,
                source,
                path,
                group[0].language,
                sum(len(c.content.encode()) for c in group),
                max(c.end_line for c in group),
                len(group),
            )
            for (source, path), group in per_file.items()
        ]
        await insert_rows(db.connection, INSERT_FILES, files)
        if status == "completed":
            await db.execute(
                "UPDATE kijko.ingestion_runs SET status = 'completed', progress_percent = 100,"
                " completed_at = now() WHERE id = $1",
                run,
            )
        elif status == "failed":
            await db.execute(
                "UPDATE kijko.ingestion_runs SET status = 'failed', error_code = 'TEST_FAILURE',"
                " error_message = 'failed in a test' WHERE id = $1",
                run,
            )
        elif status != "running":
            await db.execute("UPDATE kijko.ingestion_runs SET status = $2 WHERE id = $1", run, status)
        if current if current is not None else status == "completed":
            await db.execute(
                "INSERT INTO kijko.project_indexes (organization_id, project_id, run_id) VALUES ($1, $2, $3)"
                " ON CONFLICT (organization_id, project_id)"
                " DO UPDATE SET run_id = excluded.run_id, updated_at = now()",
                org,
                project,
                run,
            )
    return run
