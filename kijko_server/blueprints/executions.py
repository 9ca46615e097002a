"""Contract §2.6 and §2.7 (read side): execution history, its statistics, export and cleanup,
the histories of a skill, a habit and a reflex, and the skills' statistics
(docs/execution-history.md). Starting, cancelling and retrying executions are runs.py's.

The static paths (``/executions/stats``, ``/skills/stats``, ``/skills/stats/overview``…) win
over the ``<id>`` rules: Werkzeug's router tries a static segment before a variable one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from pydantic import Field, RootModel
from quart import Blueprint
from quart_schema import validate_querystring

from kijko_core.db.session import TenantSession
from kijko_core.errors import NotFound, ValidationFailed
from kijko_core.executions import export as exports
from kijko_core.executions import queries, stats
from kijko_core.executions.errors import ExecutionNotFound
from kijko_core.executions.models import (
    ExecutionFilters,
    ExecutionList,
    ExecutionWithSkill,
    History,
    HistoryQuery,
    RecentQuery,
    SkillExecution,
    SkillHistory,
    SkillHistoryQuery,
)
from kijko_core.habits.errors import HabitNotFound
from kijko_core.reflexes.errors import ReflexNotFound
from kijko_core.skills.errors import SkillNotFound
from kijko_core.wire import WireInput, WireModel
from kijko_server.openapi import responds
from kijko_server.paths import entity_id
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("executions", __name__, url_prefix="/api/v1")


def _currency() -> str:
    return stats.reporting_currency(runtime().prices)


class ExecutionsWithSkill(RootModel[list[ExecutionWithSkill]]):
    pass


class CleanupQuery(WireInput):
    older_than_days: int = Field(default=90, ge=1, le=36_500)


class CleanupResult(WireModel):
    deleted_count: int
    #: The deleted rows' size in MiB (two decimals); PostgreSQL reuses the space for new rows.
    freed_space_mb: float


# --- /executions ------------------------------------------------------------------------------


@bp.get("/executions")
@responds(*TENANT_ERRORS)
@validate_querystring(ExecutionFilters)
@validate_response(ExecutionList)
async def executions_list(query_args: ExecutionFilters) -> ExecutionList:
    """The organization's executions, newest first (id as tie-breaker), with filters; dates
    are inclusive bounds on ``executedAt``."""
    async with tenant(readonly=True) as db:
        return await queries.list_executions(db, query_args)


@bp.get("/executions/recent")
@responds(*TENANT_ERRORS)
@validate_querystring(RecentQuery)
@validate_response(ExecutionsWithSkill)
async def executions_recent(query_args: RecentQuery) -> ExecutionsWithSkill:
    """The newest executions (``limit``, default 10)."""
    async with tenant(readonly=True) as db:
        return ExecutionsWithSkill(await queries.recent(db, query_args.limit))


@bp.get("/executions/running")
@responds(*TENANT_ERRORS)
@validate_response(ExecutionsWithSkill)
async def executions_running() -> ExecutionsWithSkill:
    """Pending and running executions, oldest first (at most 500)."""
    async with tenant(readonly=True) as db:
        return ExecutionsWithSkill(await queries.running(db))


@bp.get("/executions/stats")
@responds(*TENANT_ERRORS)
@validate_querystring(stats.StatsQuery)
@validate_response(stats.ExecutionStats)
async def executions_stats(query_args: stats.StatsQuery) -> stats.ExecutionStats:
    """Counts by status and type; tokens, cost and mean duration of completed executions;
    the last 14 UTC days."""
    async with tenant(readonly=True) as db:
        return await stats.execution_stats(db, query_args, _currency())


@bp.get("/executions/cost-breakdown")
@responds(*TENANT_ERRORS)
@validate_querystring(stats.CostQuery)
@validate_response(stats.CostBreakdown)
async def executions_cost_breakdown(query_args: stats.CostQuery) -> stats.CostBreakdown:
    """What completed executions cost, per skill (costliest first), per type and per UTC day
    (the last 30)."""
    async with tenant(readonly=True) as db:
        return await stats.cost_breakdown(db, query_args, _currency())


@bp.get("/executions/performance")
@responds(*TENANT_ERRORS)
@validate_querystring(stats.PerformanceQuery)
@validate_response(stats.Performance)
async def executions_performance(query_args: stats.PerformanceQuery) -> stats.Performance:
    """Durations of completed executions (mean, p50/p90/p99, per UTC hour) and the success
    rate over completed and failed ones."""
    async with tenant(readonly=True) as db:
        return await stats.performance(db, query_args.skill_id)


@bp.get("/executions/cost-projection")
@responds(*TENANT_ERRORS)
@validate_querystring(stats.ProjectionQuery)
@validate_response(stats.CostProjection)
async def executions_cost_projection(query_args: stats.ProjectionQuery) -> stats.CostProjection:
    """The last 30 days' daily average of runs and cost, projected ``daysAhead`` days."""
    async with tenant(readonly=True) as db:
        return await stats.cost_projection(db, query_args.days_ahead, _currency())


@bp.get("/executions/export")
@responds(*TENANT_ERRORS)
@validate_querystring(exports.ExportQuery)
@validate_response(exports.Export)
async def executions_export(query_args: exports.ExportQuery) -> exports.Export:
    """The filtered executions (at most 10,000, newest first) as CSV or JSON text."""
    async with tenant(readonly=True) as db:
        return await exports.export(db, query_args)


@bp.delete("/executions/cleanup")
@responds(*TENANT_ERRORS)  # 403 for members and viewers
@validate_querystring(CleanupQuery)
@validate_response(CleanupResult)
async def executions_cleanup(query_args: CleanupQuery) -> CleanupResult:
    """Delete finished executions older than ``olderThanDays`` (owners and admins; at most
    10,000 per call, oldest first; pending and running ones are never deleted)."""
    async with tenant() as db:
        deleted, size = await queries.cleanup(db, query_args.older_than_days)
    return CleanupResult(deleted_count=deleted, freed_space_mb=round(size / 1_048_576, 2))


@bp.get("/executions/<execution_id>")
@responds(*TENANT_ERRORS, ExecutionNotFound)
@validate_response(SkillExecution)
async def executions_get(execution_id: str) -> SkillExecution:
    """One execution."""
    async with tenant(readonly=True) as db:
        return await queries.get(db, entity_id(execution_id, ExecutionNotFound))


@bp.get("/executions/<execution_id>/full")
@responds(*TENANT_ERRORS, ExecutionNotFound)
@validate_response(ExecutionWithSkill)
async def executions_get_full(execution_id: str) -> ExecutionWithSkill:
    """One execution with its skill (``null`` once the skill is deleted)."""
    async with tenant(readonly=True) as db:
        return await queries.full(db, entity_id(execution_id, ExecutionNotFound))


# --- histories --------------------------------------------------------------------------------


@bp.get("/skill-executions")
@responds(*TENANT_ERRORS, SkillNotFound)
@validate_querystring(SkillHistoryQuery)
@validate_response(SkillHistory)
async def executions_skill_history(query_args: SkillHistoryQuery) -> SkillHistory:
    """A skill's newest executions and whether there are more (the skill history tab)."""
    async with tenant(readonly=True) as db:
        if query_args.skill_id is None:
            raise ValidationFailed("skillId is required", field="skillId")
        await queries.require_skill(db, query_args.skill_id)
        found, total = await queries.for_skill(db, query_args.skill_id, query_args.limit, 0)
    return SkillHistory(executions=found, has_more=total > len(found))


_Require = Callable[[TenantSession, UUID], Awaitable[None]]
_Page = Callable[[TenantSession, UUID, int, int], Awaitable[tuple[list[SkillExecution], int]]]


async def _history(
    raw_id: str, not_found: type[NotFound], require: _Require, page: _Page, query: HistoryQuery
) -> History:
    """One history: the parent's 404 when its id is malformed or unknown, then the page."""
    async with tenant(readonly=True) as db:
        parent = entity_id(raw_id, not_found)
        await require(db, parent)
        found, total = await page(db, parent, query.limit, query.offset)
    return History(executions=found, total=total)


@bp.get("/skills/<skill_id>/executions")
@responds(*TENANT_ERRORS, SkillNotFound)
@validate_querystring(HistoryQuery)
@validate_response(History)
async def executions_of_skill(skill_id: str, query_args: HistoryQuery) -> History:
    """A skill's executions, newest first, and their total."""
    return await _history(skill_id, SkillNotFound, queries.require_skill, queries.for_skill, query_args)


@bp.get("/habits/<habit_id>/executions")
@responds(*TENANT_ERRORS, HabitNotFound)
@validate_querystring(HistoryQuery)
@validate_response(History)
async def executions_of_habit(habit_id: str, query_args: HistoryQuery) -> History:
    """The executions a habit started, newest first, and their total."""
    return await _history(habit_id, HabitNotFound, queries.require_habit, queries.for_reference, query_args)


@bp.get("/reflexes/<reflex_id>/executions")
@responds(*TENANT_ERRORS, ReflexNotFound)
@validate_querystring(HistoryQuery)
@validate_response(History)
async def executions_of_reflex(reflex_id: str, query_args: HistoryQuery) -> History:
    """The executions a reflex triggered, newest first, and their total."""
    return await _history(reflex_id, ReflexNotFound, queries.require_reflex, queries.for_reference, query_args)


# --- skills' statistics -------------------------------------------------------------------------


@bp.get("/skills/stats")
@responds(*TENANT_ERRORS)
@validate_response(stats.SkillStats)
async def executions_skill_stats() -> stats.SkillStats:
    """The organization's skills and all their executions (contract §2.3 ``SkillStats``)."""
    async with tenant(readonly=True) as db:
        return await stats.skill_stats(db, _currency())


@bp.get("/skills/stats/overview")
@responds(*TENANT_ERRORS)
@validate_querystring(stats.PeriodQuery)
@validate_response(stats.AggregatedStats)
async def executions_skills_overview(query_args: stats.PeriodQuery) -> stats.AggregatedStats:
    """Every skill's executions of the period (7d, 30d, 90d), per day and per skill."""
    async with tenant(readonly=True) as db:
        return await stats.overview_stats(db, query_args.period, _currency())


@bp.get("/skills/<skill_id>/stats")
@responds(*TENANT_ERRORS, SkillNotFound)
@validate_querystring(stats.PeriodQuery)
@validate_response(stats.SkillStatsResponse)
async def executions_skill_period_stats(skill_id: str, query_args: stats.PeriodQuery) -> stats.SkillStatsResponse:
    """One skill's executions of the period (7d, 30d, 90d), per day (contract §2.7)."""
    async with tenant(readonly=True) as db:
        return await stats.skill_period_stats(db, entity_id(skill_id, SkillNotFound), query_args.period, _currency())
