"""Every SQL statement of ingestion runs (migration 0014). A run's state changes are
compare-and-set: they name the states they leave (``queued``/``running``), so a cancelled run
cannot be written by a worker that has not noticed yet, and a finished one never changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from kijko_core.db import sql
from kijko_core.db.session import Session
from kijko_core.ingestion.models import IngestionMetrics, IngestionProgress
from kijko_core.projects.models import Project
from kijko_core.projects.repository import TABLE as PROJECTS
from kijko_core.sources.models import FileRecord
from kijko_core.sources.repository import FILES


class RunRecord(BaseModel):
    """A row of ``kijko.ingestion_runs``."""

    id: UUID
    organization_id: UUID
    project_id: UUID
    job_id: UUID | None
    requested_by: UUID | None
    status: str
    previous_status: str
    phase: str
    progress_percent: float
    message: str
    files_processed: int
    total_files: int
    tokens_processed: int
    bytes_processed: int
    chunks_created: int
    errors_encountered: int
    original_tokens: int | None
    started_at: datetime
    estimated_completion_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    error_code: str | None
    updated_at: datetime

    @property
    def metrics(self) -> IngestionMetrics:
        return IngestionMetrics.of_row(self.model_dump())

    def wire(self) -> IngestionProgress:
        return IngestionProgress(
            id=self.id,
            project_id=self.project_id,
            phase=self.phase,  # type: ignore[arg-type]  # the column's check
            progress_percent=self.progress_percent,
            message=self.message,
            metrics=self.metrics,
            started_at=self.started_at,
            estimated_completion_at=self.estimated_completion_at,
            completed_at=self.completed_at,
            error_message=self.error_message,
            error_code=self.error_code,
        )


TABLE = sql.Table("kijko.ingestion_runs", RunRecord)
_ACTIVE_STATES = sql.Fragment("status IN ('queued', 'running')")

# The run GET /progress shows: the latest one that was not cancelled (a cancelled run is
# withdrawn: the project is back where it was, and so is what a reconnecting client reads).
_LATEST = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND project_id = $2 AND status <> 'cancelled'"
    "\nORDER BY started_at DESC, id DESC\nLIMIT 1",
    columns=TABLE.select_list,
    table=TABLE,
)
_ACTIVE = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND project_id = $2 AND {active}\nFOR UPDATE",
    columns=TABLE.select_list,
    table=TABLE,
    active=_ACTIVE_STATES,
)
_GET = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND id = $2", columns=TABLE.select_list, table=TABLE
)
_GET_FOR_UPDATE = sql.compose("{get}\nFOR UPDATE", get=sql.Fragment(_GET))

_INSERT = sql.compose(
    "INSERT INTO {table} (id, organization_id, project_id, job_id, requested_by, previous_status,"
    " message, estimated_completion_at)"
    "\nVALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))"
    "\nRETURNING {columns}",
    table=TABLE,
    columns=TABLE.select_list,
)

# The progress record, written while the run is active (the write is also the worker's
# cancellation check: no row back = stop). $3 phase … $11 errors; NULL keeps a value.
_PROGRESS = sql.compose(
    "UPDATE {table} SET"
    "\n    phase = coalesce($3, phase), progress_percent = coalesce($4, progress_percent),"
    "\n    message = coalesce($5, message), files_processed = coalesce($6, files_processed),"
    "\n    total_files = coalesce($7, total_files), tokens_processed = coalesce($8, tokens_processed),"
    "\n    bytes_processed = coalesce($9, bytes_processed), chunks_created = coalesce($10, chunks_created),"
    "\n    errors_encountered = coalesce($11, errors_encountered),"
    "\n    estimated_completion_at = coalesce($12, estimated_completion_at),"
    "\n    original_tokens = coalesce($13, original_tokens),"
    "\n    status = CASE WHEN $14 THEN 'running' ELSE status END,"
    "\n    updated_at = now()"
    "\nWHERE organization_id = $1 AND id = $2 AND {active}"
    "\nRETURNING {columns}",
    table=TABLE,
    active=_ACTIVE_STATES,
    columns=TABLE.select_list,
)

_START = sql.compose(
    "UPDATE {table} SET status = 'running', phase = 'repository_fetch', progress_percent = 0,"
    " message = $3, files_processed = 0, total_files = 0, tokens_processed = 0, bytes_processed = 0,"
    " chunks_created = 0, errors_encountered = 0, original_tokens = NULL, updated_at = now()"
    "\nWHERE organization_id = $1 AND id = $2 AND {active}\nRETURNING {columns}",
    table=TABLE,
    active=_ACTIVE_STATES,
    columns=TABLE.select_list,
)

_COMPLETE = sql.compose(
    "UPDATE {table} SET status = 'completed', progress_percent = 100, message = $3,"
    " files_processed = $4, total_files = $5, tokens_processed = $6, bytes_processed = $7,"
    " chunks_created = $8, errors_encountered = $9, original_tokens = coalesce($10, original_tokens),"
    " completed_at = greatest(now(), started_at), updated_at = now()"
    "\nWHERE organization_id = $1 AND id = $2 AND {active}\nRETURNING {columns}",
    table=TABLE,
    active=_ACTIVE_STATES,
    columns=TABLE.select_list,
)

_FAIL = sql.compose(
    "UPDATE {table} SET status = 'failed', error_code = $3, error_message = $4, message = $4,"
    " updated_at = now()"
    "\nWHERE organization_id = $1 AND id = $2 AND {active}\nRETURNING {columns}",
    table=TABLE,
    active=_ACTIVE_STATES,
    columns=TABLE.select_list,
)

_CANCEL = sql.compose(
    "UPDATE {table} SET status = 'cancelled', message = 'Cancelled', updated_at = now()"
    "\nWHERE organization_id = $1 AND id = $2 AND {active}\nRETURNING {columns}",
    table=TABLE,
    active=_ACTIVE_STATES,
    columns=TABLE.select_list,
)

# Runs of the organization the worker is running now (its concurrency limit), other than $2.
_RUNNING_IN_ORG = sql.compose(
    "SELECT count(*) FROM {table} WHERE organization_id = $1 AND status = 'running' AND id <> $2",
    table=TABLE,
)
# One start at a time per organization: the count and the start are one decision.
_ORG_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('kijko.ingestion:' || $1::text, 0))"

_SET_PROJECT_STATUS = "UPDATE kijko.projects SET status = $3, updated_at = now() WHERE organization_id = $1 AND id = $2"
# Completion: the project's counters (contract §2.2.5 progress/complete).
_PROJECT_COMPLETED = (
    "UPDATE kijko.projects SET status = 'active', total_files = $3, original_tokens = coalesce($4, original_tokens),"
    " optimized_tokens = $5, ingestion_time_seconds = $6, updated_at = now()"
    "\nWHERE organization_id = $1 AND id = $2"
)

# The sources a run ingests, for NO_SOURCES and the estimate: repositories (with what the last
# run counted), uploaded files (with their sizes), the manual text.
_SOURCES = (
    "SELECT (SELECT count(*) FROM kijko.repositories r WHERE r.organization_id = $1 AND r.project_id = $2)"
    " AS repositories,"
    "\n    (SELECT coalesce(sum(r.file_count), 0) FROM kijko.repositories r"
    " WHERE r.organization_id = $1 AND r.project_id = $2) AS known_files,"
    "\n    (SELECT count(*) FROM kijko.repositories r"
    " WHERE r.organization_id = $1 AND r.project_id = $2 AND r.file_count IS NULL) AS unknown_repositories,"
    "\n    (SELECT count(*) FROM kijko.uploaded_files f WHERE f.organization_id = $1 AND f.project_id = $2)"
    " AS uploads,"
    "\n    (SELECT coalesce(sum(f.size), 0) FROM kijko.uploaded_files f"
    " WHERE f.organization_id = $1 AND f.project_id = $2) AS upload_bytes,"
    "\n    (SELECT coalesce(octet_length(p.manual_content), 0) FROM kijko.projects p"
    " WHERE p.organization_id = $1 AND p.id = $2) AS manual_bytes"
)

# The index: which run's chunks are searchable. Switched by the completing worker.
_INDEXED_RUN = "SELECT run_id FROM kijko.project_indexes WHERE organization_id = $1 AND project_id = $2 FOR UPDATE"
_SET_INDEX = (
    "INSERT INTO kijko.project_indexes (organization_id, project_id, run_id) VALUES ($1, $2, $3)"
    "\nON CONFLICT (organization_id, project_id) DO UPDATE SET run_id = excluded.run_id, updated_at = now()"
)
_DELETE_CHUNKS = "DELETE FROM kijko.chunks WHERE organization_id = $1 AND project_id = $2 AND run_id = $3"
_DELETE_FILES = "DELETE FROM kijko.indexed_files WHERE organization_id = $1 AND project_id = $2 AND run_id = $3"

# Bulk writes: arrays bound once per batch, unnested into one INSERT that row-level security
# checks row by row (COPY FROM is refused on tables with row-level security; decision 0077).
INSERT_CHUNKS = (
    "INSERT INTO kijko.chunks (organization_id, project_id, run_id, source, path, language, start_line,"
    " end_line, symbol, content, content_hash, token_count)"
    "\nSELECT $1, $2, $3, c.source, c.path, c.language, c.start_line, c.end_line, c.symbol, c.content,"
    " c.content_hash, c.token_count"
    "\nFROM unnest($4::text[], $5::text[], $6::text[], $7::int[], $8::int[], $9::text[], $10::text[],"
    " $11::text[], $12::int[])"
    " AS c (source, path, language, start_line, end_line, symbol, content, content_hash, token_count)"
)
INSERT_FILES = (
    "INSERT INTO kijko.indexed_files (organization_id, project_id, run_id, source, path, language,"
    " size_bytes, line_count, chunk_count)"
    "\nSELECT $1, $2, $3, f.source, f.path, f.language, f.size_bytes, f.line_count, f.chunk_count"
    "\nFROM unnest($4::text[], $5::text[], $6::text[], $7::bigint[], $8::int[], $9::int[])"
    " AS f (source, path, language, size_bytes, line_count, chunk_count)"
)

# The members to tell about a finished run (notifyOnIngestion / notifyOnError), accepted ones.
_NOTIFY = (
    "SELECT m.email, m.name FROM kijko.project_members m"
    "\nWHERE m.organization_id = $1 AND m.project_id = $2 AND m.accepted_at IS NOT NULL"
    "\n  AND CASE WHEN $3 THEN m.notify_on_ingestion ELSE m.notify_on_error END"
    "\nORDER BY m.invited_at, m.id"
)

# The requester's git-provider connection (a service session sees its organization's).
_CONNECTION = (
    "SELECT access_token_ciphertext FROM kijko.git_connections"
    " WHERE organization_id = $1 AND user_id = $2 AND provider = $3"
)

_REPOSITORIES = (
    "SELECT id, provider, repository_url, repository_name, branch, status, last_commit_hash,"
    " include_paths, exclude_paths"
    "\nFROM kijko.repositories WHERE organization_id = $1 AND project_id = $2 ORDER BY created_at, id"
)
_REPOSITORY_STATUS = (
    "UPDATE kijko.repositories SET status = $3, updated_at = now() WHERE organization_id = $1 AND id = $2"
)
_REPOSITORY_SYNCED = (
    "UPDATE kijko.repositories SET status = 'connected', last_commit_hash = $3, last_sync_at = now(),"
    " file_count = $4, updated_at = now() WHERE organization_id = $1 AND id = $2"
)
# Repositories left 'syncing' by a run that stopped: back to what they were before it.
_REPOSITORIES_SETTLE = (
    "UPDATE kijko.repositories SET status = CASE WHEN last_commit_hash IS NULL THEN 'pending' ELSE 'connected' END,"
    " updated_at = now() WHERE organization_id = $1 AND project_id = $2 AND status = 'syncing'"
)
_UPLOADS = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND project_id = $2\nORDER BY created_at, id",
    columns=FILES.select_list,
    table=FILES,
)
_PROJECT = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND id = $2",
    columns=PROJECTS.select_list,
    table=PROJECTS,
)
_MANUAL = "SELECT manual_content FROM kijko.projects WHERE organization_id = $1 AND id = $2"


async def latest(db: Session, org_id: UUID, project_id: UUID) -> RunRecord | None:
    return TABLE.maybe(await db.fetchrow(_LATEST, org_id, project_id))


async def active(db: Session, org_id: UUID, project_id: UUID) -> RunRecord | None:
    """The project's queued or running run, locked until the transaction ends."""
    return TABLE.maybe(await db.fetchrow(_ACTIVE, org_id, project_id))


async def get(db: Session, org_id: UUID, run_id: UUID, *, for_update: bool = False) -> RunRecord | None:
    return TABLE.maybe(await db.fetchrow(_GET_FOR_UPDATE if for_update else _GET, org_id, run_id))


async def insert(
    db: Session,
    *,
    run_id: UUID,
    org_id: UUID,
    project_id: UUID,
    job_id: UUID | None,
    requested_by: UUID | None,
    previous_status: str,
    message: str,
    estimated_seconds: float,
) -> RunRecord:
    row = await db.fetchrow(
        _INSERT, run_id, org_id, project_id, job_id, requested_by, previous_status, message, float(estimated_seconds)
    )
    assert row is not None
    return TABLE.one(row)


async def write_progress(
    db: Session,
    org_id: UUID,
    run_id: UUID,
    *,
    phase: str | None = None,
    percent: float | None = None,
    message: str | None = None,
    metrics: IngestionMetrics | None = None,
    estimated_completion_at: datetime | None = None,
    original_tokens: int | None = None,
    running: bool = False,
) -> RunRecord | None:
    """Write the progress record; None: the run is no longer active (cancelled, finished)."""
    m: dict[str, Any] = metrics.model_dump() if metrics is not None else {}
    row = await db.fetchrow(
        _PROGRESS,
        org_id,
        run_id,
        phase,
        percent,
        message,
        m.get("files_processed"),
        m.get("total_files"),
        m.get("tokens_processed"),
        m.get("bytes_processed"),
        m.get("chunks_created"),
        m.get("errors_encountered"),
        estimated_completion_at,
        original_tokens,
        running,
    )
    return TABLE.maybe(row)


async def start(db: Session, org_id: UUID, run_id: UUID, message: str) -> RunRecord | None:
    """Queued (or a retried running) run → running with zeroed metrics; None: not active."""
    return TABLE.maybe(await db.fetchrow(_START, org_id, run_id, message))


async def complete(
    db: Session, org_id: UUID, run_id: UUID, metrics: IngestionMetrics, message: str, original_tokens: int | None
) -> RunRecord | None:
    m = metrics
    row = await db.fetchrow(
        _COMPLETE,
        org_id,
        run_id,
        message,
        m.files_processed,
        m.total_files,
        m.tokens_processed,
        m.bytes_processed,
        m.chunks_created,
        m.errors_encountered,
        original_tokens,
    )
    return TABLE.maybe(row)


async def fail(db: Session, org_id: UUID, run_id: UUID, code: str, message: str) -> RunRecord | None:
    return TABLE.maybe(await db.fetchrow(_FAIL, org_id, run_id, code, message[:4000] or code))


async def cancel(db: Session, org_id: UUID, run_id: UUID) -> RunRecord | None:
    return TABLE.maybe(await db.fetchrow(_CANCEL, org_id, run_id))


async def lock_organization(db: Session, org_id: UUID) -> None:
    await db.execute(_ORG_LOCK, str(org_id))


async def running_in_organization(db: Session, org_id: UUID, other_than: UUID) -> int:
    return int(await db.fetchval(_RUNNING_IN_ORG, org_id, other_than))


async def set_project_status(db: Session, org_id: UUID, project_id: UUID, status: str) -> None:
    await db.execute(_SET_PROJECT_STATUS, org_id, project_id, status)


async def project_completed(
    db: Session,
    org_id: UUID,
    project_id: UUID,
    *,
    total_files: int,
    original_tokens: int | None,
    optimized_tokens: int,
    seconds: float,
) -> None:
    await db.execute(_PROJECT_COMPLETED, org_id, project_id, total_files, original_tokens, optimized_tokens, seconds)


async def sources(db: Session, org_id: UUID, project_id: UUID) -> dict[str, int]:
    row = await db.fetchrow(_SOURCES, org_id, project_id)
    assert row is not None
    return {key: int(value) for key, value in dict(row).items()}


async def indexed_run(db: Session, org_id: UUID, project_id: UUID) -> UUID | None:
    """The run whose chunks are the project's index (the row locked until commit)."""
    run_id: UUID | None = await db.fetchval(_INDEXED_RUN, org_id, project_id)
    return run_id


async def set_index(db: Session, org_id: UUID, project_id: UUID, run_id: UUID) -> None:
    await db.execute(_SET_INDEX, org_id, project_id, run_id)


async def delete_run_content(db: Session, org_id: UUID, project_id: UUID, run_id: UUID) -> None:
    """Remove a run's chunks and file rows (service sessions only: row-level security)."""
    await db.execute(_DELETE_CHUNKS, org_id, project_id, run_id)
    await db.execute(_DELETE_FILES, org_id, project_id, run_id)


async def recipients(db: Session, org_id: UUID, project_id: UUID, *, success: bool) -> list[tuple[str, str | None]]:
    return [(row["email"], row["name"]) for row in await db.fetch(_NOTIFY, org_id, project_id, success)]


async def connection_ciphertext(db: Session, org_id: UUID, user_id: UUID, provider: str) -> str | None:
    value: str | None = await db.fetchval(_CONNECTION, org_id, user_id, provider)
    return value


async def repositories(db: Session, org_id: UUID, project_id: UUID) -> list[dict[str, Any]]:
    return [dict(row) for row in await db.fetch(_REPOSITORIES, org_id, project_id)]


async def set_repository_status(db: Session, org_id: UUID, repository_id: UUID, status: str) -> None:
    await db.execute(_REPOSITORY_STATUS, org_id, repository_id, status)


async def repository_synced(db: Session, org_id: UUID, repository_id: UUID, commit: str | None, files: int) -> None:
    await db.execute(_REPOSITORY_SYNCED, org_id, repository_id, commit, files)


async def settle_repositories(db: Session, org_id: UUID, project_id: UUID) -> None:
    await db.execute(_REPOSITORIES_SETTLE, org_id, project_id)


async def uploads(db: Session, org_id: UUID, project_id: UUID) -> list[FileRecord]:
    return FILES.many(await db.fetch(_UPLOADS, org_id, project_id))


async def manual_content(db: Session, org_id: UUID, project_id: UUID) -> str | None:
    value: str | None = await db.fetchval(_MANUAL, org_id, project_id)
    return value


async def project(db: Session, org_id: UUID, project_id: UUID) -> Project | None:
    """The project row, without the caller's readability (a service session's, or after a
    check)."""
    return PROJECTS.maybe(await db.fetchrow(_PROJECT, org_id, project_id))


# --- the sweeper (system role: across organizations) -------------------------------------------

#: Runs still live whose job is over (a worker killed on its last attempt, a job cancelled or
#: deleted by an operator): nothing will ever finish them. Quiet for a minute first, so a job
#: that just finished has written its run.
_ORPHANS = (
    "SELECT r.id, r.organization_id, r.project_id, r.previous_status, r.phase, j.state AS job_state"
    "\nFROM kijko.ingestion_runs r LEFT JOIN kijko.jobs j ON j.id = r.job_id"
    "\nWHERE r.status IN ('queued', 'running') AND r.job_id IS NOT NULL"
    "\n  AND (j.id IS NULL OR j.state IN ('succeeded', 'failed', 'cancelled'))"
    "\n  AND r.updated_at < now() - make_interval(secs => $1)"
    "\nORDER BY r.updated_at LIMIT $2"
    "\nFOR UPDATE OF r SKIP LOCKED"
)
_ORPHAN_CANCELLED = (
    "UPDATE kijko.ingestion_runs SET status = 'cancelled', message = 'Cancelled', updated_at = now()"
    " WHERE id = $1 AND status IN ('queued', 'running')"
)
_ORPHAN_FAILED = (
    "UPDATE kijko.ingestion_runs SET status = 'failed', error_code = $2, error_message = $3, message = $3,"
    " updated_at = now() WHERE id = $1 AND status IN ('queued', 'running')"
)
_ORPHAN_PROJECT = "UPDATE kijko.projects SET status = $2, updated_at = now() WHERE id = $1 AND status = 'processing'"
# Chunks of runs that ended without becoming the index (a stop whose clean-up did not run).
_STRAY_CHUNKS = (
    "DELETE FROM kijko.chunks WHERE id IN ("
    "\n    SELECT c.id FROM kijko.ingestion_runs r JOIN kijko.chunks c"
    " ON c.organization_id = r.organization_id AND c.project_id = r.project_id AND c.run_id = r.id"
    "\n    WHERE r.status IN ('failed', 'cancelled') LIMIT $1)"
)
_STRAY_FILES = (
    "DELETE FROM kijko.indexed_files f USING kijko.ingestion_runs r"
    "\nWHERE f.organization_id = r.organization_id AND f.project_id = r.project_id AND f.run_id = r.id"
    " AND r.status IN ('failed', 'cancelled')"
)


async def orphans(db: Session, quiet_seconds: float, limit: int) -> list[dict[str, Any]]:
    return [dict(row) for row in await db.fetch(_ORPHANS, quiet_seconds, limit)]


async def end_orphan(db: Session, orphan: dict[str, Any], code: str, message: str) -> None:
    if orphan["job_state"] == "cancelled":
        await db.execute(_ORPHAN_CANCELLED, orphan["id"])
        await db.execute(_ORPHAN_PROJECT, orphan["project_id"], orphan["previous_status"])
    else:
        await db.execute(_ORPHAN_FAILED, orphan["id"], code, message)
        await db.execute(_ORPHAN_PROJECT, orphan["project_id"], "error")


async def delete_stray_content(db: Session, limit: int) -> int:
    deleted = await db.execute(_STRAY_CHUNKS, limit)
    await db.execute(_STRAY_FILES)
    return int(deleted.split()[-1])
