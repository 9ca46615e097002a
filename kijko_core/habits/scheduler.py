"""The habit scheduler: a step of the worker's periodic tick (docs/habits.md#the-scheduler).

Every tick (once a minute: huey's periodic task, or the sweeper of the worker inside
``kijko serve``) first deactivates habits that failed too often in a row, then fires the due
ones, in batches:

1. **Claim** on the system role: due active habits, ``FOR UPDATE SKIP LOCKED`` — another
   scheduler's claimed rows are skipped, so two schedulers share the work and never hold the
   same habit. The claiming transaction stays open, holding the row locks.
2. **Fire**, per organization, in one service session of that organization (row-level security,
   actor ``service:habits.scheduler:<tick>``): the habit's config checked against its skill's
   input schema, and the organization's executions started with one ``lifecycle.start_many``
   (one statement per table, decision 0130) — ``scheduled_for`` is the habit's stored
   ``next_run_at``, the idempotency key with the habit's id. That session commits.
3. **Advance**, in the claiming transaction: ``next_run_at`` = the first fire instant after
   now, ``last_run_at``, ``run_count``; then it commits and releases the locks.

A crash between 2 and 3 leaves the execution and the old ``next_run_at``: the next tick claims
the habit again, ``lifecycle.start_many`` finds ``(habit, scheduled_for)`` already fired and returns
None, and the habit is advanced — never a fire lost, never one doubled (decision 0115). After
downtime one catch-up run fires, labelled with the first missed instant, and the schedule
resumes after now.

The clock: the claim compares with the database's ``now()``; :func:`tick` takes ``at`` only so
tests can stand at a chosen instant (decision 0116).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

from kijko_core import auto_disable, jobs
from kijko_core.db.session import (
    ServiceActor,
    ServiceCapability,
    service_session,
    system_session,
)
from kijko_core.errors import ValidationFailed
from kijko_core.executions import lifecycle
from kijko_core.habits import cron, repository
from kijko_core.logging import get_logger
from kijko_core.skills import repository as skill_repository
from kijko_core.skills import service as skills
from kijko_core.skills.models import Skill

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

log = get_logger("kijko.habits")

#: Habits claimed per claiming transaction (their locks are held while they fire).
BATCH = 1000
#: Batches per tick at most; what is left fires at the next tick.
MAX_BATCHES = 200
#: Organizations of a batch firing at the same time (each on its own connection).
FIRE_CONCURRENCY = 8
ACTOR_KIND = "habits.scheduler"
SKILL_INACTIVE_MESSAGE = "Skipped: the skill is inactive"


@dataclass
class TickReport:
    fired: int = 0  # executions started (or found started by an earlier, interrupted tick)
    skipped: int = 0  # due, not fired (inactive skill, config not fitting the skill's input)
    disabled: int = 0  # deactivated for failing too often in a row
    left: int = 0  # claimed but not advanced (an organization's fire failed: retried next tick)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Outcome:
    habit_id: UUID
    next_run_at: datetime
    scheduled_for: datetime
    fired: bool
    error: str | None = None
    failed: bool = False


class _Following:
    """The next fire instant after ``now`` per (schedule, zone), computed once per batch
    (many habits share a schedule)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._known: dict[tuple[str, str], datetime] = {}

    def __call__(self, expression: str, timezone: str) -> datetime:
        key = (expression, timezone)
        if key not in self._known:
            self._known[key] = cron.next_after(cron.parse(expression), cron.zone(timezone), self.now)
        return self._known[key]


@jobs.sweep_step("habits")
async def sweep(kijko: Kijko) -> int:
    """The tick's step: returns how many habits fired."""
    return (await tick(kijko)).fired


async def tick(kijko: Kijko, *, at: datetime | None = None, batch: int = BATCH) -> TickReport:
    """Deactivate habits over the failure limit, then fire every due habit (up to
    ``MAX_BATCHES`` batches). ``at``: the instant to stand at instead of the database's
    ``now()`` — tests only (decision 0116); production passes nothing."""
    capability = await kijko.service_capability()
    report = TickReport()
    report.disabled = await auto_disable.disable_failing(kijko, auto_disable.HABITS, capability)
    tick_id = uuid.uuid4().hex
    for _ in range(MAX_BATCHES):
        claimed = await _batch(kijko, capability, tick_id, at, batch, report)
        if claimed < batch:
            break
    if report.fired or report.skipped or report.left:
        log.info("habits_ticked", fired=report.fired, skipped=report.skipped, left=report.left)
    return report


async def _batch(
    kijko: Kijko, capability: ServiceCapability, tick_id: str, at: datetime | None, batch: int, report: TickReport
) -> int:
    async with system_session(kijko.system_db) as claim:
        rows = await claim.fetch(repository.CLAIM_DUE, at, batch)
        if not rows:
            return 0
        now: datetime = rows[0]["now"]
        by_org: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            by_org[row["organization_id"]].append(row)
        outcomes: list[_Outcome] = []
        # Organizations fire side by side, each in its own service session (connection).
        limit = asyncio.Semaphore(max(1, min(FIRE_CONCURRENCY, kijko.settings.db_pool_size - 1)))
        following = _Following(now)

        async def fire(org_id: UUID, due: list[asyncpg.Record]) -> None:
            async with limit:
                try:
                    outcomes.extend(await _fire(kijko, capability, tick_id, org_id, due, following))
                except Exception as error:  # the habits stay due; the next tick tries them again
                    log.exception("habits_fire_failed", organization_id=str(org_id))
                    report.left += len(due)
                    report.errors.append(type(error).__name__)

        await asyncio.gather(*(fire(org_id, due) for org_id, due in by_org.items()))
        if outcomes:
            await claim.execute(
                repository.ADVANCE,
                [o.habit_id for o in outcomes],
                [o.next_run_at for o in outcomes],
                [o.scheduled_for for o in outcomes],
                [o.fired for o in outcomes],
                [o.error for o in outcomes],
                [o.failed for o in outcomes],
            )
        report.fired += sum(1 for o in outcomes if o.fired)
        report.skipped += sum(1 for o in outcomes if not o.fired)
    return len(rows)


async def _fire(
    kijko: Kijko,
    capability: ServiceCapability,
    tick_id: str,
    org_id: UUID,
    due: list[asyncpg.Record],
    following: _Following,
) -> list[_Outcome]:
    """Start the due habits' executions in one service session of their organization. The
    habits' rows are locked by the claiming transaction: nothing here may write them.

    Fast path: the whole batch in one ``lifecycle.start_many`` (one statement per table).
    Should it raise (a bug, a broken row), that session rolls back and the batch runs again
    habit by habit with a savepoint each, so the one that fails stays due (retried next tick,
    logged) and the others fire."""
    try:
        return await _fire_in_session(kijko, capability, tick_id, org_id, due, following, careful=False)
    except Exception:
        log.warning("habits_fire_retried_one_by_one", organization_id=str(org_id))
        return await _fire_in_session(kijko, capability, tick_id, org_id, due, following, careful=True)


async def _fire_in_session(
    kijko: Kijko,
    capability: ServiceCapability,
    tick_id: str,
    org_id: UUID,
    due: list[asyncpg.Record],
    following: _Following,
    *,
    careful: bool,
) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    runs: list[lifecycle.Run] = []
    actor = ServiceActor(ACTOR_KIND, tick_id)
    async with service_session(kijko.app_db, capability, org_id, actor) as db:
        found: dict[UUID, tuple[Skill, dict[str, Any]] | None] = {}  # one read per skill of the batch
        for habit in due:
            try:
                skill_id: UUID = habit["skill_id"]
                if skill_id not in found:
                    skill = await skill_repository.get(db, org_id, skill_id)  # type: ignore[arg-type]
                    found[skill_id] = None if skill is None else (skill, skills.snapshot(skill))
                outcome, run = _prepare(habit, found[skill_id], following)
                if run is not None and careful:
                    async with db.savepoint():
                        await lifecycle.start_many(db, [run], plans=kijko.plans)
                elif run is not None:
                    runs.append(run)
                outcomes.append(outcome)
            except Exception:
                if not careful:
                    raise
                log.exception("habit_fire_failed", habit_id=str(habit["id"]))  # stays due: next tick
        # Without ``kijko``: the spend cap is the worker's admission's to check (the run then
        # ends failed with SPEND_CAP_REACHED), so no finish listener runs here, where the
        # habits are locked. The api_calls quota is counted here (``plans``): runs over it are
        # recorded failed with QUOTA_EXCEEDED. A None (this instant already fired by an interrupted tick) is
        # still a fire: the habit advances with it counted once.
        await lifecycle.start_many(db, runs, plans=kijko.plans)
    return outcomes


def _prepare(
    habit: asyncpg.Record, found: tuple[Skill, dict[str, Any]] | None, following: _Following
) -> tuple[_Outcome, lifecycle.Run | None]:
    """What firing ``habit`` means: its outcome, and the run to start (None: not run)."""
    habit_id: UUID = habit["id"]
    scheduled_for: datetime = habit["next_run_at"]
    after = following(habit["schedule_cron"], habit["timezone"])
    if found is None:  # cannot be: the habit goes with its skill (cascade)
        return _Outcome(habit_id, after, scheduled_for, fired=False, error="Skipped: the skill is gone"), None
    skill, snapshot = found
    if not skill.is_active:
        return _Outcome(habit_id, after, scheduled_for, fired=False, error=SKILL_INACTIVE_MESSAGE), None
    try:
        values = skills.validated_input(skill, snapshot, habit["config"])
    except ValidationFailed as error:
        # The config no longer fits the skill's input schema (the skill changed): a failed
        # run of the habit, counted towards deactivation; nothing is executed.
        message = f"The habit's config does not fit the skill's input: {error.message}"
        if error.field:
            message += f" ({error.field.replace('input', 'config', 1)})"
        return _Outcome(habit_id, after, scheduled_for, fired=False, error=message[:4000], failed=True), None
    run = lifecycle.Run(
        snapshot=snapshot,
        input=values,
        execution_type="habit",
        user_id=habit["user_id"],
        skill_id=skill.id,
        reference_id=habit_id,
        scheduled_for=scheduled_for,
    )
    return _Outcome(habit_id, after, scheduled_for, fired=True), run
