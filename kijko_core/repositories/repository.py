"""Every SQL statement of repositories. Adding and removing one changes the project's
``total_repos`` in the same statement, under the project row's lock: concurrent adds and
removes queue on that row, so the counter stays exact."""

from __future__ import annotations

from uuid import UUID

from kijko_core.db import sql
from kijko_core.db.session import TenantSession
from kijko_core.permissions import PROJECTS
from kijko_core.repositories.models import RecentRepo, RepositoryExists, RepositoryRecord

TABLE = sql.Table("kijko.repositories", RepositoryRecord)

_LIST = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND project_id = $2\nORDER BY created_at, id",
    columns=TABLE.select_list,
    table=TABLE,
)

_INSERT = sql.compose(
    "WITH added AS ("
    "\n    INSERT INTO {table} (organization_id, project_id, user_id, provider, repository_url,"
    " repository_name, branch, include_paths, exclude_paths)"
    "\n    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    "\n    RETURNING {columns}"
    "\n), counted AS ("
    "\n    UPDATE kijko.projects SET total_repos = total_repos + 1"
    "\n    WHERE organization_id = $1 AND id = $2"
    "\n)"
    "\nSELECT {columns} FROM added",
    table=TABLE,
    columns=TABLE.select_list,
)

_DELETE = sql.compose(
    "WITH removed AS ("
    "\n    DELETE FROM {table} WHERE organization_id = $1 AND project_id = $2 AND id = $3 RETURNING id"
    "\n), counted AS ("
    "\n    UPDATE kijko.projects SET total_repos = total_repos - 1"
    "\n    WHERE organization_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM removed)"
    "\n)"
    "\nSELECT count(*) FROM removed",
    table=TABLE,
)

# The caller's own additions, among the projects they can still read, one row per URL.
# $1 organization, $2 caller, $3 caller sees every project (PROJECTS.readable_args), $4 limit.
_RECENT = sql.compose(
    "SELECT (array_agg(repository_url ORDER BY created_at DESC))[1] AS repo_url,"
    "\n    (array_agg(repository_name ORDER BY created_at DESC))[1] AS repo_name,"
    "\n    max(COALESCE(last_sync_at, created_at)) AS last_analyzed,"
    "\n    count(*) AS usage_count,"
    "\n    provider"
    "\nFROM {table}"
    "\nWHERE organization_id = $1 AND user_id = $2"
    "\n  AND project_id IN (SELECT id FROM kijko.projects WHERE {readable})"
    "\nGROUP BY lower(repository_url), provider"
    "\nORDER BY max(created_at) DESC, lower(repository_url)"
    "\nLIMIT $4",
    table=TABLE,
    readable=PROJECTS.readable_sql,
)

_EXISTS = {"repositories_project_url_key": lambda: RepositoryExists(field="repositoryUrl")}


async def list_for_project(db: TenantSession, org_id: UUID, project_id: UUID) -> list[RepositoryRecord]:
    return TABLE.many(await db.fetch(_LIST, org_id, project_id))


async def insert(
    db: TenantSession,
    org_id: UUID,
    project_id: UUID,
    user_id: UUID | None,
    *,
    provider: str,
    url: str,
    name: str,
    branch: str,
    include_paths: list[str],
    exclude_paths: list[str],
) -> RepositoryRecord:
    with sql.unique_as(_EXISTS):
        row = await db.fetchrow(
            _INSERT, org_id, project_id, user_id, provider, url, name, branch, include_paths, exclude_paths
        )
    assert row is not None
    return TABLE.one(row)


async def delete(db: TenantSession, org_id: UUID, project_id: UUID, repository_id: UUID) -> bool:
    return bool(await db.fetchval(_DELETE, org_id, project_id, repository_id))


async def recent(db: TenantSession, scope: tuple[UUID, UUID, bool], limit: int) -> list[RecentRepo]:
    return [RecentRepo.model_validate(dict(row)) for row in await db.fetch(_RECENT, *scope, limit)]
