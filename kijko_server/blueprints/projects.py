"""Contract §2.2.1 and §2.2.6: project CRUD, list, stats and name validation."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request

from kijko_core.projects import service
from kijko_core.projects.models import (
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
    ValidateName,
)
from kijko_core.wire import Page, Success
from kijko_server.openapi import responds
from kijko_server.paths import optional_id, parse_project_id
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, tenant

bp = Blueprint("projects", __name__, url_prefix="/api/v1/projects")


@bp.get("")
@responds(*TENANT_ERRORS)
@validate_querystring(ProjectListQuery)
@validate_response(Page[Project])
async def list_projects(query_args: ProjectListQuery) -> Page[Project]:
    """List the projects the caller can see, oldest first, with an optional search."""
    async with tenant(readonly=True) as db:
        return await service.list_projects(db, query_args)


@bp.post("")
@responds(*TENANT_ERRORS, ProjectExists)  # 403 also for viewers
@validate_request(CreateProject)
@validate_response(CreateProjectResponse, 201)
async def create_project(data: CreateProject) -> tuple[CreateProjectResponse, int]:
    """Create a draft project."""
    async with tenant() as db:
        return await service.create(db, data), 201


@bp.get("/stats")
@responds(*TENANT_ERRORS)
@validate_response(ProjectStats)
async def project_stats() -> ProjectStats:
    """Counts and totals over the projects the caller can see."""
    async with tenant(readonly=True) as db:
        return await service.stats(db)


@bp.post("/validate-name")
@responds(*TENANT_ERRORS)
@validate_request(ValidateName)
@validate_response(NameValidation)
async def validate_name(data: ValidateName) -> NameValidation:
    """Check a project name: length, and unique in the organization (case-insensitive)."""
    async with tenant(readonly=True) as db:
        return await service.validate_name(db, data.name, optional_id(data.project_id))


@bp.get("/<project_id>")
@responds(*TENANT_ERRORS, ProjectNotFound)
@validate_response(Project)
async def get_project(project_id: str) -> Project:
    """One project."""
    async with tenant(readonly=True) as db:
        return await service.get(db, parse_project_id(project_id))


@bp.get("/<project_id>/full")
@responds(*TENANT_ERRORS, ProjectNotFound)
@validate_response(ProjectWithRelations)
async def get_project_full(project_id: str) -> ProjectWithRelations:
    """One project with its repositories, members and current ingestion."""
    async with tenant(readonly=True) as db:
        return await service.get_full(db, parse_project_id(project_id))


@bp.route("/<project_id>", methods=["PUT", "PATCH"])
@responds(*TENANT_ERRORS, ProjectNotFound, ProjectExists, InvalidStatus)
@validate_request(UpdateProject)
@validate_response(Project)
async def update_project(project_id: str, data: UpdateProject) -> Project:
    """Change the writable fields given; absent fields stay, null clears the description."""
    async with tenant() as db:
        return await service.update(db, parse_project_id(project_id), data)


@bp.delete("/<project_id>")
@responds(*TENANT_ERRORS, ProjectNotFound)
@validate_response(Success)
async def delete_project(project_id: str) -> Success:
    """Delete a project and everything in it."""
    async with tenant() as db:
        await service.delete(db, parse_project_id(project_id))
    return Success()
