"""An execution's lifecycle (docs/executions.md): start, cancel, retry, replay, and the finish
listeners other parts hang on the transaction that ends an execution.

States: ``pending`` → ``running`` → ``completed`` | ``failed`` | ``cancelled`` (and
``pending`` → ``cancelled`` | ``failed``). Every change is one ``UPDATE … WHERE status IN (…)
RETURNING``: whoever changes the row first wins, the other finds nothing to change — a cancel
racing a completion never produces an impossible state (the table's checks refuse the rest).

- :func:`start` records the ``pending`` row with its snapshot and input, counts the run on the
  skill and enqueues the ``execution.run`` job (kijko_core/executions/job.py), in the caller's
  transaction; ``execution:updated`` goes to the runner's user room after the commit.
- :func:`cancel`: a pending or running execution ends ``cancelled`` at once, in the caller's
  transaction; the caller then cancels its job (:func:`cancel_job`), whose worker stops the run
  (the provider call is aborted) and adds the tokens it knows of.
- :func:`retry` / :func:`replay`: a new execution — retry with the skill's *current*
  configuration, replay with the stored snapshot (decision 0108).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
from databases import Database

from kijko_core import events, jobs
from kijko_core.db.session import ServiceSession, Session, TenantSession, system_session
from kijko_core.executions import spend
from kijko_core.executions.errors import CannotCancel, CannotRetry, ExecutionNotFound
from kijko_core.jobs import store as job_store
from kijko_core.logging import get_logger
from kijko_core.prices import cents

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

log = get_logger("kijko.executions")

#: The job kind that runs an execution (kijko_core/executions/job.py).
JOB_KIND = "execution.run"
#: The event every status change publishes to the runner's room ``user:<id>``.
EVENT = "execution:updated"
EXECUTION_TYPES = ("manual", "habit", "reflex", "api")
#: Types started by a person through the API: a refusal (spend cap) is their answer; the others
#: (habits, reflexes) are recorded ``failed`` instead, where their owners see them.
API_TYPES = ("manual", "api")
ACTIVE = ("pending", "running")
FINISHED = ("completed", "failed", "cancelled")
CANCELLED_BY_USER = "Cancelled by user"


@dataclass(frozen=True, slots=True)
class FinishedExecution:
    """An execution as it ended, handed to the finish listeners."""

    id: UUID
    organization_id: UUID
    skill_id: UUID | None
    user_id: UUID | None
    execution_type: str
    reference_id: UUID | None
    status: str  # completed | failed | cancelled
    error_code: str | None
    error_message: str | None
    output: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: Decimal | None
    currency: str | None


#: Called inside the transaction that ends an execution: a :class:`ServiceSession` of the
#: execution's organization when the worker ends it, the caller's :class:`TenantSession` when a
#: user cancels it. Use only what both offer (``execute``/``fetch``/``after_commit``); raising
#: rolls the ending back (the worker then retries it), so a listener must not fail lightly.
FinishListener = Callable[[Session, FinishedExecution], Awaitable[None]]
_LISTENERS: list[FinishListener] = []


def add_finish_listener(fn: FinishListener) -> None:
    """Call ``fn`` for every execution that ends (at import time of the listening module)."""
    if fn not in _LISTENERS:
        _LISTENERS.append(fn)


def remove_finish_listener(fn: FinishListener) -> None:
    if fn in _LISTENERS:
        _LISTENERS.remove(fn)


# --- rows --------------------------------------------------------------------------------------

COLUMNS = (
    "id, organization_id, skill_id, user_id, execution_type, reference_id, scheduled_for,"
    " source_execution_id, input, snapshot, status, output, prompt_tokens, completion_tokens,"
    " duration_ms, cost, currency, key_source, error_message, error_code, job_id, executed_at,"
    " started_at, completed_at, updated_at"
)

_INSERT = f"""
INSERT INTO kijko.skill_executions
    (organization_id, skill_id, user_id, execution_type, reference_id, scheduled_for,
     source_execution_id, input, snapshot)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (organization_id, reference_id, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING
RETURNING {COLUMNS}
"""  # noqa: S608 — constants

# An execution refused before it ran (the spend cap, for habits and reflexes): recorded failed.
_INSERT_FAILED = f"""
INSERT INTO kijko.skill_executions
    (organization_id, skill_id, user_id, execution_type, reference_id, scheduled_for,
     source_execution_id, input, snapshot, status, error_code, error_message, completed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'failed', $10, $11, now())
ON CONFLICT (organization_id, reference_id, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING
RETURNING {COLUMNS}
"""  # noqa: S608 — constants

_SET_JOB = "UPDATE kijko.skill_executions SET job_id = $3 WHERE organization_id = $1 AND id = $2"

_COUNT_RUN = (
    "UPDATE kijko.skills SET execution_count = execution_count + 1, last_executed_at = now()"
    " WHERE organization_id = $1 AND id = $2"
)

_GET = f"SELECT {COLUMNS} FROM kijko.skill_executions WHERE organization_id = $1 AND id = $2"  # noqa: S608
_GET_FOR_UPDATE = _GET + " FOR UPDATE"

# The ending of a pending or running execution by a user: cancelled at once.
_CANCEL = f"""
UPDATE kijko.skill_executions
SET status = 'cancelled', error_message = $3, completed_at = now(), updated_at = now(),
    duration_ms = CASE WHEN started_at IS NULL THEN duration_ms
                       ELSE (extract(epoch FROM now() - started_at) * 1000)::bigint END
WHERE organization_id = $1 AND id = $2 AND status IN ('pending', 'running')
RETURNING {COLUMNS}
"""  # noqa: S608 — constants


def org_of(db: TenantSession | ServiceSession) -> UUID:
    return db.principal.org_id if isinstance(db, TenantSession) else db.org_id


def finished_from_row(row: Mapping[str, Any]) -> FinishedExecution:
    return FinishedExecution(
        id=row["id"],
        organization_id=row["organization_id"],
        skill_id=row["skill_id"],
        user_id=row["user_id"],
        execution_type=row["execution_type"],
        reference_id=row["reference_id"],
        status=row["status"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        output=row["output"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost=row["cost"],
        currency=row["currency"],
    )


def event_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """``execution:updated``: the execution's state in the contract's names (a hint: clients
    read ``GET /executions/:id`` for the whole record)."""
    prompt, completion = row["prompt_tokens"], row["completion_tokens"]
    tokens = None if prompt is None and completion is None else (prompt or 0) + (completion or 0)
    completed_at: datetime | None = row["completed_at"]
    return {
        "executionId": str(row["id"]),
        "skillId": str(row["skill_id"]) if row["skill_id"] else None,
        "executionType": row["execution_type"],
        "referenceId": str(row["reference_id"]) if row["reference_id"] else None,
        "status": row["status"],
        "tokensUsed": tokens,
        "durationMs": row["duration_ms"],
        "costCents": cents(row["cost"]) if row["cost"] is not None else None,
        "errorCode": row["error_code"],
        "errorMessage": row["error_message"],
        "completedAt": completed_at.isoformat() if completed_at else None,
    }


def announce(db: Session, row: Mapping[str, Any]) -> None:
    """``execution:updated`` to the runner's room, after ``db`` commits."""
    if row["user_id"] is not None:
        events.publish(db, room=f"user:{row['user_id']}", event=EVENT, data=event_payload(row))


async def finished(db: Session, row: Mapping[str, Any]) -> None:
    """In the transaction that ended the execution ``row``: the listeners, then the event."""
    done = finished_from_row(row)
    for listener in list(_LISTENERS):
        await listener(db, done)
    announce(db, row)


# --- start -------------------------------------------------------------------------------------


async def start(
    db: TenantSession | ServiceSession,
    *,
    snapshot: dict[str, Any],
    input: dict[str, Any],  # noqa: A002 — the contract's name
    execution_type: str,
    user_id: UUID | None,
    skill_id: UUID | None,
    reference_id: UUID | None = None,
    scheduled_for: datetime | None = None,
    source_execution_id: UUID | None = None,
    kijko: Kijko | None = None,
) -> UUID | None:
    """Record a ``pending`` execution and enqueue its run, in ``db``'s transaction; returns its
    id, or None when ``(reference_id, scheduled_for)`` already fired (a habit's idempotency key).

    The spend cap (decision 0109): with ``kijko`` given, an execution that would start over the
    organization's cap raises :class:`~kijko_core.executions.spend.SpendCapReached` (429) for
    ``manual``/``api`` runs, and is recorded ``failed`` with ``SPEND_CAP_REACHED`` for habit and
    reflex runs (returned like any other). Without ``kijko`` the worker's admission checks it
    (the same outcome: ``failed``, ``SPEND_CAP_REACHED``).
    """
    if execution_type not in EXECUTION_TYPES:
        raise ValueError(f"execution_type: one of {EXECUTION_TYPES}")
    org_id = org_of(db)
    args = (
        org_id,
        skill_id,
        user_id,
        execution_type,
        reference_id,
        scheduled_for,
        source_execution_id,
        dict(input),
        dict(snapshot),
    )
    if kijko is not None:
        refusal = await spend.refusal(db, kijko, org_id, snapshot)
        if refusal is not None:
            if execution_type in API_TYPES:
                raise refusal
            row = await db.fetchrow(_INSERT_FAILED, *args, refusal.code, refusal.message)
            if row is None:
                return None
            if skill_id is not None:
                await db.execute(_COUNT_RUN, org_id, skill_id)
            await finished(db, row)
            return UUID(str(row["id"]))
    row = await db.fetchrow(_INSERT, *args)
    if row is None:
        return None
    execution_id = UUID(str(row["id"]))
    if skill_id is not None:
        await db.execute(_COUNT_RUN, org_id, skill_id)
    job_id = await jobs.enqueue(db, JOB_KIND, {"execution_id": str(execution_id)}, org_id=org_id)
    await db.execute(_SET_JOB, org_id, execution_id, job_id)
    announce(db, row)
    log.info("execution_started", execution_id=str(execution_id), execution_type=execution_type)
    return execution_id


# --- reading -----------------------------------------------------------------------------------


async def get_row(db: Session, org_id: UUID, execution_id: UUID, *, for_update: bool = False) -> dict[str, Any]:
    """The execution's row (visible under ``db``'s row-level security); ExecutionNotFound."""
    row = await db.fetchrow(_GET_FOR_UPDATE if for_update else _GET, org_id, execution_id)
    if row is None:
        raise ExecutionNotFound()
    return dict(row)


# --- cancel, retry, replay ---------------------------------------------------------------------


async def cancel(db: TenantSession | ServiceSession, execution_id: UUID) -> UUID | None:
    """End a pending or running execution ``cancelled`` ("Cancelled by user", completedAt) in
    ``db``'s transaction; CANNOT_CANCEL otherwise. Returns its job id: after the commit the
    caller cancels the job (:func:`cancel_job`), so a running provider call is aborted."""
    org_id = org_of(db)
    current = await get_row(db, org_id, execution_id)
    row = await db.fetchrow(_CANCEL, org_id, execution_id, CANCELLED_BY_USER)
    if row is None:
        raise CannotCancel()
    await finished(db, row)
    log.info("execution_cancelled", execution_id=str(execution_id), was=current["status"])
    job_id: UUID | None = row["job_id"]
    return job_id


# The job is this execution's: the worker's job of this kind whose payload names it (the row's
# job_id is the app role's to write; see ingestion's cancel_job, decision 0076).
_EXECUTIONS_JOB = (
    "SELECT 1 FROM kijko.jobs WHERE id = $1 AND organization_id = $2 AND kind = $3"
    " AND payload->>'execution_id' = $4::text"
)


async def cancel_job(system_db: Database, org_id: UUID, execution_id: UUID, job_id: UUID | None) -> None:
    """Cancel the execution's job (compare-and-set: a queued or running one): the running
    worker's next heartbeat cancels the handler's task, which aborts the provider call. Best
    effort: the execution row is already cancelled, which is what the worker obeys."""
    if job_id is None:
        return
    try:
        async with system_session(system_db) as db:
            if await db.fetchval(_EXECUTIONS_JOB, job_id, org_id, JOB_KIND, str(execution_id)) is None:
                log.warning("execution_job_not_its_own", execution_id=str(execution_id), job_id=str(job_id))
                return
            await job_store.cancel(db, job_id)
    except (TimeoutError, asyncpg.PostgresError, OSError):
        log.exception("execution_job_cancel_failed", job_id=str(job_id))


async def retry(
    db: TenantSession | ServiceSession,
    execution_id: UUID,
    *,
    snapshot_of: Callable[[UUID], Awaitable[dict[str, Any]]],
    user_id: UUID | None,
    kijko: Kijko | None = None,
) -> tuple[UUID, str]:
    """A failed or cancelled execution started again (CANNOT_RETRY otherwise): same skill,
    type, reference and input, with the skill's *current* configuration (``snapshot_of(skill
    id)``, which raises SKILL_NOT_FOUND for a deleted skill: replay runs a stored snapshot)."""
    org_id = org_of(db)
    row = await get_row(db, org_id, execution_id)
    if row["status"] not in ("failed", "cancelled"):
        raise CannotRetry()
    if row["skill_id"] is None:
        raise CannotRetry("The skill of this execution was deleted; replay it to run its stored configuration")
    snapshot = await snapshot_of(row["skill_id"])
    new_id = await start(
        db,
        snapshot=snapshot,
        input=dict(row["input"]),
        execution_type=row["execution_type"],
        user_id=user_id,
        skill_id=row["skill_id"],
        reference_id=row["reference_id"],
        source_execution_id=execution_id,
        kijko=kijko,
    )
    assert new_id is not None  # no scheduled_for: no idempotency key to collide with
    return new_id, await _status(db, org_id, new_id)


async def replay(
    db: TenantSession | ServiceSession,
    execution_id: UUID,
    *,
    user_id: UUID | None,
    kijko: Kijko | None = None,
) -> tuple[UUID, str]:
    """Run an execution's stored snapshot again (any finished execution), even if its skill
    changed or was deleted since: a new execution with the same input and snapshot."""
    org_id = org_of(db)
    row = await get_row(db, org_id, execution_id)
    if row["status"] not in FINISHED:
        raise CannotRetry("Only a finished execution can be replayed", code="CANNOT_REPLAY")
    new_id = await start(
        db,
        snapshot=dict(row["snapshot"]),
        input=dict(row["input"]),
        execution_type=row["execution_type"] if row["execution_type"] in API_TYPES else "manual",
        user_id=user_id,
        skill_id=row["skill_id"],
        reference_id=None,
        source_execution_id=execution_id,
        kijko=kijko,
    )
    assert new_id is not None
    return new_id, await _status(db, org_id, new_id)


async def _status(db: Session, org_id: UUID, execution_id: UUID) -> str:
    status: str = await db.fetchval(
        "SELECT status FROM kijko.skill_executions WHERE organization_id = $1 AND id = $2", org_id, execution_id
    )
    return status
