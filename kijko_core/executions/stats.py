"""Execution statistics (contract §2.3 ``/skills/stats``, §2.6 stats, cost breakdown,
performance, cost projection, §2.7 skill stats; docs/execution-history.md).

Every figure is computed in SQL over the organization's executions; the rules:

- Tokens, costs and durations are summed over **completed** executions only (the contract's
  rule); counts cover every status.
- Money is summed unrounded (``numeric``) and rounded once per figure to whole cents, half to
  even (``prices.cents``), in the **reporting currency** (:func:`reporting_currency`, decision
  0112): an execution priced in another currency counts in runs and tokens, not in money.
- Days are UTC dates taken from the database clock; a series of days has one row per day,
  oldest first, days without executions included.
- Enum-keyed maps carry every key, 0 when empty.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any, Final, Literal
from uuid import UUID

from pydantic import Field, model_validator

from kijko_core import prices
from kijko_core.db import sql
from kijko_core.executions.models import EXECUTION_STATUSES, EXECUTION_TYPES
from kijko_core.executions.queries import FILTERS, Db, org_id, require_skill
from kijko_core.prices import PriceTable
from kijko_core.wire import WireInput, WireModel

#: Days of ``dailyExecutions`` (``/executions/stats``) and ``costByDay`` (``/cost-breakdown``).
STATS_DAYS: Final = 14
COST_DAYS: Final = 30
#: The window the cost projection averages over.
PROJECTION_WINDOW_DAYS: Final = 30
#: Longest per-skill list of a breakdown (the largest first).
BREAKDOWN_MAX: Final = 100
TOP_SKILLS: Final = 5
PERIODS: Final[dict[str, int]] = {"7d": 7, "30d": 30, "90d": 90}
Period = Literal["7d", "30d", "90d"]


def reporting_currency(table: PriceTable) -> str:
    """The currency money figures are given in: the one most models of the price table are
    priced in (ties: alphabetically first). The shipped table is all US dollars → ``usd``."""
    counts = Counter(price.currency for model in table.models if (price := table.get(model)) is not None)
    if not counts:
        return "usd"
    return min(counts, key=lambda currency: (-counts[currency], currency))


def percent(part: int, whole: int) -> int:
    """``part`` of ``whole`` as a whole percentage 0–100, half to even; 0 of nothing is 0."""
    if whole == 0:
        return 0
    return int((Decimal(100 * part) / Decimal(whole)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def whole(value: Decimal | float | None) -> int:
    """A mean or percentile in whole units (milliseconds, tokens), half away from zero."""
    if value is None:
        return 0
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --- SQL -------------------------------------------------------------------------------------

_COMPLETED = "e.status = 'completed'"
_TOKENS = "COALESCE(e.prompt_tokens, 0) + COALESCE(e.completion_tokens, 0)"
# $8: a number of UTC days up to today (inclusive), or null for all time.
_SINCE = sql.Fragment(
    "($8::int IS NULL OR e.executed_at >= ((now() AT TIME ZONE 'UTC')::date - ($8::int - 1))::timestamp"
    " AT TIME ZONE 'UTC')"
)
_BY_ENUM = sql.Fragment(
    ",\n    ".join(
        [f"count(*) FILTER (WHERE e.status = '{status}') AS status_{status}" for status in EXECUTION_STATUSES]
        + [f"count(*) FILTER (WHERE e.execution_type = '{kind}') AS type_{kind}" for kind in EXECUTION_TYPES]
        + [
            f"COALESCE(sum(e.cost) FILTER (WHERE {_COMPLETED} AND e.currency = $7"
            f" AND e.execution_type = '{kind}'), 0) AS cost_{kind}"
            for kind in EXECUTION_TYPES
        ]
    )
)

#: Totals over the filtered executions: $1–$6 ``FILTERS``, $7 the currency, $8 ``_SINCE``.
_TOTALS = sql.compose(
    "SELECT count(*) AS total,"
    "\n    COALESCE(sum({tokens}) FILTER (WHERE {completed}), 0)::bigint AS tokens,"
    "\n    round(avg({tokens}) FILTER (WHERE {completed})) AS avg_tokens,"
    "\n    COALESCE(sum(e.cost) FILTER (WHERE {completed} AND e.currency = $7), 0) AS cost,"
    "\n    round(avg(e.duration_ms) FILTER (WHERE {completed})) AS avg_duration,"
    "\n    {by_enum}"
    "\nFROM kijko.skill_executions e\nWHERE {filters} AND {since}",
    tokens=sql.Fragment(_TOKENS),
    completed=sql.Fragment(_COMPLETED),
    by_enum=_BY_ENUM,
    filters=FILTERS,
    since=_SINCE,
)

#: One row per UTC day of the last $8 days (oldest first), with the filters $1–$6.
_DAILY = sql.compose(
    "WITH days AS ("
    "\n    SELECT generate_series((now() AT TIME ZONE 'UTC')::date - ($8::int - 1),"
    " (now() AT TIME ZONE 'UTC')::date, interval '1 day')::date AS day"
    "\n), hits AS ("
    "\n    SELECT (e.executed_at AT TIME ZONE 'UTC')::date AS day, e.status, e.cost, e.currency,"
    " {tokens} AS tokens"
    "\n    FROM kijko.skill_executions e\n    WHERE {filters} AND {since}"
    "\n)"
    "\nSELECT days.day, count(hits.day) AS count,"
    "\n    count(*) FILTER (WHERE hits.status = 'completed') AS success_count,"
    "\n    count(*) FILTER (WHERE hits.status = 'failed') AS failure_count,"
    "\n    COALESCE(sum(hits.tokens) FILTER (WHERE hits.status = 'completed'), 0)::bigint AS tokens,"
    "\n    COALESCE(sum(hits.cost) FILTER (WHERE hits.status = 'completed' AND hits.currency = $7), 0) AS cost"
    "\nFROM days LEFT JOIN hits USING (day)\nGROUP BY days.day\nORDER BY days.day",
    tokens=sql.Fragment(_TOKENS),
    filters=FILTERS,
    since=_SINCE,
)

# A skill's key in breakdowns: its id, or for a deleted skill the id its snapshots recorded
# (each deleted skill stays its own row, named as its newest execution knew it).
_BY_SKILL = sql.Fragment(
    "SELECT e.skill_id,"
    "\n    (array_agg(COALESCE(s.name, e.snapshot ->> 'skillName') ORDER BY e.executed_at DESC, e.id DESC))[1]"
    " AS name,"
    "\n    count(*) AS runs,"
    "\n    COALESCE(sum(e.cost) FILTER (WHERE e.currency = $7), 0) AS cost"
    "\nFROM kijko.skill_executions e"
    "\nLEFT JOIN kijko.skills s ON s.organization_id = e.organization_id AND s.id = e.skill_id"
)
_SKILL_KEY = sql.Fragment("e.skill_id, COALESCE(e.skill_id::text, e.snapshot ->> 'skillId')")

#: ``costBySkill``: completed executions, the costliest first.
_COST_BY_SKILL = sql.compose(
    "{by_skill}\nWHERE {filters} AND {since} AND {completed}\nGROUP BY {key}"
    "\nORDER BY cost DESC, runs DESC, {key}\nLIMIT $9",
    by_skill=_BY_SKILL,
    filters=FILTERS,
    since=_SINCE,
    completed=sql.Fragment(_COMPLETED),
    key=_SKILL_KEY,
)
#: ``skillBreakdown``: every execution, the most run first.
_RUNS_BY_SKILL = sql.compose(
    "{by_skill}\nWHERE {filters} AND {since}\nGROUP BY {key}\nORDER BY runs DESC, {key}\nLIMIT $9",
    by_skill=_BY_SKILL,
    filters=FILTERS,
    since=_SINCE,
    key=_SKILL_KEY,
)

_SKILL_COUNTS = (
    "SELECT count(*) AS total, count(*) FILTER (WHERE is_active) AS active FROM kijko.skills WHERE organization_id = $1"
)
_TOP_SKILLS = (
    "SELECT e.skill_id, s.name, count(*) AS count"
    "\nFROM kijko.skill_executions e"
    "\nJOIN kijko.skills s ON s.organization_id = e.organization_id AND s.id = e.skill_id"
    "\nWHERE e.organization_id = $1"
    "\nGROUP BY e.skill_id, s.name\nORDER BY count DESC, s.name, e.skill_id\nLIMIT $2"
)

_PERFORMANCE = (
    "SELECT count(*) FILTER (WHERE e.status = 'completed') AS completed,"
    "\n    count(*) FILTER (WHERE e.status = 'failed') AS failed,"
    "\n    round(avg(e.duration_ms) FILTER (WHERE e.status = 'completed')) AS avg_duration,"
    "\n    percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY e.duration_ms)"
    "\n        FILTER (WHERE e.status = 'completed') AS percentiles"
    "\nFROM kijko.skill_executions e"
    "\nWHERE e.organization_id = $1 AND ($2::uuid IS NULL OR e.skill_id = $2)"
)
_BY_HOUR = (
    "SELECT extract(hour FROM e.executed_at AT TIME ZONE 'UTC')::int AS hour,"
    "\n    round(avg(e.duration_ms)) AS avg_duration"
    "\nFROM kijko.skill_executions e"
    "\nWHERE e.organization_id = $1 AND ($2::uuid IS NULL OR e.skill_id = $2)"
    "\n  AND e.status = 'completed' AND e.duration_ms IS NOT NULL"
    "\nGROUP BY 1\nORDER BY 1"
)

_PROJECTION = (
    "SELECT count(*) AS runs,"
    "\n    COALESCE(sum(e.cost) FILTER (WHERE e.status = 'completed' AND e.currency = $2), 0) AS cost"
    "\nFROM kijko.skill_executions e"
    "\nWHERE e.organization_id = $1 AND e.executed_at > now() - make_interval(days => $3)"
)


def _filters(
    db: Db, skill_id: UUID | None = None, start: datetime | None = None, end: datetime | None = None
) -> list[Any]:
    return [org_id(db), skill_id, None, None, start, end]


# --- wire models -----------------------------------------------------------------------------


class ByStatus(WireModel):
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class ByType(WireModel):
    manual: int = 0
    habit: int = 0
    reflex: int = 0
    api: int = 0


def _by_status(row: Any) -> ByStatus:
    return ByStatus(**{status: row[f"status_{status}"] for status in EXECUTION_STATUSES})


def _by_type(row: Any) -> ByType:
    return ByType(**{kind: row[f"type_{kind}"] for kind in EXECUTION_TYPES})


class StatsQuery(WireInput):
    """``/executions/stats``: inclusive bounds on ``executedAt`` and a skill."""

    start_date: datetime | None = None
    end_date: datetime | None = None
    skill_id: UUID | None = None

    @model_validator(mode="after")
    def _dates_have_zones(self) -> StatsQuery:
        for value in (self.start_date, self.end_date):
            if value is not None and value.tzinfo is None:
                raise ValueError("dates need a time zone (UTC 'Z' or an offset)")
        return self


class CostQuery(WireInput):
    start_date: datetime | None = None
    end_date: datetime | None = None

    @model_validator(mode="after")
    def _dates_have_zones(self) -> CostQuery:
        for value in (self.start_date, self.end_date):
            if value is not None and value.tzinfo is None:
                raise ValueError("dates need a time zone (UTC 'Z' or an offset)")
        return self


class DayCount(WireModel):
    date: date
    count: int
    tokens: int


class ExecutionStats(WireModel):
    total_executions: int
    successful_executions: int
    failed_executions: int
    cancelled_executions: int
    total_tokens_used: int
    total_cost_cents: int
    average_duration_ms: int
    executions_by_type: ByType
    executions_by_status: ByStatus
    daily_executions: list[DayCount]
    currency: str


class SkillCost(WireModel):
    #: Null for a deleted skill (its executions keep their history).
    skill_id: UUID | None
    skill_name: str
    cost_cents: int
    execution_count: int


class DayCost(WireModel):
    date: date
    cost_cents: int


class CostByType(WireModel):
    manual: int
    habit: int
    reflex: int
    api: int


class CostBreakdown(WireModel):
    total_cost_cents: int
    cost_by_skill: list[SkillCost]
    cost_by_type: CostByType
    cost_by_day: list[DayCost]
    currency: str


class PerformanceQuery(WireInput):
    skill_id: UUID | None = None


class HourDuration(WireModel):
    hour: int
    avg_duration_ms: int


class Performance(WireModel):
    average_duration_ms: int
    p50_duration_ms: int
    p90_duration_ms: int
    p99_duration_ms: int
    success_rate: int
    duration_by_hour: list[HourDuration]


class ProjectionQuery(WireInput):
    days_ahead: int = Field(default=30, ge=1, le=365)


class CostProjection(WireModel):
    projected_cost_cents: int
    projected_runs: int
    #: In cents, like every money figure.
    average_daily_cost: int
    currency: str


class TopSkill(WireModel):
    skill_id: UUID
    name: str
    count: int


class SkillStats(WireModel):
    """``GET /skills/stats`` (contract §2.3): the organization's skills and all their runs."""

    total_skills: int
    active_skills: int
    total_executions: int
    total_tokens_used: int
    total_cost_cents: int
    executions_by_status: ByStatus
    executions_by_type: ByType
    top_skills_by_usage: list[TopSkill]
    currency: str


class PeriodQuery(WireInput):
    period: Period = "30d"


class StatsOverview(WireModel):
    total_runs: int
    success_rate: int
    avg_tokens: int
    avg_duration_ms: int
    total_cost_cents: int


class DailyExecution(WireModel):
    date: date
    count: int
    success_count: int
    failure_count: int
    tokens: int
    cost_cents: int


class SkillStatsResponse(WireModel):
    """``GET /skills/:id/stats?period=`` (contract §2.7)."""

    overview: StatsOverview
    executions_over_time: list[DailyExecution]
    executions_by_type: ByType
    executions_by_status: ByStatus
    currency: str


class SkillRuns(WireModel):
    skill_id: UUID | None
    name: str
    runs: int


class AggregatedStats(SkillStatsResponse):
    """``GET /skills/stats/overview?period=``: every skill's runs together, and per skill."""

    skill_breakdown: list[SkillRuns]


_UNKNOWN_SKILL = "Deleted skill"


# --- computations ----------------------------------------------------------------------------


async def execution_stats(db: Db, query: StatsQuery, currency: str) -> ExecutionStats:
    """``/executions/stats``; ``dailyExecutions`` are the last 14 UTC days within the filters."""
    args = _filters(db, query.skill_id, query.start_date, query.end_date)
    totals = await db.fetchrow(_TOTALS, *args, currency, None)
    assert totals is not None
    daily = await db.fetch(_DAILY, *args, currency, STATS_DAYS)
    return ExecutionStats(
        total_executions=totals["total"],
        successful_executions=totals["status_completed"],
        failed_executions=totals["status_failed"],
        cancelled_executions=totals["status_cancelled"],
        total_tokens_used=totals["tokens"],
        total_cost_cents=prices.cents(totals["cost"]),
        average_duration_ms=whole(totals["avg_duration"]),
        executions_by_type=_by_type(totals),
        executions_by_status=_by_status(totals),
        daily_executions=[DayCount(date=row["day"], count=row["count"], tokens=row["tokens"]) for row in daily],
        currency=currency,
    )


async def cost_breakdown(db: Db, query: CostQuery, currency: str) -> CostBreakdown:
    """``/executions/cost-breakdown``: completed executions within the dates."""
    args = _filters(db, None, query.start_date, query.end_date)
    totals = await db.fetchrow(_TOTALS, *args, currency, None)
    assert totals is not None
    skills = await db.fetch(_COST_BY_SKILL, *args, currency, None, BREAKDOWN_MAX)
    daily = await db.fetch(_DAILY, *args, currency, COST_DAYS)
    return CostBreakdown(
        total_cost_cents=prices.cents(totals["cost"]),
        cost_by_skill=[
            SkillCost(
                skill_id=row["skill_id"],
                skill_name=row["name"] or _UNKNOWN_SKILL,
                cost_cents=prices.cents(row["cost"]),
                execution_count=row["runs"],
            )
            for row in skills
        ],
        cost_by_type=CostByType(**{kind: prices.cents(totals[f"cost_{kind}"]) for kind in EXECUTION_TYPES}),
        cost_by_day=[DayCost(date=row["day"], cost_cents=prices.cents(row["cost"])) for row in daily],
        currency=currency,
    )


async def performance(db: Db, skill_id: UUID | None) -> Performance:
    """``/executions/performance``: durations of completed executions (percentiles by
    ``percentile_cont``, linear interpolation, in SQL), success rate over finished ones."""
    row = await db.fetchrow(_PERFORMANCE, org_id(db), skill_id)
    assert row is not None
    p50, p90, p99 = row["percentiles"] or (None, None, None)
    hours = await db.fetch(_BY_HOUR, org_id(db), skill_id)
    return Performance(
        average_duration_ms=whole(row["avg_duration"]),
        p50_duration_ms=whole(p50),
        p90_duration_ms=whole(p90),
        p99_duration_ms=whole(p99),
        success_rate=percent(row["completed"], row["completed"] + row["failed"]),
        duration_by_hour=[HourDuration(hour=h["hour"], avg_duration_ms=whole(h["avg_duration"])) for h in hours],
    )


async def cost_projection(db: Db, days_ahead: int, currency: str) -> CostProjection:
    """``/executions/cost-projection``: the last 30 days' daily average, times ``daysAhead``
    (runs: every execution started; cost: completed ones, like the breakdown)."""
    row = await db.fetchrow(_PROJECTION, org_id(db), currency, PROJECTION_WINDOW_DAYS)
    assert row is not None
    window = Decimal(PROJECTION_WINDOW_DAYS)
    daily_cost: Decimal = row["cost"] / window
    runs = (Decimal(row["runs"]) * days_ahead / window).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return CostProjection(
        projected_cost_cents=prices.cents(row["cost"] * days_ahead / window),
        projected_runs=int(runs),
        average_daily_cost=prices.cents(daily_cost),
        currency=currency,
    )


async def skill_stats(db: Db, currency: str) -> SkillStats:
    """``/skills/stats``: the organization's skills, and all executions of all time."""
    counts = await db.fetchrow(_SKILL_COUNTS, org_id(db))
    totals = await db.fetchrow(_TOTALS, *_filters(db), currency, None)
    assert counts is not None and totals is not None
    top = await db.fetch(_TOP_SKILLS, org_id(db), TOP_SKILLS)
    return SkillStats(
        total_skills=counts["total"],
        active_skills=counts["active"],
        total_executions=totals["total"],
        total_tokens_used=totals["tokens"],
        total_cost_cents=prices.cents(totals["cost"]),
        executions_by_status=_by_status(totals),
        executions_by_type=_by_type(totals),
        top_skills_by_usage=[TopSkill(skill_id=r["skill_id"], name=r["name"], count=r["count"]) for r in top],
        currency=currency,
    )


async def _period_stats(db: Db, skill_id: UUID | None, days: int, currency: str) -> dict[str, Any]:
    args = _filters(db, skill_id)
    totals = await db.fetchrow(_TOTALS, *args, currency, days)
    assert totals is not None
    daily = await db.fetch(_DAILY, *args, currency, days)
    finished = totals["status_completed"] + totals["status_failed"]
    return {
        "overview": StatsOverview(
            total_runs=totals["total"],
            success_rate=percent(totals["status_completed"], finished),
            avg_tokens=whole(totals["avg_tokens"]),
            avg_duration_ms=whole(totals["avg_duration"]),
            total_cost_cents=prices.cents(totals["cost"]),
        ),
        "executions_over_time": [
            DailyExecution(
                date=row["day"],
                count=row["count"],
                success_count=row["success_count"],
                failure_count=row["failure_count"],
                tokens=row["tokens"],
                cost_cents=prices.cents(row["cost"]),
            )
            for row in daily
        ],
        "executions_by_type": _by_type(totals),
        "executions_by_status": _by_status(totals),
        "currency": currency,
    }


async def skill_period_stats(db: Db, skill_id: UUID, period: Period, currency: str) -> SkillStatsResponse:
    """``/skills/:id/stats``: the skill's executions of the last 7, 30 or 90 UTC days."""
    await require_skill(db, skill_id)
    return SkillStatsResponse(**await _period_stats(db, skill_id, PERIODS[period], currency))


async def overview_stats(db: Db, period: Period, currency: str) -> AggregatedStats:
    """``/skills/stats/overview``: every skill's executions of the period, and per skill."""
    days = PERIODS[period]
    breakdown = await db.fetch(_RUNS_BY_SKILL, *_filters(db), currency, days, BREAKDOWN_MAX)
    return AggregatedStats(
        **await _period_stats(db, None, days, currency),
        skill_breakdown=[
            SkillRuns(skill_id=row["skill_id"], name=row["name"] or _UNKNOWN_SKILL, runs=row["runs"])
            for row in breakdown
        ],
    )
