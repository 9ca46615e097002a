"""Every SQL statement of projects. Each carries the organization and the caller's visibility:
a private project is readable by its creator and the organization's owners and admins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from kijko_core.db.session import TenantSession

# Statements are spelled out in full, so each can be read (and pasted into psql) as it runs.
# The one readable scope, in every read: $1 organization, $2 caller, $3 caller is an org
# owner/admin: organization_id = $1 AND (privacy = 'shared' OR user_id = $2 OR $3)

_GET = """
SELECT id, user_id, organization_id, name, description, type, status, privacy,
    chunking_strategy, include_metadata, anonymize_secrets, total_repos, total_files,
    original_tokens, optimized_tokens, ingestion_time_seconds, created_at, updated_at
FROM kijko.projects
WHERE organization_id = $1 AND (privacy = 'shared' OR user_id = $2 OR $3::boolean)
  AND id = $4
"""

# The same row, locked until the transaction ends: updates check it and write it unchanged
# by concurrent writers (the type may only change while the status is draft).
_GET_FOR_UPDATE = """
SELECT id, user_id, organization_id, name, description, type, status, privacy,
    chunking_strategy, include_metadata, anonymize_secrets, total_repos, total_files,
    original_tokens, optimized_tokens, ingestion_time_seconds, created_at, updated_at
FROM kijko.projects
WHERE organization_id = $1 AND (privacy = 'shared' OR user_id = $2 OR $3::boolean)
  AND id = $4
FOR UPDATE
"""

_LIST = """
SELECT id, user_id, organization_id, name, description, type, status, privacy,
    chunking_strategy, include_metadata, anonymize_secrets, total_repos, total_files,
    original_tokens, optimized_tokens, ingestion_time_seconds, created_at, updated_at,
    count(*) OVER () AS total
FROM kijko.projects
WHERE organization_id = $1 AND (privacy = 'shared' OR user_id = $2 OR $3::boolean)
  AND ($4::text IS NULL OR name ILIKE $4 ESCAPE '\\' OR description ILIKE $4 ESCAPE '\\')
ORDER BY created_at, id
LIMIT $5 OFFSET $6
"""

_COUNT = """
SELECT count(*)
FROM kijko.projects
WHERE organization_id = $1 AND (privacy = 'shared' OR user_id = $2 OR $3::boolean)
  AND ($4::text IS NULL OR name ILIKE $4 ESCAPE '\\' OR description ILIKE $4 ESCAPE '\\')
"""

_INSERT = (
    "INSERT INTO kijko.projects (organization_id, user_id, name, description, type, privacy,"
    " chunking_strategy, include_metadata, anonymize_secrets)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    " RETURNING id, user_id, organization_id, name, description, type, status, privacy,"
    " chunking_strategy, include_metadata, anonymize_secrets, total_repos, total_files,"
    " original_tokens, optimized_tokens, ingestion_time_seconds, created_at, updated_at"
)

# One fixed statement for every partial update: $n flags say which fields are present.
_UPDATE = (
    "UPDATE kijko.projects SET"
    " name = CASE WHEN $3 THEN $4 ELSE name END,"
    " description = CASE WHEN $5 THEN $6 ELSE description END,"
    " type = CASE WHEN $7 THEN $8 ELSE type END,"
    " privacy = CASE WHEN $9 THEN $10 ELSE privacy END,"
    " chunking_strategy = CASE WHEN $11 THEN $12 ELSE chunking_strategy END,"
    " include_metadata = CASE WHEN $13 THEN $14 ELSE include_metadata END,"
    " anonymize_secrets = CASE WHEN $15 THEN $16 ELSE anonymize_secrets END,"
    " updated_at = now()"
    " WHERE organization_id = $1 AND id = $2"
    " RETURNING id, user_id, organization_id, name, description, type, status, privacy,"
    " chunking_strategy, include_metadata, anonymize_secrets, total_repos, total_files,"
    " original_tokens, optimized_tokens, ingestion_time_seconds, created_at, updated_at"
)

_DELETE = "DELETE FROM kijko.projects WHERE organization_id = $1 AND id = $2"

_NAME_TAKEN = (
    "SELECT EXISTS (SELECT 1 FROM kijko.projects WHERE organization_id = $1"
    " AND lower(name) = lower($2) AND ($3::uuid IS NULL OR id <> $3))"
)

_STATS = (
    "SELECT count(*) AS total_projects,"
    " count(*) FILTER (WHERE status = 'active') AS active_projects,"
    " count(*) FILTER (WHERE status = 'processing') AS processing_projects,"
    " count(*) FILTER (WHERE status = 'error') AS error_projects,"
    " COALESCE(sum(optimized_tokens), 0)::bigint AS total_tokens,"
    " COALESCE(sum(total_files), 0)::bigint AS total_files"
    " FROM kijko.projects"
    " WHERE organization_id = $1 AND (privacy = 'shared' OR user_id = $2 OR $3::boolean)"
)


@dataclass(frozen=True)
class Scope:
    """Whose projects a statement may see."""

    org_id: UUID
    user_id: UUID
    sees_private: bool

    def args(self) -> tuple[UUID, UUID, bool]:
        return self.org_id, self.user_id, self.sees_private


UniqueViolation = asyncpg.UniqueViolationError


async def get(
    db: TenantSession, scope: Scope, project_id: UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    return await db.fetchrow(_GET_FOR_UPDATE if for_update else _GET, *scope.args(), project_id)


async def list_page(
    db: TenantSession, scope: Scope, *, pattern: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    rows = await db.fetch(_LIST, *scope.args(), pattern, limit, offset)
    if rows:
        return rows, rows[0]["total"]
    return rows, await db.fetchval(_COUNT, *scope.args(), pattern)


async def insert(db: TenantSession, org_id: UUID, user_id: UUID, values: dict[str, Any]) -> asyncpg.Record:
    return await db.fetchrow(
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
    )


_UPDATABLE = (
    "name",
    "description",
    "type",
    "privacy",
    "chunking_strategy",
    "include_metadata",
    "anonymize_secrets",
)


async def update(
    db: TenantSession, org_id: UUID, project_id: UUID, changes: dict[str, Any]
) -> asyncpg.Record | None:
    args: list[Any] = [org_id, project_id]
    for column in _UPDATABLE:
        args += [column in changes, changes.get(column)]
    return await db.fetchrow(_UPDATE, *args)


async def delete(db: TenantSession, org_id: UUID, project_id: UUID) -> bool:
    return await db.execute(_DELETE, org_id, project_id) == "DELETE 1"


async def name_taken(db: TenantSession, org_id: UUID, name: str, exclude: UUID | None) -> bool:
    """Across the whole organization, private projects included: names are unique per org."""
    return bool(await db.fetchval(_NAME_TAKEN, org_id, name, exclude))


async def stats(db: TenantSession, scope: Scope) -> asyncpg.Record:
    row = await db.fetchrow(_STATS, *scope.args())
    assert row is not None
    return row
