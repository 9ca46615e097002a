"""The rules of projects: who may see and change what (ARCHITECTURE §3), names unique per
organization, the type fixed once a project leaves draft."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from kijko_core.auth.principal import Principal
from kijko_core.db.session import TenantSession
from kijko_core.errors import Forbidden
from kijko_core.projects import repository
from kijko_core.projects.models import (
    NAME_MAX,
    NAME_MIN,
    NEXT_STEPS,
    CreateProject,
    CreateProjectResponse,
    InvalidStatus,
    NameValidation,
    Project,
    ProjectExists,
    ProjectListQuery,
    ProjectNotFound,
    ProjectStats,
    ProjectWithRelations,
    UpdateProject,
)
from kijko_core.wire import Page, like_pattern


def _scope(principal: Principal) -> repository.Scope:
    return repository.Scope(principal.org_id, principal.user_id, principal.is_org_admin)


def parse_id(raw: str) -> UUID:
    """A malformed id is reported exactly like an unknown one."""
    try:
        return UUID(raw)
    except ValueError:
        raise ProjectNotFound() from None


def _project(row: asyncpg.Record) -> Project:
    return Project.model_validate(dict(row))


def _may_edit(principal: Principal, project: asyncpg.Record) -> bool:
    """Org owners and admins edit everything; members edit what they created."""
    if principal.is_org_admin:
        return True
    return principal.can_write and project["user_id"] == principal.user_id


async def _readable(db: TenantSession, project_id: str, *, for_update: bool = False) -> asyncpg.Record:
    row = await repository.get(db, _scope(db.principal), parse_id(project_id), for_update=for_update)
    if row is None:
        raise ProjectNotFound()
    return row


async def get(db: TenantSession, project_id: str) -> Project:
    return _project(await _readable(db, project_id))


async def get_full(db: TenantSession, project_id: str) -> ProjectWithRelations:
    return ProjectWithRelations.model_validate(dict(await _readable(db, project_id)))


async def list_projects(db: TenantSession, query: ProjectListQuery) -> Page[Project]:
    pattern = like_pattern(query.search) if query.search else None
    rows, total = await repository.list_page(
        db, _scope(db.principal), pattern=pattern, limit=query.page_size, offset=query.offset
    )
    return Page[Project].of([_project(row) for row in rows], total, query)


async def create(db: TenantSession, data: CreateProject) -> CreateProjectResponse:
    principal = db.principal
    if not principal.can_write:
        raise Forbidden("Viewers cannot create projects")
    values = data.model_dump()
    try:
        row = await repository.insert(db, principal.org_id, principal.user_id, values)
    except repository.UniqueViolation:
        raise ProjectExists(field="name") from None
    return CreateProjectResponse(project=_project(row), next_steps=list(NEXT_STEPS))


async def update(db: TenantSession, project_id: str, data: UpdateProject) -> Project:
    current = await _readable(db, project_id, for_update=True)
    if not _may_edit(db.principal, current):
        raise Forbidden("You may not edit this project")
    # Present fields only; the model refuses null for every field but the description.
    changes: dict[str, Any] = {name: getattr(data, name) for name in data.model_fields_set}
    if "type" in changes and changes["type"] != current["type"] and current["status"] != "draft":
        raise InvalidStatus("The type can only change while the project is a draft", field="type")
    try:
        row = await repository.update(db, db.principal.org_id, current["id"], changes)
    except repository.UniqueViolation:
        raise ProjectExists(field="name") from None
    if row is None:  # unreachable while the row is locked; kept as the repository's contract
        raise ProjectNotFound()
    return _project(row)


async def delete(db: TenantSession, project_id: str) -> None:
    current = await _readable(db, project_id)
    if not _may_edit(db.principal, current):
        raise Forbidden("You may not delete this project")
    if not await repository.delete(db, db.principal.org_id, current["id"]):
        raise ProjectNotFound()


async def stats(db: TenantSession) -> ProjectStats:
    return ProjectStats.model_validate(dict(await repository.stats(db, _scope(db.principal))))


async def validate_name(db: TenantSession, name: str | None, project_id: str | None) -> NameValidation:
    name = (name or "").strip()
    if not name:
        return NameValidation(valid=False, error="Project name is required")
    if len(name) < NAME_MIN:
        return NameValidation(valid=False, error=f"Project name must be at least {NAME_MIN} characters")
    if len(name) > NAME_MAX:
        return NameValidation(valid=False, error=f"Project name cannot exceed {NAME_MAX} characters")
    exclude = None
    if project_id:
        try:
            exclude = UUID(project_id)
        except ValueError:
            exclude = None
    if await repository.name_taken(db, db.principal.org_id, name, exclude):
        return NameValidation(
            valid=False,
            error="A project with this name already exists",
            suggestion=await _suggest(db, name),
        )
    return NameValidation(valid=True)


async def _suggest(db: TenantSession, name: str) -> str | None:
    for number in range(2, 20):
        suffix = f" {number}"
        candidate = name[: NAME_MAX - len(suffix)] + suffix
        if not await repository.name_taken(db, db.principal.org_id, candidate, None):
            return candidate
    return None
