"""The rules of habits (contract §2.4; docs/habits.md): who may see and change them
(ARCHITECTURE §3: every member reads, members create and edit their own, owners and admins
all, viewers read), schedules validated and their next run computed in the habit's time zone
from the database's clock."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kijko_core import auto_disable as _auto_disable  # noqa: F401 — registers the finish listener
from kijko_core.db.session import Session, TenantSession
from kijko_core.errors import ValidationFailed
from kijko_core.executions import lifecycle
from kijko_core.habits import cron, repository
from kijko_core.habits.errors import HabitNotFound, InvalidCron, InvalidTimezone
from kijko_core.habits.models import (
    CreateHabit,
    CronValidation,
    Habit,
    HabitListQuery,
    HabitPage,
    HabitStats,
    HabitWithSkill,
    RunNowResponse,
    UpdateHabit,
    ValidateCron,
)
from kijko_core.permissions import HABITS, Action, authorize
from kijko_core.skills import service as skills
from kijko_core.skills.errors import SkillNotFound
from kijko_core.skills.models import Skill

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

#: Fire instants ``validate-cron`` previews (contract §2.4).
PREVIEW_RUNS = 5


# --- schedules ----------------------------------------------------------------------------------


def checked_schedule(expression: str, timezone: str, min_interval_seconds: int) -> tuple[cron.Schedule, Any]:
    """The schedule and zone, or ``INVALID_CRON`` / ``INVALID_TIMEZONE`` (422)."""
    try:
        schedule = cron.parse(expression)
    except cron.CronInvalid as error:
        raise InvalidCron(str(error)) from None
    too_short = cron.min_interval_seconds(schedule, min_interval_seconds)
    if too_short is not None:
        raise InvalidCron(
            f"This schedule fires {too_short} seconds apart; the shortest interval allowed is"
            f" {min_interval_seconds} seconds"
        )
    try:
        zone = cron.zone(timezone)
    except cron.CronInvalid as error:
        raise InvalidTimezone(str(error)) from None
    return schedule, zone


def next_run(expression: str, timezone: str, after: datetime) -> datetime:
    """The first fire instant after ``after`` of a stored (valid) schedule."""
    return cron.next_after(cron.parse(expression), cron.zone(timezone), after)


async def validate_cron(db: Session, data: ValidateCron, min_interval_seconds: int) -> CronValidation:
    """``isValid`` with the reason, the description and the next five runs (in ``timezone``)."""
    try:
        schedule, zone = checked_schedule(data.cron, data.timezone, min_interval_seconds)
    except InvalidTimezone:
        raise
    except InvalidCron as error:
        return CronValidation(is_valid=False, error=error.message)
    now = await repository.now(db)
    return CronValidation(
        is_valid=True,
        description=cron.describe(schedule),
        next_runs=cron.next_runs(schedule, zone, now, PREVIEW_RUNS),
    )


def as_config_error(error: ValidationFailed) -> ValidationFailed:
    """The skill's input check of the habit's config, naming ``config.<name>`` (the habit's
    field) instead of ``input.<name>``."""
    field = error.field or "config"
    if field == "input" or field.startswith("input."):
        field = "config" + field[len("input") :]
    return ValidationFailed(error.message, field=field, code=error.code)


# --- reads --------------------------------------------------------------------------------------


async def for_skill(db: Session, skill_id: UUID) -> list[Habit]:
    """The habits of one skill of the session's organization (``/skills/{id}/full``), active
    first, then by next run."""
    return await repository.for_skill(db, skill_id)


async def _readable(db: TenantSession, habit_id: UUID, *, for_update: bool = False) -> Habit:
    habit = await repository.get(db, habit_id, for_update=for_update)
    if habit is None:
        raise HabitNotFound()
    authorize(db.principal, Action.READ, habit, policy=HABITS)
    return habit


async def _editable(db: TenantSession, habit_id: UUID, action: Action = Action.EDIT) -> Habit:
    habit = await _readable(db, habit_id, for_update=True)
    authorize(db.principal, action, habit, policy=HABITS)
    return habit


async def get(db: TenantSession, habit_id: UUID) -> Habit:
    return await _readable(db, habit_id)


async def _skills(db: TenantSession, habits: list[Habit]) -> dict[UUID, Skill]:
    found: dict[UUID, Skill] = {}
    for skill_id in dict.fromkeys(habit.skill_id for habit in habits):
        found[skill_id] = await skills.get(db, skill_id)
    return found


def _with_skill(habit: Habit, skill: Skill) -> HabitWithSkill:
    # From the fields, not a dump: dumping writes the wire form (no creator → "").
    return HabitWithSkill.model_validate({**dict(habit), "skill": skill})


async def get_full(db: TenantSession, habit_id: UUID) -> HabitWithSkill:
    habit = await _readable(db, habit_id)
    return _with_skill(habit, (await _skills(db, [habit]))[habit.skill_id])


async def list_habits(db: TenantSession, query: HabitListQuery) -> HabitPage:
    authorize(db.principal, Action.READ, policy=HABITS)
    habits, total = await repository.list_page(
        db, query.skill_id, query.is_active, limit=query.page_size, offset=query.offset
    )
    found = await _skills(db, habits)
    return HabitPage(
        habits=[_with_skill(habit, found[habit.skill_id]) for habit in habits],
        total=total,
        page=query.page,
        page_size=query.page_size,
        has_more=query.offset + len(habits) < total,
    )


async def stats(db: TenantSession) -> HabitStats:
    authorize(db.principal, Action.READ, policy=HABITS)
    return await repository.stats(db)


# --- changes ------------------------------------------------------------------------------------


async def _skill_of_organization(db: TenantSession, skill_id: UUID) -> Skill:
    try:
        return await skills.get(db, skill_id)
    except SkillNotFound:
        raise SkillNotFound(field="skillId") from None


async def create(db: TenantSession, data: CreateHabit, min_interval_seconds: int) -> Habit:
    authorize(db.principal, Action.CREATE, policy=HABITS)
    schedule, zone = checked_schedule(data.schedule_cron, data.timezone, min_interval_seconds)
    await _skill_of_organization(db, data.skill_id)
    now = await repository.now(db)
    return await repository.insert(
        db,
        skill_id=data.skill_id,
        schedule_cron=schedule.expression,
        schedule_description=data.schedule_description,
        timezone=data.timezone,
        config=data.config,
        is_active=data.is_active,
        next_run_at=cron.next_after(schedule, zone, now) if data.is_active else None,
    )


async def _save(db: TenantSession, habit: Habit, changes: dict[str, Any]) -> Habit:
    updated = await repository.update(db, habit.id, changes)
    if updated is None:  # deleted between the lock and now: cannot happen under the lock
        raise HabitNotFound()
    return updated


async def update(db: TenantSession, habit_id: UUID, data: UpdateHabit, min_interval_seconds: int) -> Habit:
    habit = await _editable(db, habit_id)
    changes: dict[str, Any] = {key: getattr(data, key) for key in data.model_fields_set if key in repository.UPDATABLE}
    expression = changes.get("schedule_cron", habit.schedule_cron)
    timezone = changes.get("timezone", habit.timezone)
    active = changes.get("is_active", habit.is_active)
    rescheduled = {"schedule_cron", "timezone"} & changes.keys() or active != habit.is_active
    if {"schedule_cron", "timezone"} & changes.keys():
        schedule, _ = checked_schedule(expression, timezone, min_interval_seconds)
        changes["schedule_cron"] = expression = schedule.expression
    if rescheduled:
        changes["next_run_at"] = next_run(expression, timezone, await repository.now(db)) if active else None
    if active and not habit.is_active:
        # Switched on again: like activate, the failures are forgotten (else a habit turned off
        # for failing would be turned off again by the next tick).
        changes |= {"consecutive_failures": 0, "last_error_message": None}
    return await _save(db, habit, changes)


async def delete(db: TenantSession, habit_id: UUID) -> None:
    await _editable(db, habit_id, Action.DELETE)
    await repository.delete(db, habit_id)


async def activate(db: TenantSession, habit_id: UUID) -> Habit:
    """Active again with its next run computed from now, the failures forgotten (activate and
    reset-errors answer the same, contract §2.4)."""
    habit = await _editable(db, habit_id)
    now = await repository.now(db)
    return await _save(
        db,
        habit,
        {
            "is_active": True,
            "next_run_at": next_run(habit.schedule_cron, habit.timezone, now),
            "consecutive_failures": 0,
            "last_error_message": None,
        },
    )


async def deactivate(db: TenantSession, habit_id: UUID) -> Habit:
    habit = await _editable(db, habit_id)
    return await _save(db, habit, {"is_active": False, "next_run_at": None})


async def run_now(db: TenantSession, habit_id: UUID, kijko: Kijko) -> RunNowResponse:
    """Run the habit once now, as the caller (who may edit it), with its config as input;
    ``SKILL_INACTIVE`` (409) when its skill is inactive. Counted like a scheduled run."""
    habit = await _editable(db, habit_id)
    try:
        skill, snapshot, values = await skills.runnable(db, habit.skill_id, habit.config, require_active=True)
    except ValidationFailed as error:
        raise as_config_error(error) from None
    execution_id = await lifecycle.start(
        db,
        snapshot=snapshot,
        input=values,
        execution_type="habit",
        user_id=db.principal.user_id,
        skill_id=skill.id,
        reference_id=habit.id,
        kijko=kijko,
    )
    # Counted like a scheduled run by the insert itself (run_count, last_run_at: migration 0022).
    assert execution_id is not None  # only a scheduled fire (scheduled_for) can already exist
    return RunNowResponse(execution_id=execution_id, status="queued", message="The habit's run is queued")
