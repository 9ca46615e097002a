"""Every SQL statement of skills, composed once from the table's columns (print one to paste it
into psql). Skills are organization data: every read is ``organization_id = $1`` (row-level
security says the same); who may change which skill is the service's question."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from kijko_core.db import sql
from kijko_core.db.session import Session, TenantSession
from kijko_core.skills.errors import SkillNameExists
from kijko_core.skills.models import Skill

TABLE = sql.Table("kijko.skills", Skill)

_GET = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND id = $2", columns=TABLE.select_list, table=TABLE
)
# Held until the transaction ends: an update compares with what it writes over (the version).
_GET_FOR_UPDATE = sql.compose("{get}\nFOR UPDATE", get=sql.Fragment(_GET))

_SEARCH = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1"
    "\n  AND ($2::text IS NULL OR category = $2)"
    "\n  AND ($3::boolean IS NULL OR is_active = $3)"
    "\n  AND ($4::text IS NULL OR name ILIKE $4 ESCAPE '\\' OR description ILIKE $4 ESCAPE '\\')",
    columns=TABLE.select_list,
    table=TABLE,
)
# Most recently changed first (the contract's order), the id breaking ties.
_LIST = sql.paged(_SEARCH, order_by=("updated_at DESC", "id DESC"))
_COUNT = sql.counted(_SEARCH)

INSERTED = (
    "name",
    "description",
    "category",
    "skill_type",
    "type_config",
    "prompt_template",
    "system_prompt",
    "model",
    "parameters",
    "input_schema",
    "output_format",
    "is_active",
)
_INSERT = sql.compose(
    "INSERT INTO {table} (organization_id, user_id, {inserted})"
    "\nVALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)\nRETURNING {columns}",
    table=TABLE,
    inserted=sql.Fragment(", ".join(INSERTED)),
    columns=TABLE.select_list,
)

_UPDATE = sql.Update(TABLE, (*INSERTED, "version"), where=sql.Fragment("organization_id = $1 AND id = $2"), leading=2)

_DELETE = sql.compose("DELETE FROM {table} WHERE organization_id = $1 AND id = $2", table=TABLE)

# Bulk actions touch only the organization's skills among the ids that the caller may edit
# ($3: the caller edits others' skills; else only the caller's own, $4). The count is of those
# skills, whether their state changed or not; only the changed ones get a new updated_at.
# Rows are locked in id order, so two bulk requests over overlapping ids queue, never deadlock.
_BULK_ACTIVE = sql.compose(
    "WITH target AS ("
    "\n    SELECT id, is_active FROM {table}"
    "\n    WHERE organization_id = $1 AND id = ANY($2::uuid[]) AND ($3::boolean OR user_id = $4)"
    "\n    ORDER BY id FOR UPDATE),"
    "\nchanged AS ("
    "\n    UPDATE {table} s SET is_active = $5, updated_at = now() FROM target t"
    "\n    WHERE s.organization_id = $1 AND s.id = t.id AND t.is_active <> $5 RETURNING s.id)"
    "\nSELECT count(*) FROM target",
    table=TABLE,
)
_BULK_DELETE = sql.compose(
    "WITH target AS ("
    "\n    SELECT id FROM {table}"
    "\n    WHERE organization_id = $1 AND id = ANY($2::uuid[]) AND ($3::boolean OR user_id = $4)"
    "\n    ORDER BY id FOR UPDATE)"
    "\nDELETE FROM {table} WHERE organization_id = $1 AND id IN (SELECT id FROM target)",
    table=TABLE,
)

# Which of these names (lower-cased) the creator already uses (import's de-duplication).
_TAKEN = sql.compose(
    "SELECT lower(name) AS name FROM {table}"
    "\nWHERE organization_id = $1 AND user_id IS NOT DISTINCT FROM $2 AND lower(name) = ANY($3::text[])",
    table=TABLE,
)

# The unique index on (organization_id, user_id, lower(name)) (migration 0016): the 409 also
# when two requests race past any check.
_EXISTS = {"skills_name_key": SkillNameExists}


async def get(db: Session, org_id: UUID, skill_id: UUID, *, for_update: bool = False) -> Skill | None:
    """A tenant's or a service session's read (habits' scheduler, reflexes' receiver)."""
    return TABLE.maybe(await db.fetchrow(_GET_FOR_UPDATE if for_update else _GET, org_id, skill_id))


async def list_page(
    db: TenantSession,
    org_id: UUID,
    *,
    category: str | None,
    is_active: bool | None,
    pattern: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Skill], int]:
    rows, total = await sql.fetch_page(
        db, _LIST, _COUNT, org_id, category, is_active, pattern, limit=limit, offset=offset
    )
    return TABLE.many(rows), total


async def insert(db: TenantSession, org_id: UUID, user_id: UUID | None, values: dict[str, Any]) -> Skill:
    with sql.unique_as(_EXISTS):
        row = await db.fetchrow(_INSERT, org_id, user_id, *(values[column] for column in INSERTED))
    assert row is not None
    return TABLE.one(row)


async def update(db: TenantSession, org_id: UUID, skill_id: UUID, changes: dict[str, Any]) -> Skill | None:
    with sql.unique_as(_EXISTS):
        row = await db.fetchrow(_UPDATE.statement, org_id, skill_id, *_UPDATE.args(changes))
    return TABLE.maybe(row)


async def delete(db: TenantSession, org_id: UUID, skill_id: UUID) -> bool:
    return await db.execute(_DELETE, org_id, skill_id) == "DELETE 1"


async def bulk_set_active(
    db: TenantSession, org_id: UUID, ids: Sequence[UUID], *, others: bool, user_id: UUID, active: bool
) -> int:
    return int(await db.fetchval(_BULK_ACTIVE, org_id, list(ids), others, user_id, active))


async def bulk_delete(db: TenantSession, org_id: UUID, ids: Sequence[UUID], *, others: bool, user_id: UUID) -> int:
    status = await db.execute(_BULK_DELETE, org_id, list(ids), others, user_id)
    return int(status.rsplit(" ", 1)[-1])


async def taken_names(db: TenantSession, org_id: UUID, user_id: UUID | None, candidates: Sequence[str]) -> set[str]:
    """Which of ``candidates`` (compared lower-cased) the creator's skills already use."""
    rows = await db.fetch(_TAKEN, org_id, user_id, [name.lower() for name in candidates])
    return {row["name"] for row in rows}
