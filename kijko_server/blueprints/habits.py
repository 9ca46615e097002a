"""Contract §2.4: habits — CRUD, list, activate/deactivate, run-now, reset-errors, stats and
cron validation (``GET /habits/{id}/executions`` is the executions blueprint's). Static paths
(``/stats``, ``/validate-cron``) are routed before ``/<habit_id>``."""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint
from quart_schema import validate_querystring, validate_request

from kijko_core.errors import ValidationFailed
from kijko_core.habits import service
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
from kijko_core.skills.errors import SkillInactive, SkillNotFound
from kijko_core.wire import Success
from kijko_server.openapi import responds
from kijko_server.paths import entity_id
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("habits", __name__, url_prefix="/api/v1/habits")


def parse_habit_id(raw: str) -> UUID:
    """A habit id in a path: malformed is the same 404 as unknown."""
    return entity_id(raw, HabitNotFound)


def _min_interval() -> int:
    return runtime().settings.habit_min_interval_seconds


@bp.get("")
@responds(*TENANT_ERRORS)
@validate_querystring(HabitListQuery)
@validate_response(HabitPage)
async def habits_list(query_args: HabitListQuery) -> HabitPage:
    """The organization's habits with their skills: active first, then the next run soonest."""
    async with tenant(readonly=True) as db:
        return await service.list_habits(db, query_args)


@bp.post("")
@responds(*TENANT_ERRORS, SkillNotFound, InvalidCron, InvalidTimezone)  # 403 for viewers
@validate_request(CreateHabit)
@validate_response(Habit, 201)
async def habits_create(data: CreateHabit) -> tuple[Habit, int]:
    """Schedule a skill: five-field cron in an IANA time zone (docs/habits.md)."""
    async with tenant() as db:
        return await service.create(db, data, _min_interval()), 201


@bp.get("/stats")
@responds(*TENANT_ERRORS)
@validate_response(HabitStats)
async def habits_stats() -> HabitStats:
    """Counts over the organization's habits and the next five runs."""
    async with tenant(readonly=True) as db:
        return await service.stats(db)


@bp.post("/validate-cron")
@responds(*TENANT_ERRORS, InvalidTimezone)
@validate_request(ValidateCron)
@validate_response(CronValidation)
async def habits_validate_cron(data: ValidateCron) -> CronValidation:
    """Whether a schedule is accepted, why not, what it means and its next five runs (in
    ``timezone``, UTC when left out)."""
    async with tenant(readonly=True) as db:
        return await service.validate_cron(db, data, _min_interval())


@bp.get("/<habit_id>")
@responds(*TENANT_ERRORS, HabitNotFound)
@validate_response(Habit)
async def habits_get(habit_id: str) -> Habit:
    async with tenant(readonly=True) as db:
        return await service.get(db, parse_habit_id(habit_id))


@bp.get("/<habit_id>/full")
@responds(*TENANT_ERRORS, HabitNotFound)
@validate_response(HabitWithSkill)
async def habits_get_full(habit_id: str) -> HabitWithSkill:
    """The habit with its skill."""
    async with tenant(readonly=True) as db:
        return await service.get_full(db, parse_habit_id(habit_id))


@bp.put("/<habit_id>")
@bp.patch("/<habit_id>")
@responds(*TENANT_ERRORS, HabitNotFound, InvalidCron, InvalidTimezone)
@validate_request(UpdateHabit)
@validate_response(Habit)
async def habits_update(habit_id: str, data: UpdateHabit) -> Habit:
    """Change the schedule, zone, config or state; the next run follows (partial, PATCH alias)."""
    async with tenant() as db:
        return await service.update(db, parse_habit_id(habit_id), data, _min_interval())


@bp.delete("/<habit_id>")
@responds(*TENANT_ERRORS, HabitNotFound)
@validate_response(Success)
async def habits_delete(habit_id: str) -> Success:
    """Delete the habit (its executions stay in the history)."""
    async with tenant() as db:
        await service.delete(db, parse_habit_id(habit_id))
    return Success()


@bp.post("/<habit_id>/activate")
@responds(*TENANT_ERRORS, HabitNotFound)
@validate_response(Habit)
async def habits_activate(habit_id: str) -> Habit:
    """Active, next run from now, failures forgotten."""
    return await _set_active(habit_id, True)


@bp.post("/<habit_id>/deactivate")
@responds(*TENANT_ERRORS, HabitNotFound)
@validate_response(Habit)
async def habits_deactivate(habit_id: str) -> Habit:
    """Inactive: no next run."""
    return await _set_active(habit_id, False)


@bp.post("/<habit_id>/reset-errors")
@responds(*TENANT_ERRORS, HabitNotFound)
@validate_response(Habit)
async def habits_reset_errors(habit_id: str) -> Habit:
    """Failures forgotten, error cleared, active again with its next run from now."""
    return await _set_active(habit_id, True)


async def _set_active(habit_id: str, active: bool) -> Habit:
    """activate, reset-errors (the same) and deactivate."""
    async with tenant() as db:
        habit = parse_habit_id(habit_id)
        return await (service.activate(db, habit) if active else service.deactivate(db, habit))


@bp.post("/<habit_id>/run-now")
@responds(*TENANT_ERRORS, HabitNotFound, SkillInactive, ValidationFailed)
@validate_response(RunNowResponse)
async def habits_run_now(habit_id: str) -> RunNowResponse:
    """Run the habit once now, as the caller, with its config as the skill's input."""
    async with tenant() as db:
        return await service.run_now(db, parse_habit_id(habit_id), runtime())
