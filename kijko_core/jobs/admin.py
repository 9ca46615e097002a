"""Operators' view of the jobs (``kijko jobs``): list, retry, cancel. System sessions only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from kijko_core.db.session import SystemSession
from kijko_core.errors import Conflict, NotFound
from kijko_core.jobs import JobStates, ring, store


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"
    default_message = "No job with that id"


class JobNotRetryable(Conflict):
    code = "JOB_NOT_RETRYABLE"
    default_message = "Only a failed or cancelled job can be retried"


class JobAlreadyFinished(Conflict):
    code = "JOB_ALREADY_FINISHED"
    default_message = "The job has already finished"


async def list_jobs(
    db: SystemSession, *, state: str | None = None, kind: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    if state is not None and state not in JobStates:
        raise ValueError(f"state: one of {', '.join(JobStates)}")
    return await store.list_jobs(db, state=state, kind=kind, limit=limit)


async def retry(db: SystemSession, job_id: UUID) -> None:
    """Queue a failed or cancelled job again, with all its attempts; rings after commit."""
    if not await store.retry(db, job_id):
        if await store.get(db, job_id) is None:
            raise JobNotFound()
        raise JobNotRetryable()
    db.after_commit(lambda: ring([job_id]))


async def cancel(db: SystemSession, job_id: UUID) -> None:
    """Cancel a queued or running job (a running one stops at its next heartbeat)."""
    if not await store.cancel(db, job_id):
        if await store.get(db, job_id) is None:
            raise JobNotFound()
        raise JobAlreadyFinished()
