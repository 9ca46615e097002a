"""The rules of ingestion's endpoints (contract §2.2.5, docs/ingestion.md).

- ``start``: project → ``processing``, a run row (the progress record) and the
  ``ingestion.run`` job, in the caller's one transaction.
- ``current_progress``: the project's latest run that was not cancelled, or None.
- ``cancel``: the run → ``cancelled`` and the project back to its status before the run, in
  the caller's transaction; then the job is cancelled (compare-and-set, system role). The
  worker notices at its next progress write (≤ 2 s) and removes the run's partial chunks.
- ``update_progress`` / ``snapshot`` / ``complete``: the internal routes an external runner
  (a project admin) calls; Kijko's own worker writes through ``kijko_core`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from databases import Database

from kijko_core import events, jobs, mail
from kijko_core.billing import quotas
from kijko_core.billing.plans import plans_of
from kijko_core.config import Settings
from kijko_core.db.session import Session, TenantSession, system_session
from kijko_core.errors import ValidationFailed
from kijko_core.ingestion import reporter, repository
from kijko_core.ingestion.chunkers import NoCustomChunker, custom_chunker_installed
from kijko_core.ingestion.models import (
    AlreadyProcessing,
    CompleteIngestion,
    IngestionProgress,
    NoActiveIngestion,
    NoSources,
    NotIngestible,
    ProgressSnapshot,
    ProgressUpdate,
    RunByWorker,
    SnapshotResult,
    StartIngestion,
    StartIngestionResponse,
)
from kijko_core.ingestion.repository import RunRecord
from kijko_core.jobs import store as job_store
from kijko_core.logging import get_logger
from kijko_core.permissions import Action
from kijko_core.projects.access import project_for
from kijko_core.projects.models import Project, ProjectNotFound

log = get_logger("kijko.ingestion")

#: The job kind of Kijko's worker (kijko_core/ingestion/job.py).
JOB_KIND = "ingestion.run"
#: The Socket.IO path clients connect to; ``projectId`` names the room ``ingestion:<id>``.
SOCKET_PATH = "/api/v1/socket.io"
#: ``errorCode`` of a run an external runner failed without naming a code.
DEFAULT_ERROR_CODE = "INGESTION_FAILED"

# The estimate (estimatedDurationSeconds): a fixed start, a clone per repository, then files
# at a rate and bytes at a rate. A repository never ingested counts as ASSUMED_FILES files.
START_SECONDS = 5.0
CLONE_SECONDS = 10.0
FILES_PER_SECOND = 200.0
ASSUMED_FILES = 500
BYTES_PER_SECOND = 5 * 1024 * 1024
BYTES_PER_FILE = 8 * 1024  # a repository file's size, on average, for the byte part


def estimate_seconds(sources: dict[str, int]) -> int:
    """``estimatedDurationSeconds`` from what is known before the run (docs/ingestion.md)."""
    files = sources["known_files"] + sources["unknown_repositories"] * ASSUMED_FILES + sources["uploads"]
    repository_bytes = (sources["known_files"] + sources["unknown_repositories"] * ASSUMED_FILES) * BYTES_PER_FILE
    seconds = (
        START_SECONDS
        + sources["repositories"] * CLONE_SECONDS
        + files / FILES_PER_SECOND
        + (repository_bytes + sources["upload_bytes"] + sources["manual_bytes"]) / BYTES_PER_SECOND
    )
    return max(1, math.ceil(seconds))


def ws_namespace_url(project_id: UUID) -> str:
    return f"{SOCKET_PATH}?projectId={project_id}"


async def start(
    db: TenantSession, settings: Settings, project_id: UUID, data: StartIngestion
) -> StartIngestionResponse:
    """POST /projects/{id}/ingest. ``skipValidation`` changes nothing: the sources are checked
    by the run itself (an unreachable repository fails it with ``REPOSITORY_UNREACHABLE``).
    With ``runner: "external"`` no job is queued: the run waits for an external runner's
    reports, so starting one takes the right to report (project admins)."""
    external = data.runner == "external"
    action = Action.REPORT_PROGRESS if external else Action.INGEST
    project = await project_for(db, project_id, action, lock=True)
    org_id = project.organization_id
    if project.status == "processing" or await repository.active(db, org_id, project.id) is not None:
        raise AlreadyProcessing()
    if project.status != "draft" and not data.force_reprocess:
        raise NotIngestible()
    sources = await repository.sources(db, org_id, project.id)
    if not (sources["repositories"] or sources["uploads"] or sources["manual_bytes"]):
        raise NoSources()
    if project.chunking_strategy == "custom" and not custom_chunker_installed(settings.ingestion_custom_chunker):
        raise NoCustomChunker()
    # An ingestion of the plan's quota (decision 0151), counted with the run it starts: 429
    # QUOTA_EXCEEDED (Retry-After) over it. Storage is checked when the run would become the index.
    await quotas.consume(db, plans_of(settings), org_id, "ingestions")
    seconds = estimate_seconds(sources)
    run_id = uuid4()
    job_id = (
        None if external else await jobs.enqueue(db, JOB_KIND, {"run_id": str(run_id), "project_id": str(project.id)})
    )
    try:
        async with db.savepoint():
            await repository.insert(
                db,
                run_id=run_id,
                org_id=org_id,
                project_id=project.id,
                job_id=job_id,
                requested_by=db.principal.user_id,
                previous_status=project.status,
                message="Waiting for the external runner" if external else "Waiting for a worker",
                estimated_seconds=seconds,
            )
    except asyncpg.UniqueViolationError:
        raise AlreadyProcessing() from None  # a run another request started meanwhile
    await repository.set_project_status(db, org_id, project.id, "processing")
    log.info("ingestion_started", project_id=str(project.id), run_id=str(run_id), job_id=str(job_id))
    return StartIngestionResponse(
        job_id=job_id or run_id,  # an external run has no job: its id stands in
        project_id=project.id,
        ws_namespace_url=ws_namespace_url(project.id),
        estimated_duration_seconds=seconds,
    )


async def current_progress(db: TenantSession, project_id: UUID) -> IngestionProgress | None:
    """The progress a (reconnecting) client reads: the latest run that was not cancelled —
    running, completed or failed — or None when the project never ran (or only cancelled)."""
    project = await project_for(db, project_id, Action.READ)
    run = await repository.latest(db, project.organization_id, project.id)
    return run.wire() if run is not None else None


async def cancel(db: TenantSession, project_id: UUID) -> tuple[UUID, UUID | None]:
    """POST /projects/{id}/cancel-ingestion. Returns the run's id and job id: the caller
    cancels the job after this transaction commits (:func:`cancel_job`)."""
    project = await project_for(db, project_id, Action.INGEST, lock=True)
    org_id = project.organization_id
    run = await repository.active(db, org_id, project.id)
    if run is None:
        raise NoActiveIngestion()
    await repository.cancel(db, org_id, run.id)
    await repository.set_project_status(db, org_id, project.id, run.previous_status)
    log.info("ingestion_cancelled", project_id=str(project.id), run_id=str(run.id))
    return run.id, run.job_id


# The job is this run's: the worker's job of this kind whose payload names the run. (A run's
# job_id is written by the app role; a statement injected into a tenant session could point
# its own project's run at another project's job, and cancelling the run would cancel that.)
_RUNS_JOB = (
    "SELECT 1 FROM kijko.jobs WHERE id = $1 AND organization_id = $2 AND kind = $3 AND payload->>'run_id' = $4::text"
)


async def cancel_job(system_db: Database, org_id: UUID, run_id: UUID, job_id: UUID | None) -> None:
    """Cancel the run's job (compare-and-set: only a queued or running one). The app role may
    not change jobs (migration 0013); this is the one named system-role step of a cancel, on
    a job id read under the caller's row-level security (decision 0076) and checked to be the
    run's own. Best effort: the run row is already cancelled, which is what the worker obeys."""
    if job_id is None:
        return
    try:
        async with system_session(system_db) as db:
            if await db.fetchval(_RUNS_JOB, job_id, org_id, JOB_KIND, str(run_id)) is None:
                log.warning("ingestion_job_not_the_runs", run_id=str(run_id), job_id=str(job_id))
                return
            await job_store.cancel(db, job_id)
    except Exception:
        log.exception("ingestion_job_cancel_failed", job_id=str(job_id))


# --- the internal routes (external runners) --------------------------------------------------


async def _reported_run(db: TenantSession, project_id: UUID) -> tuple[Project, RunRecord | None]:
    """The project and its active run, which must be an external runner's: Kijko's worker
    owns its own runs, and a report on one would end it behind the worker's back."""
    project = await project_for(db, project_id, Action.REPORT_PROGRESS, lock=True)
    run = await repository.active(db, project.organization_id, project.id)
    if run is not None and run.job_id is not None:
        raise RunByWorker()
    return project, run


async def _active_for_report(db: TenantSession, project_id: UUID) -> tuple[Project, RunRecord]:
    project, run = await _reported_run(db, project_id)
    if run is None:
        raise NoActiveIngestion()
    return project, run


async def update_progress(db: TenantSession, project_id: UUID, data: ProgressUpdate) -> IngestionProgress:
    """PUT /projects/{id}/progress. An ``errorMessage`` fails the run (project → ``error``)."""
    project, run = await _active_for_report(db, project_id)
    org_id = project.organization_id
    estimate = data.estimated_completion_at
    if estimate is not None and (estimate if estimate.tzinfo else estimate.replace(tzinfo=UTC)) < run.started_at:
        # The run's row refuses it (a check constraint): a 422 for the runner, not a 500.
        raise ValidationFailed(
            "estimatedCompletionAt: must not be before the run's startedAt", field="estimatedCompletionAt"
        )
    if data.error_message is not None:
        failed = await repository.fail(db, org_id, run.id, data.error_code or DEFAULT_ERROR_CODE, data.error_message)
        assert failed is not None  # locked by _active_for_report
        await repository.set_project_status(db, org_id, project.id, "error")
        await announce_failure(db, org_id, project.id, failed, recoverable=True)
        return failed.wire()
    phase_changed = data.phase is not None and data.phase != run.phase
    written = await repository.write_progress(
        db,
        org_id,
        run.id,
        phase=data.phase,
        percent=0.0 if phase_changed and data.progress_percent is None else data.progress_percent,
        message=data.message,
        metrics=data.metrics,
        estimated_completion_at=data.estimated_completion_at,
        running=True,
    )
    assert written is not None
    project_room = reporter.room(project.id)
    if phase_changed:
        payload = reporter.phase_started_payload(project.id, written.phase, written.message)  # type: ignore[arg-type]
        events.publish(db, room=project_room, event="phase_started", data=payload)
    progress = reporter.progress_payload(
        project.id, written.phase, written.progress_percent, written.message, written.metrics
    )
    throttle = reporter.throttle(project.id)

    async def announce() -> None:
        if phase_changed:
            throttle.new_phase()
        await throttle.offer(progress)

    db.after_commit(announce)
    return written.wire()


async def snapshot(db: TenantSession, project_id: UUID, data: ProgressSnapshot) -> SnapshotResult:
    """POST /projects/{id}/progress/snapshot: the metrics, if a run is active."""
    project, run = await _reported_run(db, project_id)
    if run is None:
        return SnapshotResult(success=False, timestamp=datetime.now(UTC))
    await repository.write_progress(db, project.organization_id, run.id, metrics=data.metrics, running=True)
    return SnapshotResult(success=True, timestamp=datetime.now(UTC))


async def complete(db: TenantSession, project_id: UUID, data: CompleteIngestion) -> None:
    """POST /projects/{id}/progress/complete: progress 100 + completedAt, the project active
    with the contract's counters (``optimizedTokens = metrics.tokensProcessed``)."""
    project, run = await _active_for_report(db, project_id)
    org_id = project.organization_id
    done = await repository.complete(db, org_id, run.id, data.metrics, "Ingestion complete", None)
    assert done is not None
    await repository.project_completed(
        db,
        org_id,
        project.id,
        total_files=data.metrics.total_files,
        original_tokens=None,
        optimized_tokens=data.metrics.tokens_processed,
        seconds=data.total_duration_seconds,
    )
    await announce_completion(db, org_id, project.id, done, data.total_duration_seconds)


async def announce_completion(db: Session, org_id: UUID, project_id: UUID, run: RunRecord, seconds: float) -> None:
    """In the completing transaction: ``ingestion_complete`` (after the commit, the pending
    progress flushed first) and the mails of the members who asked for them."""
    project = await _project_row(db, org_id, project_id)
    payload = reporter.complete_payload(
        project_id, seconds, run.metrics, project.model_dump(mode="json", by_alias=True)
    )
    db.after_commit(_flush(project_id))
    events.publish(db, room=reporter.room(project_id), event="ingestion_complete", data=payload)
    values = {
        "project_name": project.name,
        "files": f"{run.total_files:,}",
        "chunks": f"{run.chunks_created:,}",
        "tokens": f"{run.tokens_processed:,}",
        "errors": f"{run.errors_encountered:,}",
        "seconds": f"{seconds:.1f}",
    }
    await _mail(db, org_id, project_id, "ingestion_complete", values, success=True)


async def announce_failure(
    db: Session, org_id: UUID, project_id: UUID, run: RunRecord, *, recoverable: bool, retry_count: int = 0
) -> None:
    """In the failing transaction: ``error`` (after the commit, pending progress first) and
    the mails of the members who asked for them."""
    payload = reporter.error_payload(
        project_id,
        run.phase,
        run.error_code or DEFAULT_ERROR_CODE,
        run.error_message or "",
        recoverable=recoverable,
        retry_count=retry_count,
    )
    db.after_commit(_flush(project_id))
    events.publish(db, room=reporter.room(project_id), event="error", data=payload)
    project = await _project_row(db, org_id, project_id)
    values = {
        "project_name": project.name,
        "error_code": run.error_code or DEFAULT_ERROR_CODE,
        "error_message": run.error_message or "",
        "phase": run.phase.replace("_", " "),
    }
    await _mail(db, org_id, project_id, "ingestion_failed", values, success=False)


def _flush(project_id: UUID) -> Callable[[], Awaitable[None]]:
    async def flush() -> None:
        await reporter.finish_throttle(project_id)

    return flush


async def _project_row(db: Session, org_id: UUID, project_id: UUID) -> Project:
    """The project as the API shows it (any session of its organization)."""
    project = await repository.project(db, org_id, project_id)
    if project is None:
        raise ProjectNotFound()
    return project


async def _mail(
    db: Session, org_id: UUID, project_id: UUID, template: str, values: dict[str, Any], *, success: bool
) -> None:
    for email, name in await repository.recipients(db, org_id, project_id, success=success):
        try:
            await mail.send(db, to=email, template=template, values={**values, "name": name or email}, org_id=org_id)
        except mail.InvalidRecipient:
            log.warning("ingestion_mail_skipped", project_id=str(project_id), reason="invalid address")
