"""Contract §2.2.5: starting, following and cancelling a project's ingestion, and the internal
progress routes of external ingestion runners (docs/ingestion.md)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_request

from kijko_core.billing.quotas import QuotaExceeded
from kijko_core.ingestion import service
from kijko_core.ingestion.chunkers import NoCustomChunker
from kijko_core.ingestion.models import (
    AlreadyProcessing,
    CompleteIngestion,
    IngestionProgress,
    NoActiveIngestion,
    NoSources,
    NotIngestible,
    ProgressOrNone,
    ProgressSnapshot,
    ProgressUpdate,
    RunByWorker,
    SnapshotResult,
    StartIngestion,
    StartIngestionResponse,
)
from kijko_core.projects.models import ProjectNotFound
from kijko_core.wire import Success
from kijko_server.openapi import responds
from kijko_server.paths import parse_project_id
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("ingestion", __name__, url_prefix="/api/v1")


@bp.post("/projects/<project_id>/ingest")
@responds(*TENANT_ERRORS, ProjectNotFound, AlreadyProcessing, NotIngestible, NoSources, NoCustomChunker, QuotaExceeded)
@validate_request(StartIngestion)
@validate_response(StartIngestionResponse)
async def start_ingestion(project_id: str, data: StartIngestion) -> StartIngestionResponse:
    """Start ingesting the project: it becomes ``processing``, its progress record is created
    and the job queued, together. ``wsNamespaceUrl`` is the Socket.IO path with the project
    whose room (``ingestion:<projectId>``) carries the run's events."""
    async with tenant() as db:
        return await service.start(db, runtime().settings, parse_project_id(project_id), data)


@bp.get("/projects/<project_id>/progress")
@responds(*TENANT_ERRORS, ProjectNotFound)
@validate_response(ProgressOrNone)
async def get_ingestion_progress(project_id: str) -> ProgressOrNone:
    """The project's current (or last finished) ingestion progress, or ``null`` when it has
    none; kept current by the worker at least every 2 s while it runs."""
    async with tenant(readonly=True) as db:
        return ProgressOrNone(await service.current_progress(db, parse_project_id(project_id)))


@bp.post("/projects/<project_id>/cancel-ingestion")
@responds(*TENANT_ERRORS, ProjectNotFound, NoActiveIngestion)
@validate_response(Success)
async def cancel_ingestion(project_id: str) -> Success:
    """Cancel the running ingestion: the project returns to its status before it, its
    previous index (if any) stays searchable, the run's partial chunks are removed."""
    async with tenant() as db:
        run_id, job_id = await service.cancel(db, parse_project_id(project_id))
        org_id = db.principal.org_id
    await service.cancel_job(runtime().system_db, org_id, run_id, job_id)
    return Success()


@bp.put("/projects/<project_id>/progress")
@responds(*TENANT_ERRORS, ProjectNotFound, NoActiveIngestion, RunByWorker)
@validate_request(ProgressUpdate)
@validate_response(IngestionProgress)
async def report_ingestion_progress(project_id: str, data: ProgressUpdate) -> IngestionProgress:
    """For an external ingestion runner (project admins): update the active run's progress;
    ``errorMessage`` fails it."""
    async with tenant() as db:
        return await service.update_progress(db, parse_project_id(project_id), data)


@bp.post("/projects/<project_id>/progress/snapshot")
@responds(*TENANT_ERRORS, ProjectNotFound, RunByWorker)
@validate_request(ProgressSnapshot)
@validate_response(SnapshotResult)
async def snapshot_ingestion_progress(project_id: str, data: ProgressSnapshot) -> SnapshotResult:
    """For an external ingestion runner (project admins): the active run's metrics;
    ``success: false`` when no run is active."""
    async with tenant() as db:
        return await service.snapshot(db, parse_project_id(project_id), data)


@bp.post("/projects/<project_id>/progress/complete")
@responds(*TENANT_ERRORS, ProjectNotFound, NoActiveIngestion, RunByWorker)
@validate_request(CompleteIngestion)
@validate_response(Success)
async def complete_ingestion(project_id: str, data: CompleteIngestion) -> Success:
    """For an external ingestion runner (project admins): finish the active run; the project
    becomes ``active`` with ``totalFiles``, ``optimizedTokens`` and ``ingestionTimeSeconds``."""
    async with tenant() as db:
        await service.complete(db, parse_project_id(project_id), data)
    return Success()
