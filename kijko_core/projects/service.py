"""The rules of projects: who may see and change what (ARCHITECTURE §3, decision 0058: read
from the caller's project membership), names unique per organization, the type fixed once a
project leaves draft. The creator becomes the project's first admin member."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from kijko_core.db.session import TenantSession
from kijko_core.members import repository as members
from kijko_core.members.common import add_creator
from kijko_core.permissions import PROJECTS, Action, authorize
from kijko_core.projects import repository
from kijko_core.projects.models import (
    NAME_MAX,
    NAME_MIN,
    NEXT_STEPS,
    CreateProject,
    CreateProjectResponse,
    CustomSettings,
    CustomSettingsInput,
    InvalidStatus,
    NameValidation,
    Project,
    ProjectListQuery,
    ProjectNotFound,
    ProjectStats,
    ProjectWithRelations,
    UpdateProject,
)
from kijko_core.reflexes import catalogue
from kijko_core.repositories import service as repositories
from kijko_core.sources import repository as sources
from kijko_core.wire import Page, like_pattern

#: Fields whose change needs ``change settings`` rather than ``edit``.
SETTINGS = frozenset({"type", "privacy", "chunking_strategy", "include_metadata", "anonymize_secrets"})


async def _readable(db: TenantSession, project_id: UUID, *, for_update: bool = False) -> Project:
    scope = PROJECTS.readable_args(db.principal)
    project = await repository.get(db, scope, project_id, for_update=for_update)
    if project is None:
        raise ProjectNotFound()
    return project


async def get(db: TenantSession, project_id: UUID) -> Project:
    project = await _readable(db, project_id)
    # The statement already read only what the caller may read; asking anyway keeps one
    # place that decides, should a read ever come from elsewhere.
    authorize(db.principal, Action.READ, project, policy=PROJECTS)
    return project


async def get_full(db: TenantSession, project_id: UUID) -> ProjectWithRelations:
    project = await get(db, project_id)
    rows = await members.list_members(db, project.organization_id, project.id)
    # From the fields, not a dump: dumping writes the wire form (no creator → "").
    full = ProjectWithRelations.model_validate(
        dict(project)
        | {
            "members": [row.wire() for row in rows],
            "repositories": await repositories.for_project(db, project),
        }
    )
    full.files = [record.listed() for record in await sources.project_files(db, full.id)]
    full.manual_content = await sources.manual_content(db, full.id)
    return full


async def list_projects(db: TenantSession, query: ProjectListQuery) -> Page[Project]:
    pattern = like_pattern(query.search) if query.search else None
    projects, total = await repository.list_page(
        db, PROJECTS.readable_args(db.principal), pattern=pattern, limit=query.page_size, offset=query.offset
    )
    return Page[Project].of(projects, total, query)


async def create(db: TenantSession, data: CreateProject) -> CreateProjectResponse:
    principal = db.principal
    authorize(principal, Action.CREATE, policy=PROJECTS)
    values = data.model_dump(exclude={"custom_settings"})
    values["custom_settings"] = data.custom_settings.stored() if data.custom_settings else {}
    project = await repository.insert(db, principal.org_id, principal.user_id, values)
    await add_creator(db, project)  # the creator is the project's first admin (decision 0058)
    await _manual_content(db, project.id, data.custom_settings)
    await catalogue.emit(
        db,
        "project.created",
        {"projectId": str(project.id), "name": project.name, "type": project.type, "userId": str(principal.user_id)},
        source=str(project.id),
    )
    return CreateProjectResponse(project=project, next_steps=list(NEXT_STEPS))


async def _manual_content(db: TenantSession, project_id: UUID, settings: CustomSettingsInput | None) -> None:
    """A manual project's text, when the body's customSettings names it (null clears it)."""
    if settings is not None and "manual_content" in settings.model_fields_set:
        await sources.set_manual_content(db, project_id, settings.manual_content)


async def update(db: TenantSession, project_id: UUID, data: UpdateProject) -> Project:
    current = await _readable(db, project_id, for_update=True)
    # Present fields only; the model refuses null for every field but the description.
    changes: dict[str, Any] = {name: getattr(data, name) for name in data.model_fields_set}
    # Name and description are editing; the rest are the project's settings (decision 0058).
    action = Action.CHANGE_SETTINGS if changes.keys() & SETTINGS else Action.EDIT
    authorize(db.principal, action, current, policy=PROJECTS)
    if "type" in changes and changes["type"] != current.type and current.status != "draft":
        raise InvalidStatus("The type can only change while the project is a draft", field="type")
    if "custom_settings" in changes:
        given: CustomSettingsInput = changes["custom_settings"]
        merged = current.custom_settings.stored() | given.stored()
        cleared = {f.alias or name for name, f in CustomSettings.model_fields.items()
                   if name in given.model_fields_set and getattr(given, name) is None}
        changes["custom_settings"] = {key: value for key, value in merged.items() if key not in cleared}
        await _manual_content(db, current.id, given)
    project = await repository.update(db, db.principal.org_id, current.id, changes)
    if project is None:  # unreachable while the row is locked; kept as the repository's contract
        raise ProjectNotFound()
    return project


async def delete(db: TenantSession, project_id: UUID) -> None:
    current = await _readable(db, project_id)
    authorize(db.principal, Action.DELETE, current, policy=PROJECTS)
    if not await repository.delete(db, db.principal.org_id, current.id):
        raise ProjectNotFound()


async def stats(db: TenantSession) -> ProjectStats:
    return await repository.stats(db, PROJECTS.readable_args(db.principal))


async def validate_name(db: TenantSession, name: str | None, project_id: UUID | None) -> NameValidation:
    """Length, and whether a project the caller can read holds the name (decision 0022)."""
    name = (name or "").strip()
    if not name:
        return NameValidation(valid=False, error="Project name is required")
    if len(name) < NAME_MIN:
        return NameValidation(valid=False, error=f"Project name must be at least {NAME_MIN} characters")
    if len(name) > NAME_MAX:
        return NameValidation(valid=False, error=f"Project name cannot exceed {NAME_MAX} characters")
    scope = PROJECTS.readable_args(db.principal)
    if await repository.name_taken(db, scope, name, project_id):
        return NameValidation(
            valid=False,
            error="A project with this name already exists",
            suggestion=await _suggest(db, name),
        )
    return NameValidation(valid=True)


async def _suggest(db: TenantSession, name: str) -> str | None:
    scope = PROJECTS.readable_args(db.principal)
    for number in range(2, 20):
        suffix = f" {number}"
        candidate = name[: NAME_MAX - len(suffix)] + suffix
        if not await repository.name_taken(db, scope, candidate, None):
            return candidate
    return None
