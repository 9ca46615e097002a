"""Inline runs: skill tests (``POST /skills/test``, ``POST /skills/:id/test``) and waiting for
an execution's outcome (``?wait=N``), without holding a database transaction meanwhile
(docs/executions.md#tests, #waiting).

A test is not an execution: nothing is recorded in ``kijko.skill_executions`` and its id is
``test-<uuid>``; a provider call it makes is recorded in ``kijko.llm_usage`` with ``is_test``,
so spend, the cap and usage see it. It runs in the API process within
``KIJKO_EXECUTION_TEST_TIMEOUT_SECONDS``, and is refused over the spend cap like an execution;
it counts as an API call of the plan's quota.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kijko_core.billing import quotas
from kijko_core.db.session import ServiceActor, Session, TenantSession, service_session
from kijko_core.executions import job, lifecycle, spend
from kijko_core.executions.models import ExecuteSkillResponse
from kijko_core.plugins import SkillRunFailed

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

#: Polling an execution while waiting: first after this, then 1.5× longer each time, at most
#: POLL_MAX (one short read-only transaction per look).
POLL_FIRST = 0.05
POLL_MAX = 0.5

OpenSession = Callable[[], AbstractAsyncContextManager[TenantSession]]


def response(row: Mapping[str, Any]) -> ExecuteSkillResponse:
    """ExecuteSkillResponse of an execution row in whatever state it is."""
    status = row["status"]
    prompt, completion = row["prompt_tokens"], row["completion_tokens"]
    tokens = None if prompt is None and completion is None else (prompt or 0) + (completion or 0)
    return ExecuteSkillResponse(
        execution_id=str(row["id"]),
        status=status,
        output=row["output"] if status == "completed" else None,
        tokens_used=tokens if status in lifecycle.FINISHED else None,
        duration_ms=row["duration_ms"] if status in lifecycle.FINISHED else None,
        error=row["error_message"] if status in ("failed", "cancelled") else None,
        error_code=row["error_code"] if status in ("failed", "cancelled") else None,
    )


async def wait_for_outcome(
    open_session: OpenSession, org_id: UUID, execution_id: UUID, seconds: float
) -> ExecuteSkillResponse:
    """The execution once it has ended, or its state when ``seconds`` have passed. Each look
    is its own short read-only transaction: nothing is held while the run goes on."""
    deadline = time.monotonic() + seconds
    pause = POLL_FIRST
    while True:
        async with open_session() as db:
            row = await lifecycle.get_row(db, org_id, execution_id)
        left = deadline - time.monotonic()
        if row["status"] in lifecycle.FINISHED or left <= 0:
            return response(row)
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 1.5, POLL_MAX)


async def run_test(
    kijko: Kijko,
    open_session: Callable[[], AbstractAsyncContextManager[Session]],
    *,
    org_id: UUID,
    user_id: UUID,
    snapshot: Mapping[str, Any],
    values: Mapping[str, Any],
) -> ExecuteSkillResponse:
    """Run ``snapshot`` once with ``values`` (already validated), inline; record its provider
    call in ``kijko.llm_usage`` (``is_test``) in a transaction of its own afterwards.

    A test is an API call of the plan (decision 0151): counted in a transaction of its own
    before it runs (429 ``QUOTA_EXCEEDED`` over the quota, nothing run)."""
    async with open_session() as db:
        await quotas.consume(db, kijko.plans, org_id, "api_calls")
    test_id = f"test-{uuid.uuid4()}"
    started = time.monotonic()
    outcome = None
    try:
        skill_type, config, prompt, system_prompt = job.prepare(snapshot, values)
        run = job.skill_run(kijko, org_id, None, snapshot, values, config, prompt, system_prompt)
        outcome = await job.run_skill(run, skill_type, kijko.settings.execution_test_timeout_seconds)
    except SkillRunFailed as failure:
        tokens = failure.prompt_tokens + failure.completion_tokens
        return ExecuteSkillResponse(
            execution_id=test_id,
            status="failed",
            tokens_used=tokens,
            duration_ms=int((time.monotonic() - started) * 1000),
            error=failure.message,
            error_code=failure.code,
        )
    duration_ms = int((time.monotonic() - started) * 1000)
    if outcome.provider and outcome.model and outcome.cost is not None and outcome.currency and outcome.key_source:
        async with open_session() as db:
            await db.execute(
                job.USAGE,
                org_id,
                None,
                user_id,
                outcome.provider,
                outcome.model,
                outcome.key_source,
                outcome.prompt_tokens,
                outcome.completion_tokens,
                outcome.cost,
                outcome.currency,
                True,
            )
        if outcome.key_source == "platform":
            # The owners' spend mails are recorded by service sessions only (a member's session
            # may not insert llm_spend_alerts rows: migration 0022, decision 0137), after the
            # usage above has committed.
            capability = await kijko.service_capability()
            actor = ServiceActor("spend.alerts", test_id)
            async with service_session(kijko.app_db, capability, org_id, actor) as service:
                await spend.alert_owners(service, kijko, org_id)
    return ExecuteSkillResponse(
        execution_id=test_id,
        status="completed",
        output=outcome.output[: job.MAX_OUTPUT_CHARS],
        tokens_used=outcome.prompt_tokens + outcome.completion_tokens,
        duration_ms=duration_ms,
    )
