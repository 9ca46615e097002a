"""Every SQL statement of projects, composed once from the table's columns and the readable
condition of ``kijko_core.permissions.PROJECTS`` (print one to paste it into psql)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from kijko_core.db import sql
from kijko_core.db.session import TenantSession
from kijko_core.permissions import PROJECTS, MemberAccess, ProjectRole
from kijko_core.projects.models import Project, ProjectExists, ProjectStats

TABLE = sql.Table("kijko.projects", Project)
READABLE = PROJECTS.readable_sql  # $1 organization, $2 caller, $3 caller sees private projects

# With the caller's project role (NULL: not a member), which ``authorize`` reads.
_GET = sql.compose(
    "SELECT {columns},"
    "\n    (SELECT m.role FROM kijko.project_members m"
    " WHERE m.organization_id = $1 AND m.project_id = p.id AND m.user_id = $2) AS member_role"
    "\nFROM {table} p\nWHERE {readable} AND id = $4",
    columns=TABLE.select_list,
    table=TABLE,
    readable=READABLE,
)
# The same row, locked until the transaction ends: updates check it and write it unchanged
# by concurrent writers (the type may only change while the status is draft).
_GET_FOR_UPDATE = sql.compose("{get}\nFOR UPDATE", get=sql.Fragment(_GET))

_SEARCH = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE {readable}"
    "\n  AND ($4::text IS NULL OR name ILIKE $4 ESCAPE '\\' OR description ILIKE $4 ESCAPE '\\')",
    columns=TABLE.select_list,
    table=TABLE,
    readable=READABLE,
)
_LIST = sql.paged(_SEARCH, order_by=("created_at", "id"))
_COUNT = sql.counted(_SEARCH)

_INSERT = sql.compose(
    "INSERT INTO {table} (organization_id, user_id, name, description, type, privacy,"
    " chunking_strategy, include_metadata, anonymize_secrets, custom_settings)"
    "\nVALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)\nRETURNING {columns}",
    table=TABLE,
    columns=TABLE.select_list,
)

UPDATABLE = (
    "name",
    "description",
    "type",
    "privacy",
    "chunking_strategy",
    "include_metadata",
    "anonymize_secrets",
    "custom_settings",
)
_UPDATE = sql.Update(TABLE, UPDATABLE, where=sql.Fragment("organization_id = $1 AND id = $2"), leading=2)

_DELETE = sql.compose("DELETE FROM {table} WHERE organization_id = $1 AND id = $2", table=TABLE)

# Only among the projects the caller can read: validate-name must not confirm a name held
# by a project the caller cannot see (decision 0022).
_NAME_TAKEN = sql.compose(
    "SELECT EXISTS (SELECT 1 FROM {table} WHERE {readable}"
    " AND lower(name) = lower($4) AND ($5::uuid IS NULL OR id <> $5))",
    table=TABLE,
    readable=READABLE,
)

_STATS = sql.compose(
    "SELECT count(*) AS total_projects,"
    "\n    count(*) FILTER (WHERE status = 'active') AS active_projects,"
    "\n    count(*) FILTER (WHERE status = 'processing') AS processing_projects,"
    "\n    count(*) FILTER (WHERE status = 'error') AS error_projects,"
    "\n    COALESCE(sum(optimized_tokens), 0)::bigint AS total_tokens,"
    "\n    COALESCE(sum(total_files), 0)::bigint AS total_files"
    "\nFROM {table}\nWHERE {readable}",
    table=TABLE,
    readable=READABLE,
)

Scope = tuple[UUID, UUID, bool]  # PROJECTS.readable_args(principal)

# The unique index on (organization_id, lower(name)) is the one a write can hit.
_EXISTS = {"projects_name_key": lambda: ProjectExists(field="name")}


async def get(db: TenantSession, scope: Scope, project_id: UUID, *, for_update: bool = False) -> Project | None:
    """The project if the caller can read it, carrying the caller's project membership."""
    row = await db.fetchrow(_GET_FOR_UPDATE if for_update else _GET, *scope, project_id)
    if row is None:
        return None
    project = TABLE.one(row)
    if row["member_role"] is not None:
        project.with_access(MemberAccess(scope[1], ProjectRole(row["member_role"])))
    return project


async def list_page(
    db: TenantSession, scope: Scope, *, pattern: str | None, limit: int, offset: int
) -> tuple[list[Project], int]:
    rows, total = await sql.fetch_page(db, _LIST, _COUNT, *scope, pattern, limit=limit, offset=offset)
    return TABLE.many(rows), total


async def insert(db: TenantSession, org_id: UUID, user_id: UUID, values: dict[str, Any]) -> Project:
    with sql.unique_as(_EXISTS):
        row = await db.fetchrow(
            _INSERT,
            org_id,
            user_id,
            values["name"],
            values["description"],
            values["type"],
            values["privacy"],
            values["chunking_strategy"],
            values["include_metadata"],
            values["anonymize_secrets"],
            values.get("custom_settings") or {},
        )
    assert row is not None
    return TABLE.one(row)


async def update(db: TenantSession, org_id: UUID, project_id: UUID, changes: dict[str, Any]) -> Project | None:
    with sql.unique_as(_EXISTS):
        row = await db.fetchrow(_UPDATE.statement, org_id, project_id, *_UPDATE.args(changes))
    return TABLE.maybe(row)


async def delete(db: TenantSession, org_id: UUID, project_id: UUID) -> bool:
    return await db.execute(_DELETE, org_id, project_id) == "DELETE 1"


async def name_taken(db: TenantSession, scope: Scope, name: str, exclude: UUID | None) -> bool:
    return bool(await db.fetchval(_NAME_TAKEN, *scope, name, exclude))


async def stats(db: TenantSession, scope: Scope) -> ProjectStats:
    row = await db.fetchrow(_STATS, *scope)
    assert row is not None
    return ProjectStats.model_validate(dict(row))
