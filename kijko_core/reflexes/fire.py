"""Reflexes firing (docs/reflexes.md): the executions they start, the ``reflex.event`` job that
fires ``event`` reflexes, the finish listener that publishes the ``execution.*`` events, and the
sweeper steps that turn off reflexes failing too often in a row (kijko_core/auto_disable.py,
which also counts the failures) and forget old webhook deliveries.

Every write here happens in a service session of the reflex's organization (row-level
security), on behalf of the reflex's creator: the execution's ``user_id`` is theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kijko_core import auto_disable
from kijko_core.db.session import ServiceSession, Session, system_session
from kijko_core.executions import lifecycle
from kijko_core.jobs import JobContext, job_kind, sweep_step
from kijko_core.logging import get_logger
from kijko_core.reflexes import catalogue, repository
from kijko_core.reflexes import conditions as conditions_module
from kijko_core.reflexes.models import Reflex, reflex_from_row
from kijko_core.skills import service as skills
from kijko_core.skills.errors import SkillNotFound

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

log = get_logger("kijko.reflexes")

#: How long webhook deliveries are remembered for deduplication (at least 7 days).
DELIVERIES_KEPT_DAYS = 8
SWEEP_BATCH = 5000


def skill_input(payload: Any) -> dict[str, Any]:
    """The skill's input from a payload: a JSON object as it is (its keys are the inputs);
    anything else under ``payload`` (decision 0120)."""
    return dict(payload) if isinstance(payload, Mapping) else {"payload": payload}


async def start_execution(db: ServiceSession, kijko: Kijko | None, reflex: Reflex, payload: Any) -> UUID | None:
    """Start the reflex's skill on ``payload`` (validated against its inputSchema) as the
    reflex's creator, and count the trigger; in ``db``'s transaction. SKILL_INACTIVE or a 422
    refuse it (the receiver answers them; an event reflex logs and skips)."""
    try:
        skill, snapshot, values = await skills.runnable(db, reflex.skill_id, skill_input(payload))
    except SkillNotFound:
        return None  # deleted since the reflex was read (which deleted the reflex too): nothing to run
    execution_id = await lifecycle.start(
        db,
        snapshot=snapshot,
        input=values,
        execution_type="reflex",
        user_id=reflex.user_id,
        skill_id=skill.id,
        reference_id=reflex.id,
        kijko=kijko,
    )
    await db.execute(repository.COUNT_TRIGGER, db.org_id, reflex.id)
    return execution_id


@job_kind(catalogue.JOB_KIND, max_attempts=3, lease_seconds=60, timeout_seconds=120)
async def fire_event(ctx: JobContext) -> None:
    """Start every active ``event`` reflex of the organization listening to the event whose
    source (if it names one) and conditions match; one reflex's refusal (an inactive skill, an
    input its skill refuses) is logged and skips that reflex only."""
    assert ctx.org_id is not None
    name = str(ctx.payload["name"])
    data = ctx.payload.get("data") or {}
    source = ctx.payload.get("source")
    async with ctx.service_session() as db:
        reflexes = [reflex_from_row(row) for row in await db.fetch(repository.EVENT_REFLEXES, ctx.org_id, name)]
        for reflex in reflexes:
            wanted = reflex.trigger_config.get("source")
            if wanted is not None and wanted != source:
                continue
            if not conditions_module.matches(reflex.conditions, data):
                continue
            try:
                async with db.savepoint():
                    await start_execution(db, ctx.kijko, reflex, data)
            except Exception as error:  # noqa: BLE001 — this reflex only; the others still fire
                log.warning(
                    "event_reflex_refused", reflex_id=str(reflex.id), event_name=name, error=type(error).__name__
                )


async def on_finish(db: Session, finished: lifecycle.FinishedExecution) -> None:
    """Publish ``execution.completed`` / ``execution.failed`` — except for runs of ``event``
    reflexes, so a reflex listening to executions never triggers itself (decision 0121)."""
    org_id = finished.organization_id
    caused_by_event = False
    if finished.execution_type == "reflex" and finished.reference_id is not None:
        kind = await db.fetchval(repository.TRIGGER_TYPE, org_id, finished.reference_id)
        caused_by_event = kind == "event"
    if caused_by_event or finished.status not in ("completed", "failed"):
        return
    name = f"execution.{finished.status}"
    skill_id = str(finished.skill_id) if finished.skill_id else None
    data = {
        "executionId": str(finished.id),
        "skillId": skill_id,
        "executionType": finished.execution_type,
        "referenceId": str(finished.reference_id) if finished.reference_id else None,
        "status": finished.status,
        "errorCode": finished.error_code,
    }
    await catalogue.emit(db, name, data, source=skill_id, org_id=org_id)


lifecycle.add_finish_listener(on_finish)


@sweep_step("reflexes_auto_disable")
async def disable_failing(kijko: Kijko) -> int:
    """Reflexes over ``KIJKO_REFLEX_MAX_CONSECUTIVE_FAILURES`` failures in a row turn off."""
    return await auto_disable.disable_failing(kijko, auto_disable.REFLEXES)


@sweep_step("reflex_deliveries")
async def forget_deliveries(kijko: Kijko) -> int:
    """Webhook ids older than ``DELIVERIES_KEPT_DAYS`` (a bounded batch per tick)."""
    async with system_session(kijko.system_db) as db:
        status = await db.execute(repository.FORGET_DELIVERIES, DELIVERIES_KEPT_DAYS, SWEEP_BATCH)
    return int(status.split()[-1])
