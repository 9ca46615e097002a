"""The ``execution.run`` job: one execution of a skill (docs/executions.md).

1. **Admission** (one transaction, the organization's lock held): a ``pending`` execution
   starts only while fewer than ``KIJKO_EXECUTION_CONCURRENCY_PER_ORG`` of its organization run
   (else the job defers itself, ``JobDeferred``: it waits queued, no attempt counted), and not
   over the spend cap (then it ends ``failed`` with ``SPEND_CAP_REACHED``); ``pending`` →
   ``running`` compare-and-set.
2. **Run**, with no transaction open: the snapshot's template rendered with the input, the
   snapshot's skill type run with its validated ``typeConfig``, within
   ``KIJKO_EXECUTION_TIMEOUT_SECONDS``.
3. **End** (one transaction): ``running`` → ``completed`` | ``failed`` | ``cancelled``
   compare-and-set, the ``kijko.llm_usage`` row of a provider call, the owners' spend mails,
   the finish listeners; ``execution:updated`` after the commit. The worker then completes the
   job and, in the same transaction, hands the slot to the organization's next execution that
   deferred itself and claims more (the kind is limited per organization: workers claim only
   organizations with a free slot, decision 0129).

A cancel (kijko_core/executions/lifecycle.py) ends the row at once and cancels the job; the
worker's heartbeat then cancels this handler's task, which aborts the provider call; what
the run consumed is added to the cancelled row. A completion that finds the row cancelled
changes nothing but the tokens (the cancel won; its usage is still recorded: it was spent).

A retried attempt (the worker died, its lease expired) finds the execution ``running``: the
earlier attempt may have called the provider, so it is not run twice; it ends ``failed`` with
``WORKER_LOST`` and can be retried by hand (decision 0108).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import ValidationError

from kijko_core import jobs
from kijko_core.config import Settings
from kijko_core.db.session import ServiceSession, Session
from kijko_core.errors import KijkoError
from kijko_core.executions import lifecycle, spend
from kijko_core.executions.errors import ExecutionNotFound
from kijko_core.jobs import JobContext
from kijko_core.jobs import store as job_store
from kijko_core.llm import skill as llm_skill
from kijko_core.logging import get_logger
from kijko_core.plugins import PluginError, SkillOutcome, SkillRun, SkillRunFailed, SkillType
from kijko_core.plugins import registry as plugin_registry
from kijko_core.skills import templates

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

log = get_logger("kijko.executions")

#: Heartbeats every third of the lease: a cancel reaches a running handler within 3 s (a busy
#: worker that misses beats for 9 s loses the job, which then ends WORKER_LOST).
LEASE_SECONDS = 9
#: The output column's limit (characters); a longer output is cut there.
MAX_OUTPUT_CHARS = 1_000_000
MAX_ERROR_CHARS = 4000

# errorCodes of this module (docs/executions.md#error-codes).
EXECUTION_FAILED = "EXECUTION_FAILED"
TIMEOUT = "TIMEOUT"
WORKER_LOST = "WORKER_LOST"
SKILL_TYPE_UNAVAILABLE = "SKILL_TYPE_UNAVAILABLE"
INVALID_SNAPSHOT = "INVALID_SNAPSHOT"
CANCELLED_MESSAGE = "Cancelled"

_COLUMNS = lifecycle.COLUMNS
_ORG_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('kijko.executions:' || $1::text, 0))"
_RUNNING_IN_ORG = (
    "SELECT count(*) FROM kijko.skill_executions WHERE organization_id = $1 AND status = 'running' AND id <> $2"
)
_BEGIN = f"""
UPDATE kijko.skill_executions SET status = 'running', started_at = clock_timestamp(), updated_at = now()
WHERE organization_id = $1 AND id = $2 AND status = 'pending'
RETURNING {_COLUMNS}
"""  # noqa: S608 — constants
_COMPLETE = f"""
UPDATE kijko.skill_executions
SET status = 'completed', output = $3, prompt_tokens = $4, completion_tokens = $5, duration_ms = $6,
    cost = $7, currency = $8, key_source = $9, completed_at = clock_timestamp(), updated_at = now()
WHERE organization_id = $1 AND id = $2 AND status = 'running'
RETURNING {_COLUMNS}
"""  # noqa: S608 — constants
_FAIL = f"""
UPDATE kijko.skill_executions
SET status = 'failed', error_code = $3, error_message = $4, prompt_tokens = $5, completion_tokens = $6,
    duration_ms = $7, completed_at = clock_timestamp(), updated_at = now()
WHERE organization_id = $1 AND id = $2 AND status IN ('pending', 'running')
RETURNING {_COLUMNS}
"""  # noqa: S608 — constants
# The job was cancelled from outside the API (``kijko jobs cancel``): so is the execution.
_CANCEL = f"""
UPDATE kijko.skill_executions
SET status = 'cancelled', error_message = $3, prompt_tokens = $4, completion_tokens = $5,
    duration_ms = $6, completed_at = clock_timestamp(), updated_at = now()
WHERE organization_id = $1 AND id = $2 AND status IN ('pending', 'running')
RETURNING {_COLUMNS}
"""  # noqa: S608 — constants
# What a cancelled run consumed, added to the row the cancel ended.
_ADD_CONSUMED = """
UPDATE kijko.skill_executions
SET prompt_tokens = coalesce(prompt_tokens, $3), completion_tokens = coalesce(completion_tokens, $4),
    cost = coalesce(cost, $5), currency = coalesce(currency, $6), key_source = coalesce(key_source, $7),
    updated_at = now()
WHERE organization_id = $1 AND id = $2 AND status = 'cancelled'
"""
USAGE = """
INSERT INTO kijko.llm_usage
    (organization_id, execution_id, user_id, provider, model, key_source, prompt_tokens,
     completion_tokens, cost, currency, is_test)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""


@dataclass
class _Ending:
    """How a run ended, before it is written."""

    status: str  # completed | failed | cancelled
    outcome: SkillOutcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _per_org_limit(settings: Settings) -> int:
    return settings.execution_concurrency_per_org


# Workers claim an organization's execution jobs only while it has a free slot (decision
# 0129); the admission below, under the organization's lock, is what enforces the limit.
@jobs.job_kind(
    lifecycle.JOB_KIND,
    max_attempts=3,
    lease_seconds=LEASE_SECONDS,
    timeout_seconds=None,
    per_org_limit=_per_org_limit,
)
async def run_execution(ctx: JobContext) -> None:
    execution_id = UUID(ctx.payload["execution_id"])
    org_id = ctx.org_id
    assert org_id is not None
    admitted = await _admit(ctx, org_id, execution_id)
    if admitted is None:
        return
    row, extras = admitted
    started = time.monotonic()
    try:
        ending = await _run(ctx, org_id, row, extras)
    except Exception as error:  # ours, not the skill's: still an ending, never left running
        log.exception("execution_run_crashed", execution_id=str(execution_id))
        ending = _Ending(
            "failed", error_code=EXECUTION_FAILED, error_message=f"The execution failed ({type(error).__name__})"
        )
    except asyncio.CancelledError:
        if ctx.cancelled and await _job_cancelled(ctx):  # a user's cancel, an operator's
            await _end(ctx, org_id, row, _Ending("cancelled", error_message=CANCELLED_MESSAGE), started)
            # A cancelled job is not completed by the worker, which hands over the slots of
            # completed ones (kijko_core/jobs/store.py hand_over): hand it over here.
            await _hand_over(ctx, org_id)
        # Else a draining worker, or a lease lost to the reaper: the job runs again, and that
        # attempt ends the execution WORKER_LOST.
        raise
    if ctx.cancelled:
        if not await _job_cancelled(ctx):
            return  # the lease was lost meanwhile: no longer ours to end
        ending = _cancelled(ending)
    await _end(ctx, org_id, row, ending, started)


async def _job_cancelled(ctx: JobContext) -> bool:
    """Whether the job was cancelled (its ``ctx.cancelled`` is also set by a lost lease)."""
    async with ctx.system_session(readonly=True) as db:
        return await db.fetchval("SELECT state = 'cancelled' FROM kijko.jobs WHERE id = $1", ctx.job_id) is True


async def _admit(ctx: JobContext, org_id: UUID, execution_id: UUID) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Start the execution within the organization's limit and cap; None: nothing to run.
    With the row, the run's ``extras`` read in the same transaction (the ``llm`` type's key)."""
    settings = ctx.kijko.settings
    async with ctx.service_session() as db:
        try:
            row = await lifecycle.get_row(db, org_id, execution_id, for_update=True)
        except ExecutionNotFound:
            return None
        if row["status"] not in lifecycle.ACTIVE:
            return None  # cancelled before it ran, or already ended
        if row["status"] == "running":
            # An earlier attempt died after it started: it may have called the provider.
            log.warning("execution_worker_lost", execution_id=str(execution_id), attempt=ctx.attempt)
            await _write_ending(
                ctx,
                db,
                org_id,
                row,
                _Ending(
                    "failed",
                    error_code=WORKER_LOST,
                    error_message="The worker running this execution stopped before it finished; retry it",
                ),
                duration_ms=None,
            )
            return None
        await db.execute(_ORG_LOCK, str(org_id))
        if await db.fetchval(_RUNNING_IN_ORG, org_id, execution_id) >= settings.execution_concurrency_per_org:
            raise jobs.JobDeferred(settings.execution_queue_recheck_seconds)
        refusal = await spend.refusal(db, ctx.kijko, org_id, row["snapshot"])
        if refusal is not None:
            await _write_ending(
                ctx,
                db,
                org_id,
                row,
                _Ending("failed", error_code=spend.SPEND_CAP_REACHED, error_message=refusal.message),
                duration_ms=None,
            )
            return None
        began = await db.fetchrow(_BEGIN, org_id, execution_id)
        assert began is not None  # locked above, pending
        lifecycle.announce(db, began)
        return dict(began), await _extras(db, ctx.kijko, began["snapshot"])


async def _extras(db: Session, kijko: Kijko, snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """What the run needs from the database, read in the admission's transaction instead of a
    session of the run's own: the ``llm`` type's provider key (the organization's or the
    platform's, as it would resolve it)."""
    if str(snapshot.get("skillType") or "llm") != "llm" or not isinstance(db, ServiceSession):
        return {}
    return await llm_skill.resolve_key(db, kijko, str(snapshot.get("model") or ""))


def prepare(snapshot: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[SkillType, Any, str, str | None]:
    """The snapshot's skill type, its validated configuration and the rendered prompt and
    system prompt; raises SkillRunFailed for a snapshot that cannot run (its type uninstalled,
    a config or template the type no longer accepts)."""
    try:
        skill_type = plugin_registry.skill_type(str(snapshot.get("skillType") or "llm"))
    except PluginError:
        raise SkillRunFailed(SKILL_TYPE_UNAVAILABLE, "The skill's type is not installed") from None
    try:
        config = skill_type.Config.model_validate(snapshot.get("typeConfig") or {})
    except ValidationError:
        raise SkillRunFailed(INVALID_SNAPSHOT, "The skill's typeConfig is not valid for its type") from None
    try:
        prompt, system_prompt = templates.render_prompts(snapshot, values)
    except KijkoError as error:
        raise SkillRunFailed(INVALID_SNAPSHOT, error.message) from None
    return skill_type, config, prompt, system_prompt


def skill_run(
    kijko: Kijko,
    org_id: UUID,
    execution_id: UUID | None,
    snapshot: Mapping[str, Any],
    values: Mapping[str, Any],
    config: Any,
    prompt: str,
    system_prompt: str | None,
    extras: Mapping[str, Any] | None = None,
) -> SkillRun:
    return SkillRun(
        organization_id=org_id,
        execution_id=execution_id,
        prompt=prompt,
        system_prompt=system_prompt,
        model=str(snapshot.get("model") or ""),
        parameters=dict(snapshot.get("parameters") or {}),
        config=config,
        input=dict(values),
        output_format=str(snapshot.get("outputFormat") or "markdown"),
        kijko=kijko,
        extras=dict(extras or {}),
    )


async def run_skill(run: SkillRun, skill_type: SkillType, seconds: float) -> SkillOutcome:
    """Run once within ``seconds``; SkillRunFailed(TIMEOUT) past it, EXECUTION_FAILED for an
    error the type did not describe (its name only: never a traceback or a message that may
    carry a secret)."""
    try:
        async with asyncio.timeout(seconds):
            return await skill_type.run(run)
    except SkillRunFailed:
        raise
    except TimeoutError:
        raise SkillRunFailed(TIMEOUT, f"The run took longer than {seconds:g} seconds") from None
    except Exception as error:  # a plugin's bug: recorded, not retried
        log.exception("skill_run_crashed", skill_type=skill_type.name)
        raise SkillRunFailed(EXECUTION_FAILED, f"The skill run failed unexpectedly ({type(error).__name__})") from None


async def _run(ctx: JobContext, org_id: UUID, row: Mapping[str, Any], extras: Mapping[str, Any]) -> _Ending:
    snapshot, values = row["snapshot"], row["input"]
    try:
        skill_type, config, prompt, system_prompt = prepare(snapshot, values)
        run = skill_run(ctx.kijko, org_id, row["id"], snapshot, values, config, prompt, system_prompt, extras)
        outcome = await run_skill(run, skill_type, ctx.kijko.settings.execution_timeout_seconds)
    except SkillRunFailed as failure:
        return _Ending(
            "failed",
            error_code=failure.code,
            error_message=failure.message,
            prompt_tokens=failure.prompt_tokens,
            completion_tokens=failure.completion_tokens,
        )
    return _Ending(
        "completed",
        outcome=outcome,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
    )


def _cancelled(ending: _Ending) -> _Ending:
    """What a cancelled job's run ended with, as a cancel (its tokens and usage kept)."""
    return _Ending(
        "cancelled",
        outcome=ending.outcome,
        error_message=CANCELLED_MESSAGE,
        prompt_tokens=ending.prompt_tokens,
        completion_tokens=ending.completion_tokens,
    )


async def _end(ctx: JobContext, org_id: UUID, row: Mapping[str, Any], ending: _Ending, started: float) -> None:
    duration_ms = int((time.monotonic() - started) * 1000)
    async with ctx.service_session() as db:
        await _write_ending(ctx, db, org_id, row, ending, duration_ms=duration_ms)


async def _write_ending(
    ctx: JobContext,
    db: Session,
    org_id: UUID,
    row: Mapping[str, Any],
    ending: _Ending,
    *,
    duration_ms: int | None,
) -> None:
    """The ending, compare-and-set; a row a cancel ended first keeps its state and gets the
    tokens and cost this run consumed. The usage row of a provider call is written either way."""
    execution_id = row["id"]
    outcome = ending.outcome
    cost, currency, key_source = _money(outcome)
    if ending.status == "completed":
        assert outcome is not None
        done = await db.fetchrow(
            _COMPLETE,
            org_id,
            execution_id,
            outcome.output[:MAX_OUTPUT_CHARS],
            ending.prompt_tokens,
            ending.completion_tokens,
            duration_ms,
            cost,
            currency,
            key_source,
        )
    elif ending.status == "failed":
        done = await db.fetchrow(
            _FAIL,
            org_id,
            execution_id,
            ending.error_code,
            _message(ending.error_message),
            ending.prompt_tokens,
            ending.completion_tokens,
            duration_ms,
        )
    else:
        done = await db.fetchrow(
            _CANCEL,
            org_id,
            execution_id,
            _message(ending.error_message),
            ending.prompt_tokens,
            ending.completion_tokens,
            duration_ms,
        )
    if done is None:
        # Ended meanwhile (a user's cancel won the race): keep that, add what was consumed.
        await db.execute(
            _ADD_CONSUMED,
            org_id,
            execution_id,
            ending.prompt_tokens or None,
            ending.completion_tokens or None,
            cost,
            currency,
            key_source,
        )
    if outcome is not None and outcome.provider and outcome.model and cost is not None and key_source:
        await db.execute(
            USAGE,
            org_id,
            execution_id,
            row["user_id"],
            outcome.provider,
            outcome.model,
            key_source,
            outcome.prompt_tokens,
            outcome.completion_tokens,
            cost,
            currency,
            False,
        )
        if key_source == "platform":
            await spend.alert_owners(db, ctx.kijko, org_id)
    if done is not None:
        await lifecycle.finished(db, done, ctx.kijko.settings)
        log.info("execution_ended", execution_id=str(execution_id), status=done["status"], code=done["error_code"])


def _money(outcome: SkillOutcome | None) -> tuple[Decimal | None, str | None, str | None]:
    if outcome is None or outcome.cost is None or outcome.currency is None:
        return None, None, outcome.key_source if outcome else None
    return outcome.cost, outcome.currency, outcome.key_source


def _message(message: str | None) -> str:
    text = (message or "").strip() or "The execution failed"
    return text[:MAX_ERROR_CHARS]


async def _hand_over(ctx: JobContext, org_id: UUID) -> None:
    try:
        async with ctx.system_session() as db:
            woken = await job_store.hand_over(db, [(lifecycle.JOB_KIND, org_id)])
    except Exception:  # the waiting one still checks again by itself
        log.exception("execution_hand_over_failed")
        return
    if woken:
        await jobs.ring(woken)
