"""Every SQL statement of habits, composed once from the table's columns (print one to paste
it into psql). Reads run in a tenant or service session: row-level security confines them to
one organization, and the statements still name it so the indexes are used."""

from __future__ import annotations

from uuid import UUID

from kijko_core.db import sql
from kijko_core.db.session import Session
from kijko_core.habits.models import Habit

TABLE = sql.Table("kijko.habits", Habit)

#: Contract §1.4: active first, then the next run soonest (none last), the id breaking ties.
ORDER = ("is_active DESC", "next_run_at ASC NULLS LAST", "id")

_GET = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = kijko.current_org_id() AND id = $1",
    columns=TABLE.select_list,
    table=TABLE,
)
_GET_FOR_UPDATE = sql.compose("{get}\nFOR UPDATE", get=sql.Fragment(_GET))

_FOR_SKILL = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = kijko.current_org_id() AND skill_id = $1"
    "\nORDER BY is_active DESC, next_run_at ASC NULLS LAST, id",
    columns=TABLE.select_list,
    table=TABLE,
)


async def get(db: Session, habit_id: UUID, *, for_update: bool = False) -> Habit | None:
    return TABLE.maybe(await db.fetchrow(_GET_FOR_UPDATE if for_update else _GET, habit_id))


async def for_skill(db: Session, skill_id: UUID) -> list[Habit]:
    return TABLE.many(await db.fetch(_FOR_SKILL, skill_id))
