"""An execution's lifecycle (docs/executions.md): start, cancel, retry, replay, and the finish
listeners other parts hang on the transaction that ends an execution.

States: ``pending`` → ``running`` → ``completed`` | ``failed`` | ``cancelled`` (and
``pending`` → ``cancelled`` | ``failed``). Every change is one ``UPDATE … WHERE status IN (…)
RETURNING``: whoever changes the row first wins, the other finds nothing to change — a cancel
racing a completion never produces an impossible state (the table's checks refuse the rest).

- :func:`start` records the ``pending`` row with its snapshot and input (the database counts
  the run on the skill, decision 0136) and enqueues the ``execution.run`` job
  (kijko_core/executions/job.py), in the caller's transaction; ``execution:updated`` goes to
  the runner's user room after the commit.
  :func:`start_many` does the same for many runs with one statement per table (the habit
  scheduler); ``start`` is ``start_many`` of one.
- :func:`cancel`: a pending or running execution ends ``cancelled`` at once, in the caller's
  transaction; the caller then cancels its job (:func:`cancel_job`), whose worker stops the run
  (the provider call is aborted) and adds the tokens it knows of.
- :func:`retry` / :func:`replay`: a new execution — retry with the skill's *current*
  configuration, replay with the stored snapshot (decision 0108).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
from databases import Database

from kijko_core import events, jobs
from kijko_core.billing import quotas
from kijko_core.billing.plans import Plans
from kijko_core.db.session import ServiceSession, Session, TenantSession, system_session
from kijko_core.db.sql import Fragment
from kijko_core.errors import KijkoError
from kijko_core.executions import spend
from kijko_core.executions.errors import CannotCancel, CannotRetry, ExecutionNotFound
from kijko_core.executions.spend import SpendCapReached
from kijko_core.jobs import store as job_store
from kijko_core.logging import get_logger
from kijko_core.permissions import Action, Policy, authorize
from kijko_core.prices import cents

if TYPE_CHECKING:
    from kijko_core.config import Settings
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

#: Executions belong to the organization: every member reads them; running one is a create
#: (viewers may not); cancelling, retrying and replaying one is an edit — members their own,
#: owners and admins any (ARCHITECTURE §3).
EXECUTIONS = Policy(
    name="executions",
    not_found=ExecutionNotFound,
    readable=lambda principal, execution: execution.organization_id == principal.org_id,
    readable_sql=Fragment("organization_id = $1"),
)


@dataclass(frozen=True, slots=True)
class _Owned:
    organization_id: UUID
    user_id: UUID | None


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
    #: The settings of the process that ended it, when it knows them (the worker, a start that
    #: records a refused run); None when a user cancels. Listeners with limits need them.
    settings: Settings | None = None


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

#: What a start reads back: the event's and the finish listeners' fields, not the input and
#: snapshot it has just written (decoding them again is most of a tick's client time).
STARTED_COLUMNS = ", ".join(c for c in COLUMNS.replace(" ", "").split(",") if c not in ("input", "snapshot"))
#: Execution ids named in the log line of one start (the rest are counted).
LOGGED_IDS = 20

# Any number of executions in one statement (decision 0077's INSERT … SELECT FROM unnest). Ids
# (the execution's and its job's) are chosen by the caller, so the rows that come back are
# matched to the runs by id; a run that is already fired for its (habit, instant) — by an
# earlier statement or an earlier row of this one — is not inserted and does not come back.
# Distinct snapshots travel once ($11) and are read as JSON once; runs point at theirs ($10).
# A run with an error code is recorded failed at once (refused before it ran: the spend cap).
_INSERT = f"""
WITH snapshots AS (
    SELECT n, s::jsonb AS snapshot FROM unnest($11::text[]) WITH ORDINALITY AS t (s, n)
)
INSERT INTO kijko.skill_executions
    (id, organization_id, skill_id, user_id, execution_type, reference_id, scheduled_for,
     source_execution_id, input, snapshot, job_id, status, error_code, error_message, completed_at)
SELECT r.id, $1, r.skill_id, r.user_id, r.execution_type, r.reference_id, r.scheduled_for,
       r.source_execution_id, r.input::jsonb, s.snapshot, r.job_id,
       CASE WHEN r.error_code IS NULL THEN 'pending' ELSE 'failed' END, r.error_code, r.error_message,
       CASE WHEN r.error_code IS NULL THEN NULL ELSE now() END
FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::uuid[], $7::timestamptz[], $8::uuid[],
            $9::text[], $10::bigint[], $12::uuid[], $13::text[], $14::text[])
     WITH ORDINALITY AS r (id, skill_id, user_id, execution_type, reference_id, scheduled_for,
                           source_execution_id, input, snapshot_n, job_id, error_code, error_message, n)
JOIN snapshots s ON s.n = r.snapshot_n
ORDER BY r.n  -- the first of two runs for one (habit, instant) is the one kept
ON CONFLICT (organization_id, reference_id, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING
RETURNING {STARTED_COLUMNS}
"""  # noqa: S608 — constants

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


def finished_from_row(row: Mapping[str, Any], settings: Settings | None = None) -> FinishedExecution:
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
        settings=settings,
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


async def finished(db: Session, row: Mapping[str, Any], settings: Settings | None = None) -> None:
    """In the transaction that ended the execution ``row``: the listeners (given ``settings``
    when the caller has them), then the event."""
    done = finished_from_row(row, settings)
    for listener in list(_LISTENERS):
        await listener(db, done)
    announce(db, row)


# --- start -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One execution to start (:func:`start_many`); the fields are :func:`start`'s."""

    snapshot: Mapping[str, Any]
    input: Mapping[str, Any]
    execution_type: str
    user_id: UUID | None
    skill_id: UUID | None
    reference_id: UUID | None = None
    scheduled_for: datetime | None = None
    source_execution_id: UUID | None = None


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
    plans: Plans | None = None,
) -> UUID | None:
    """Record a ``pending`` execution and enqueue its run, in ``db``'s transaction; returns its
    id, or None when ``(reference_id, scheduled_for)`` already fired (a habit's idempotency key).

    The spend cap (decision 0109): with ``kijko`` given, an execution that would start over the
    organization's cap raises :class:`~kijko_core.executions.spend.SpendCapReached` (429) for
    ``manual``/``api`` runs, and is recorded ``failed`` with ``SPEND_CAP_REACHED`` for habit and
    reflex runs (returned like any other). Without ``kijko`` the worker's admission checks it
    (the same outcome: ``failed``, ``SPEND_CAP_REACHED``).
    """
    run = Run(snapshot, input, execution_type, user_id, skill_id, reference_id, scheduled_for, source_execution_id)
    [execution_id] = await start_many(db, [run], kijko=kijko, plans=plans)
    return execution_id


async def _count_api_calls(
    db: TenantSession | ServiceSession,
    plans: Plans | None,
    org_id: UUID,
    runs: Sequence[Run],
    refused: list[KijkoError | None],
) -> list[int]:
    """Count the runs not refused already against the plan's ``api_calls`` (decision 0151), in
    ``db``'s transaction: ``manual``/``api`` runs all or none (429 ``QUOTA_EXCEEDED``, nothing
    written); habit and reflex runs as many as fit, the rest recorded ``failed`` with
    ``QUOTA_EXCEEDED`` (``refused`` is updated). Returns the indexes of the runs counted."""
    if plans is None:
        raise ValueError("start_many counts api_calls: pass kijko or plans")
    admitted = [i for i, refusal in enumerate(refused) if refusal is None]
    asked = [i for i in admitted if runs[i].execution_type in API_TYPES]
    scheduled = [i for i in admitted if runs[i].execution_type not in API_TYPES]
    if asked:
        await quotas.consume(db, plans, org_id, "api_calls", len(asked))
    granted = await quotas.consume_up_to(db, plans, org_id, "api_calls", len(scheduled))
    if granted < len(scheduled):
        over = await quotas.counter_exceeded(db, plans, org_id, "api_calls")
        for i in scheduled[granted:]:
            refused[i] = over
    return asked + scheduled[:granted]


async def start_many(
    db: TenantSession | ServiceSession,
    runs: Sequence[Run],
    *,
    kijko: Kijko | None = None,
    plans: Plans | None = None,
) -> list[UUID | None]:
    """:func:`start` for many runs of ``db``'s organization at once, in ``db``'s transaction:
    the executions in one statement (which also counts the runs on their skills, in the
    database), the jobs in one (the doorbell rings once, after the commit);
    ``execution:updated`` per execution after the commit. Returns, per run in order, its
    execution id or None when its ``(reference_id, scheduled_for)`` already fired — before, or
    by an earlier run of ``runs``.

    The spend cap as in :func:`start`: a refused ``manual``/``api`` run raises before anything
    is written; refused habit and reflex runs are recorded ``failed`` (their finish listeners
    run here, in ``db``'s transaction). The plan's ``api_calls`` quota the same way
    (``QUOTA_EXCEEDED``), counted in ``db``'s transaction: ``plans`` (or ``kijko``'s) is
    required — every start is counted, with or without the spend cap check.
    """
    for run in runs:
        if run.execution_type not in EXECUTION_TYPES:
            raise ValueError(f"execution_type: one of {EXECUTION_TYPES}")
    if not runs:
        return []
    org_id = org_of(db)
    # Many runs share a snapshot (one skill's habits): each distinct one is sent, parsed and
    # checked against the spend cap once.
    snapshot_numbers: dict[str, int] = {}
    numbers: list[int] = []
    texts: dict[int, str] = {}  # by the snapshot object: callers pass one dict per skill
    for run in runs:
        text = texts.get(id(run.snapshot))
        if text is None:
            text = texts[id(run.snapshot)] = json.dumps(dict(run.snapshot))  # as the jsonb codec writes it
        numbers.append(snapshot_numbers.setdefault(text, len(snapshot_numbers) + 1))
    refusals: dict[int, SpendCapReached | None] = {}
    if kijko is not None:
        for text, number in snapshot_numbers.items():
            refusals[number] = await spend.refusal(db, kijko, org_id, json.loads(text))
        for run, number in zip(runs, numbers, strict=True):
            refusal = refusals[number]
            if refusal is not None and run.execution_type in API_TYPES:
                raise refusal
    refused: list[KijkoError | None] = [refusals.get(number) for number in numbers]
    counted = await _count_api_calls(db, plans or (kijko.plans if kijko is not None else None), org_id, runs, refused)
    ids = [uuid.uuid4() for _ in runs]
    job_ids = [None if refusal else uuid.uuid4() for refusal in refused]
    rows = await db.fetch(
        _INSERT,
        org_id,
        ids,
        [run.skill_id for run in runs],
        [run.user_id for run in runs],
        [run.execution_type for run in runs],
        [run.reference_id for run in runs],
        [run.scheduled_for for run in runs],
        [run.source_execution_id for run in runs],
        [json.dumps(dict(run.input)) for run in runs],
        numbers,
        list(snapshot_numbers),
        job_ids,
        [refusal.code if refusal else None for refusal in refused],
        [refusal.message if refusal else None for refusal in refused],
    )
    inserted = {row["id"]: row for row in rows}
    not_run = sum(1 for i in counted if ids[i] not in inserted)  # already fired: counted for nothing
    if not_run and isinstance(db, ServiceSession):
        await quotas.refund(db, org_id, "api_calls", not_run)
    if not inserted:
        return [None] * len(runs)
    # The skills' run counts (and a habit's run-now count) were added by the insert itself: a
    # statement trigger of migration 0022 (decision 0136), so no session on the app role writes
    # them; it locks the skills FOR NO KEY UPDATE in id order, as 0129 requires.
    pending = [inserted[execution_id] for execution_id in ids if execution_id in inserted]
    queued = [row for row in pending if row["status"] == "pending"]
    if queued:
        await jobs.enqueue_many(
            db,
            JOB_KIND,
            [{"execution_id": str(row["id"])} for row in queued],
            org_id=org_id,
            job_ids=[row["job_id"] for row in queued],
        )
    for row in pending:
        if row["status"] == "pending" or kijko is None:
            # Without ``kijko`` (the habit scheduler, whose habits the claim holds locked) a run
            # refused by the quota is recorded and announced, its finish listeners not run.
            announce(db, row)
        else:
            await finished(db, row, kijko.settings if kijko is not None else None)
    if queued:  # one line per call: a tick starts thousands, each recorded in its row
        log.info(
            "executions_started",
            count=len(queued),
            execution_ids=[str(row["id"]) for row in queued[:LOGGED_IDS]],
            execution_types=sorted({row["execution_type"] for row in queued}),
        )
    return [execution_id if execution_id in inserted else None for execution_id in ids]


# --- reading -----------------------------------------------------------------------------------


async def get_row(db: Session, org_id: UUID, execution_id: UUID, *, for_update: bool = False) -> dict[str, Any]:
    """The execution's row (visible under ``db``'s row-level security); ExecutionNotFound."""
    row = await db.fetchrow(_GET_FOR_UPDATE if for_update else _GET, org_id, execution_id)
    if row is None:
        raise ExecutionNotFound()
    return dict(row)


# --- cancel, retry, replay ---------------------------------------------------------------------


async def authorize_on(db: TenantSession, execution_id: UUID, action: Action) -> None:
    """EXECUTION_NOT_FOUND for an execution the caller cannot read (unknown, another
    organization's), 403 when their role may not do ``action`` to it."""
    row = await get_row(db, db.principal.org_id, execution_id)
    authorize(db.principal, action, _Owned(row["organization_id"], row["user_id"]), policy=EXECUTIONS)


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


#: The skill's current snapshot and the input checked against its current schema (skills'
#: ``runnable``): SKILL_NOT_FOUND, SKILL_INACTIVE or a 422 refuse the retry.
CurrentSkill = Callable[[UUID, dict[str, Any]], Awaitable[tuple[dict[str, Any], dict[str, Any]]]]


async def retry(
    db: TenantSession | ServiceSession,
    execution_id: UUID,
    *,
    current: CurrentSkill,
    user_id: UUID | None,
    kijko: Kijko | None = None,
    plans: Plans | None = None,
) -> tuple[UUID, str]:
    """A failed or cancelled execution started again (CANNOT_RETRY otherwise): same skill,
    type, reference and input, with the skill's *current* configuration (decision 0108; a
    deleted skill: CANNOT_RETRY — replay runs the stored snapshot)."""
    org_id = org_of(db)
    row = await get_row(db, org_id, execution_id)
    if row["status"] not in ("failed", "cancelled"):
        raise CannotRetry()
    if row["skill_id"] is None:
        raise CannotRetry("The skill of this execution was deleted; replay it to run its stored configuration")
    snapshot, values = await current(row["skill_id"], dict(row["input"]))
    new_id = await start(
        db,
        snapshot=snapshot,
        input=values,
        execution_type=row["execution_type"],
        user_id=user_id,
        skill_id=row["skill_id"],
        reference_id=row["reference_id"],
        source_execution_id=execution_id,
        kijko=kijko,
        plans=plans,
    )
    assert new_id is not None  # no scheduled_for: no idempotency key to collide with
    return new_id, await _status(db, org_id, new_id)


async def replay(
    db: TenantSession | ServiceSession,
    execution_id: UUID,
    *,
    user_id: UUID | None,
    kijko: Kijko | None = None,
    plans: Plans | None = None,
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
        plans=plans,
    )
    assert new_id is not None
    return new_id, await _status(db, org_id, new_id)


async def _status(db: Session, org_id: UUID, execution_id: UUID) -> str:
    status: str = await db.fetchval(
        "SELECT status FROM kijko.skill_executions WHERE organization_id = $1 AND id = $2", org_id, execution_id
    )
    return status
