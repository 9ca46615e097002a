"""Wire shapes of ingestion (contract §2.2.5, §3.1 IngestionProgress, IngestionMetrics,
StartIngestionResponse) and the errors of its endpoints (docs/ingestion.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, RootModel, StringConstraints

from kijko_core.errors import Conflict, NotFound, ValidationFailed
from kijko_core.wire import WireInput, WireModel

IngestionPhase = Literal["repository_fetch", "parsing", "chunking", "optimization", "indexing"]
#: The contract's order; ``currentPhaseIndex`` of ``phase_started`` is the index here.
PHASES: tuple[IngestionPhase, ...] = ("repository_fetch", "parsing", "chunking", "optimization", "indexing")
RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
#: Runs still under way (at most one per project: a partial unique index).
ACTIVE: tuple[RunStatus, ...] = ("queued", "running")

Count = Annotated[int, Field(ge=0, le=2**62)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Message = Annotated[str, Field(max_length=2000)]
ErrorCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]


# --- errors --------------------------------------------------------------------------------


class AlreadyProcessing(Conflict):
    code = "ALREADY_PROCESSING"
    default_message = "The project is already being ingested"


class RunByWorker(Conflict):
    code = "INGESTION_RUN_BY_WORKER"
    default_message = (
        "Kijko's worker runs this ingestion; the progress routes take reports only for a run"
        ' started with runner "external"'
    )


class NotIngestible(Conflict):
    """409 ``INVALID_STATUS``: only a draft project is ingested without ``forceReprocess``."""

    code = "INVALID_STATUS"
    default_message = "Only a draft project can be ingested; send forceReprocess to ingest it again"


class NoSources(ValidationFailed):
    code = "NO_SOURCES"
    default_message = "The project has no repositories, uploaded files or text to ingest"


class NoActiveIngestion(NotFound):
    code = "NO_ACTIVE_INGESTION"
    default_message = "The project has no ingestion under way"


# --- wire models ---------------------------------------------------------------------------


class IngestionMetrics(WireModel):
    """All six always present and ≥ 0 (the frontend's runtime validators drop anything else)."""

    files_processed: Count
    total_files: Count
    tokens_processed: Count
    bytes_processed: Count
    chunks_created: Count
    errors_encountered: Count

    @classmethod
    def zero(cls) -> IngestionMetrics:
        return cls(
            files_processed=0,
            total_files=0,
            tokens_processed=0,
            bytes_processed=0,
            chunks_created=0,
            errors_encountered=0,
        )

    @classmethod
    def of_row(cls, row: Any) -> IngestionMetrics:
        return cls(**{name: row[name] for name in cls.model_fields})


class IngestionProgress(WireModel):
    id: UUID
    project_id: UUID
    phase: IngestionPhase
    progress_percent: float
    message: str
    metrics: IngestionMetrics
    started_at: datetime
    estimated_completion_at: datetime | None = None
    #: Set ⇒ finished.
    completed_at: datetime | None = None
    #: Set ⇒ failed.
    error_message: str | None = None
    error_code: str | None = None


class ProgressOrNone(RootModel[IngestionProgress | None]):
    """``GET /projects/{id}/progress``: the progress, or ``null`` when there is none."""


class StartIngestion(WireInput):
    skip_validation: bool = False
    force_reprocess: bool = False
    #: Beyond the contract: ``external`` starts a run that Kijko's worker leaves alone, for an
    #: ingestion runner outside Kijko that reports over the progress routes (project admins).
    runner: Literal["worker", "external"] = "worker"


class StartIngestionResponse(WireModel):
    job_id: UUID
    project_id: UUID
    status: Literal["processing"] = "processing"
    #: The Socket.IO path and, as its query, the project whose room ``ingestion:<id>`` to join.
    ws_namespace_url: str
    estimated_duration_seconds: int


class ProgressUpdate(WireInput):
    """``PUT /projects/{id}/progress`` from an external runner: any field of IngestionProgress
    but ``id`` and ``projectId`` (absent: unchanged). ``completedAt`` is not taken here:
    completion is ``POST …/progress/complete``, which also sets the project's counters."""

    phase: IngestionPhase | None = None
    progress_percent: Percent | None = None
    message: Message | None = None
    metrics: IngestionMetrics | None = None
    estimated_completion_at: datetime | None = None
    #: Set ⇒ the run failed (with ``errorCode``, default ``INGESTION_FAILED``): project → error.
    error_message: Annotated[str, Field(min_length=1, max_length=4000)] | None = None
    error_code: ErrorCode | None = None


class ProgressSnapshot(WireInput):
    metrics: IngestionMetrics


class SnapshotResult(WireModel):
    success: bool
    timestamp: datetime


class CompleteIngestion(WireInput):
    metrics: IngestionMetrics
    total_duration_seconds: Annotated[float, Field(ge=0, le=10**9, allow_inf_nan=False)]
