"""Every SQL statement of habits, composed once from the table's columns (print one to paste
it into psql). Tenant reads and writes run in a tenant or service session: row-level security
confines them to one organization, and the statements still name it so the indexes are used.
The scheduler's statements (``CLAIM_DUE``…) run on the system role (docs/habits.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from kijko_core.db import sql
from kijko_core.db.session import Session
from kijko_core.habits.models import Habit, HabitStats, UpcomingRun

TABLE = sql.Table("kijko.habits", Habit)
_ORG = sql.Fragment("organization_id = kijko.current_org_id()")

_GET = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE {org} AND id = $1",
    columns=TABLE.select_list,
    table=TABLE,
    org=_ORG,
)
_GET_FOR_UPDATE = sql.compose("{get}\nFOR UPDATE", get=sql.Fragment(_GET))

_FOR_SKILL = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE {org} AND skill_id = $1"
    "\nORDER BY is_active DESC, next_run_at ASC NULLS LAST, id",
    columns=TABLE.select_list,
    table=TABLE,
    org=_ORG,
)

# Contract §1.4: active first, then the next run soonest (none last), the id breaking ties.
_SEARCH = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE {org}"
    "\n  AND ($1::uuid IS NULL OR skill_id = $1) AND ($2::boolean IS NULL OR is_active = $2)",
    columns=TABLE.select_list,
    table=TABLE,
    org=_ORG,
)
_LIST = sql.paged(_SEARCH, order_by=("is_active DESC", "next_run_at ASC NULLS LAST", "id"))
_COUNT = sql.counted(_SEARCH)

_INSERT = sql.compose(
    "INSERT INTO {table} (organization_id, skill_id, user_id, schedule_cron, schedule_description,"
    " timezone, config, is_active, next_run_at)"
    "\nVALUES (kijko.current_org_id(), $1, kijko.current_user_id(), $2, $3, $4, $5, $6, $7)"
    "\nRETURNING {columns}",
    table=TABLE,
    columns=TABLE.select_list,
)

UPDATABLE = (
    "schedule_cron",
    "schedule_description",
    "timezone",
    "config",
    "is_active",
    "next_run_at",
    "consecutive_failures",
    "last_error_message",
)
_UPDATE = sql.Update(
    TABLE, UPDATABLE, where=sql.Fragment("organization_id = kijko.current_org_id() AND id = $1"), leading=1
)

_DELETE = sql.compose("DELETE FROM {table} WHERE {org} AND id = $1", table=TABLE, org=_ORG)

_STATS = sql.compose(
    "SELECT count(*) AS total_habits, count(*) FILTER (WHERE is_active) AS active_habits,"
    "\n    COALESCE(sum(run_count), 0)::bigint AS total_runs,"
    "\n    count(*) FILTER (WHERE consecutive_failures > 0) AS failed_habits"
    "\nFROM {table}\nWHERE {org}",
    table=TABLE,
    org=_ORG,
)
_UPCOMING = sql.compose(
    "SELECT h.id AS habit_id, s.name AS skill_name, h.next_run_at"
    "\nFROM {table} h JOIN kijko.skills s ON s.organization_id = h.organization_id AND s.id = h.skill_id"
    "\nWHERE h.organization_id = kijko.current_org_id() AND h.is_active AND h.next_run_at IS NOT NULL"
    "\nORDER BY h.next_run_at, h.id\nLIMIT 5",
    table=TABLE,
)

_NOW = "SELECT now()"


async def now(db: Session) -> datetime:
    """The database's clock (the transaction's start): every schedule is computed from it."""
    value: datetime = await db.fetchval(_NOW)
    return value


async def get(db: Session, habit_id: UUID, *, for_update: bool = False) -> Habit | None:
    return TABLE.maybe(await db.fetchrow(_GET_FOR_UPDATE if for_update else _GET, habit_id))


async def for_skill(db: Session, skill_id: UUID) -> list[Habit]:
    return TABLE.many(await db.fetch(_FOR_SKILL, skill_id))


async def list_page(
    db: Session, skill_id: UUID | None, is_active: bool | None, *, limit: int, offset: int
) -> tuple[list[Habit], int]:
    rows, total = await sql.fetch_page(db, _LIST, _COUNT, skill_id, is_active, limit=limit, offset=offset)
    return TABLE.many(rows), total


async def insert(
    db: Session,
    *,
    skill_id: UUID,
    schedule_cron: str,
    schedule_description: str | None,
    timezone: str,
    config: dict[str, Any],
    is_active: bool,
    next_run_at: datetime | None,
) -> Habit:
    row = await db.fetchrow(
        _INSERT, skill_id, schedule_cron, schedule_description, timezone, config, is_active, next_run_at
    )
    assert row is not None
    return TABLE.one(row)


async def update(db: Session, habit_id: UUID, changes: dict[str, Any]) -> Habit | None:
    return TABLE.maybe(await db.fetchrow(_UPDATE.statement, habit_id, *_UPDATE.args(changes)))


async def delete(db: Session, habit_id: UUID) -> bool:
    return await db.execute(_DELETE, habit_id) == "DELETE 1"


async def stats(db: Session) -> HabitStats:
    row = await db.fetchrow(_STATS)
    assert row is not None
    upcoming = [UpcomingRun.model_validate(dict(r)) for r in await db.fetch(_UPCOMING)]
    return HabitStats(
        total_habits=row["total_habits"],
        active_habits=row["active_habits"],
        total_runs=row["total_runs"],
        failed_habits=row["failed_habits"],
        upcoming_runs=upcoming,
    )


# --- the scheduler (system role: it only finds and claims; docs/habits.md#the-scheduler) -------

#: Due active habits, oldest due first and grouped by organization (two schedulers then mostly
#: take different organizations' batches, and wait less on one skill's row), locked until the
#: claiming transaction ends; rows another scheduler holds are skipped. ``$1``: the instant to
#: compare with (None: now()).
CLAIM_DUE = sql.compose(
    "SELECT id, organization_id, skill_id, user_id, schedule_cron, timezone, config, next_run_at,"
    "\n    COALESCE($1::timestamptz, now()) AS now"
    "\nFROM {table}"
    "\nWHERE is_active AND next_run_at IS NOT NULL AND next_run_at <= COALESCE($1::timestamptz, now())"
    "\nORDER BY next_run_at, organization_id, id\nLIMIT $2\nFOR UPDATE SKIP LOCKED",
    table=TABLE,
)

#: The claimed habits, advanced: next run, last run, one more run (when one fired), and the
#: error of a fire that could not start (cleared by one that did).
ADVANCE = sql.compose(
    "UPDATE {table} h SET next_run_at = a.next_run_at,"
    "\n    last_run_at = CASE WHEN a.fired THEN a.scheduled_for ELSE h.last_run_at END,"
    "\n    run_count = h.run_count + CASE WHEN a.fired THEN 1 ELSE 0 END,"
    "\n    last_error_message = CASE WHEN a.error IS NOT NULL THEN a.error ELSE h.last_error_message END,"
    "\n    consecutive_failures = h.consecutive_failures + CASE WHEN a.failed THEN 1 ELSE 0 END,"
    "\n    updated_at = now()"
    "\nFROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::boolean[], $5::text[], $6::boolean[])"
    "\n    AS a(id, next_run_at, scheduled_for, fired, error, failed)"
    "\nWHERE h.id = a.id",
    table=TABLE,
)
