"""Reading executions (contract §2.6; docs/execution-history.md): lists with filters, one
execution, recent and running ones, and the histories of a skill, a habit and a reflex.

Executions are organization data: every member of the organization reads all of them
(row-level security keeps them to the organization; decision 0111). Lists are ordered by
``executedAt`` descending with the id as tie-breaker, so pages are stable.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from kijko_core import permissions
from kijko_core.db import sql
from kijko_core.db.session import ServiceSession, TenantSession
from kijko_core.errors import Forbidden
from kijko_core.executions.errors import ExecutionNotFound
from kijko_core.executions.models import (
    ROW_COLUMNS,
    RUNNING_MAX,
    ExecutionFilters,
    ExecutionList,
    ExecutionWithSkill,
    SkillExecution,
    execution_from_row,
    execution_with_skill_from_row,
)
from kijko_core.habits.errors import HabitNotFound
from kijko_core.reflexes.errors import ReflexNotFound
from kijko_core.skills.errors import SkillNotFound

Db = TenantSession | ServiceSession

_E = sql.Fragment(", ".join(f"e.{column}" for column in ROW_COLUMNS))
# The skill as it is now, as its JSON row (null once deleted): the skills' model reads it.
_WITH_SKILL = sql.Fragment(f"{_E}, to_jsonb(s) AS skill")
_JOINED = sql.Fragment(
    "FROM kijko.skill_executions e"
    "\nLEFT JOIN kijko.skills s ON s.organization_id = e.organization_id AND s.id = e.skill_id"
)
_ORDER = sql.Fragment("ORDER BY e.executed_at DESC, e.id DESC")

#: The filters of ``ExecutionFilters``: $1 organization, $2 skill, $3 status, $4 type, $5 from,
#: $6 to (inclusive); a null parameter does not filter.
FILTERS = sql.Fragment(
    "e.organization_id = $1"
    "\n  AND ($2::uuid IS NULL OR e.skill_id = $2)"
    "\n  AND ($3::text IS NULL OR e.status = $3)"
    "\n  AND ($4::text IS NULL OR e.execution_type = $4)"
    "\n  AND ($5::timestamptz IS NULL OR e.executed_at >= $5)"
    "\n  AND ($6::timestamptz IS NULL OR e.executed_at <= $6)"
)

_LIST = sql.compose(
    "SELECT {columns}, count(*) OVER () AS total\n{joined}\nWHERE {filters}\n{order}\nLIMIT $7 OFFSET $8",
    columns=_WITH_SKILL,
    joined=_JOINED,
    filters=FILTERS,
    order=_ORDER,
)
_COUNT = sql.compose("SELECT count(*) FROM kijko.skill_executions e WHERE {filters}", filters=FILTERS)

_GET = sql.compose(
    "SELECT {columns}\nFROM kijko.skill_executions e\nWHERE e.organization_id = $1 AND e.id = $2", columns=_E
)
_FULL = sql.compose(
    "SELECT {columns}\n{joined}\nWHERE e.organization_id = $1 AND e.id = $2", columns=_WITH_SKILL, joined=_JOINED
)
_RECENT = sql.compose(
    "SELECT {columns}\n{joined}\nWHERE e.organization_id = $1\n{order}\nLIMIT $2",
    columns=_WITH_SKILL,
    joined=_JOINED,
    order=_ORDER,
)
# Oldest first: what waits longest is on top (the active index serves it).
_RUNNING = sql.compose(
    "SELECT {columns}\n{joined}\nWHERE e.organization_id = $1 AND e.status IN ('pending', 'running')"
    "\nORDER BY e.executed_at, e.id\nLIMIT $2",
    columns=_WITH_SKILL,
    joined=_JOINED,
)

_FOR_SKILL = sql.compose(
    "SELECT {columns}, count(*) OVER () AS total\nFROM kijko.skill_executions e"
    "\nWHERE e.organization_id = $1 AND e.skill_id = $2\n{order}\nLIMIT $3 OFFSET $4",
    columns=_E,
    order=_ORDER,
)
_COUNT_FOR_SKILL = "SELECT count(*) FROM kijko.skill_executions WHERE organization_id = $1 AND skill_id = $2"
_FOR_REFERENCE = sql.compose(
    "SELECT {columns}, count(*) OVER () AS total\nFROM kijko.skill_executions e"
    "\nWHERE e.organization_id = $1 AND e.reference_id = $2\n{order}\nLIMIT $3 OFFSET $4",
    columns=_E,
    order=_ORDER,
)
_COUNT_FOR_REFERENCE = "SELECT count(*) FROM kijko.skill_executions WHERE organization_id = $1 AND reference_id = $2"

_SKILL_EXISTS = "SELECT EXISTS (SELECT 1 FROM kijko.skills WHERE organization_id = $1 AND id = $2)"
_HABIT_EXISTS = "SELECT EXISTS (SELECT 1 FROM kijko.habits WHERE organization_id = $1 AND id = $2)"
_REFLEX_EXISTS = "SELECT EXISTS (SELECT 1 FROM kijko.reflexes WHERE organization_id = $1 AND id = $2)"


def org_id(db: Db) -> UUID:
    """The organization the session is in (row-level security enforces it as well)."""
    return db.principal.org_id if isinstance(db, TenantSession) else db.org_id


def filter_args(db: Db, filters: ExecutionFilters) -> list[Any]:
    """``$1``…``$6`` of :data:`FILTERS`."""
    return [
        org_id(db),
        filters.skill_id,
        filters.status,
        filters.execution_type,
        filters.start_date,
        filters.end_date,
    ]


async def list_executions(db: Db, filters: ExecutionFilters) -> ExecutionList:
    """``GET /executions``: one page, newest first, with the total over every match."""
    args = filter_args(db, filters)
    rows = await db.fetch(_LIST, *args, filters.limit, filters.offset)
    if rows:
        total = rows[0]["total"]
    else:
        total = 0 if filters.offset == 0 else await db.fetchval(_COUNT, *args)
    return ExecutionList(
        executions=[execution_with_skill_from_row(row) for row in rows],
        total=total,
        page=filters.offset // filters.limit + 1,
        page_size=filters.limit,
        has_more=filters.offset + len(rows) < total,
    )


async def get(db: Db, execution_id: UUID) -> SkillExecution:
    """One execution; ``EXECUTION_NOT_FOUND`` for unknown ids and other organizations' alike."""
    row = await db.fetchrow(_GET, org_id(db), execution_id)
    if row is None:
        raise ExecutionNotFound()
    return execution_from_row(row)


async def full(db: Db, execution_id: UUID) -> ExecutionWithSkill:
    """One execution with its skill."""
    row = await db.fetchrow(_FULL, org_id(db), execution_id)
    if row is None:
        raise ExecutionNotFound()
    return execution_with_skill_from_row(row)


async def recent(db: Db, limit: int = 10) -> list[ExecutionWithSkill]:
    """The newest ``limit`` executions of the organization."""
    return [execution_with_skill_from_row(row) for row in await db.fetch(_RECENT, org_id(db), limit)]


async def running(db: Db) -> list[ExecutionWithSkill]:
    """Pending and running executions, oldest first (at most ``RUNNING_MAX``)."""
    return [execution_with_skill_from_row(row) for row in await db.fetch(_RUNNING, org_id(db), RUNNING_MAX)]


async def _history(
    db: Db, page: str, count: str, parent: UUID, limit: int, offset: int
) -> tuple[list[SkillExecution], int]:
    org = org_id(db)
    rows = await db.fetch(page, org, parent, limit, offset)
    if rows:
        return [execution_from_row(row) for row in rows], rows[0]["total"]
    return [], (0 if offset == 0 else await db.fetchval(count, org, parent))


async def for_skill(db: Db, skill_id: UUID, limit: int = 10, offset: int = 0) -> tuple[list[SkillExecution], int]:
    """A skill's executions, newest first, and their total (no existence check)."""
    return await _history(db, _FOR_SKILL, _COUNT_FOR_SKILL, skill_id, limit, offset)


async def recent_for_skill(db: Db, skill_id: UUID, limit: int = 10) -> list[SkillExecution]:
    """A skill's newest ``limit`` executions (``recentExecutions`` of ``/skills/:id/full``)."""
    executions, _ = await for_skill(db, skill_id, limit, 0)
    return executions


async def for_reference(
    db: Db, reference_id: UUID, limit: int = 10, offset: int = 0
) -> tuple[list[SkillExecution], int]:
    """The executions a habit or a reflex caused, newest first, and their total (no existence
    check: the history outlives the habit or reflex)."""
    return await _history(db, _FOR_REFERENCE, _COUNT_FOR_REFERENCE, reference_id, limit, offset)


async def require_skill(db: Db, skill_id: UUID) -> None:
    """``SKILL_NOT_FOUND`` unless the skill exists in the organization."""
    if not await db.fetchval(_SKILL_EXISTS, org_id(db), skill_id):
        raise SkillNotFound()


async def require_habit(db: Db, habit_id: UUID) -> None:
    if not await db.fetchval(_HABIT_EXISTS, org_id(db), habit_id):
        raise HabitNotFound()


async def require_reflex(db: Db, reflex_id: UUID) -> None:
    if not await db.fetchval(_REFLEX_EXISTS, org_id(db), reflex_id):
        raise ReflexNotFound()


# --- cleanup ---------------------------------------------------------------------------------

#: Most executions one cleanup deletes (a bounded transaction; call again for the rest).
CLEANUP_MAX = 10_000
# Finished executions older than $2 days, oldest first, rows another transaction holds
# skipped; ``pg_column_size`` of each deleted row estimates the space freed.
_CLEANUP = (
    "WITH doomed AS ("
    "\n    SELECT id FROM kijko.skill_executions"
    "\n    WHERE organization_id = $1 AND status NOT IN ('pending', 'running')"
    "\n      AND executed_at < now() - make_interval(days => $2)"
    "\n    ORDER BY executed_at, id LIMIT $3 FOR UPDATE SKIP LOCKED"
    "\n), gone AS ("
    "\n    DELETE FROM kijko.skill_executions e USING doomed"
    "\n    WHERE e.organization_id = $1 AND e.id = doomed.id AND e.status NOT IN ('pending', 'running')"
    "\n    RETURNING pg_column_size(e.*) AS bytes"
    "\n)"
    "\nSELECT count(*) AS deleted, COALESCE(sum(bytes), 0)::bigint AS bytes FROM gone"
)


async def cleanup(db: TenantSession, older_than_days: int) -> tuple[int, int]:
    """Delete finished executions older than ``older_than_days`` (owners and admins only;
    pending and running ones never); returns (how many, bytes of their rows)."""
    if not permissions.granted(db.principal, permissions.Grant.EDIT_OTHERS):
        raise Forbidden("Only the organization's owners and admins can delete execution history")
    row = await db.fetchrow(_CLEANUP, org_id(db), older_than_days, CLEANUP_MAX)
    assert row is not None
    return row["deleted"], row["bytes"]
