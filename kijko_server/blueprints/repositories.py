"""Contract §2.2.2 (a project's repositories), §2.2.6 validate-repository and §2.2.7
recent-repos."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_request

from kijko_core.errors import ValidationFailed
from kijko_core.projects.models import ProjectNotFound
from kijko_core.repositories import service
from kijko_core.repositories.models import (
    AddRepository,
    ProjectRepository,
    RecentRepoList,
    RepositoryExists,
    RepositoryList,
    RepositoryNotFound,
    RepositoryValidation,
    UserNotFound,
    ValidateRepository,
)
from kijko_core.wire import Success
from kijko_server.openapi import responds
from kijko_server.paths import entity_id, parse_project_id
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("project_repositories", __name__, url_prefix="/api/v1")


@bp.post("/projects/validate-repository")
@responds(*TENANT_ERRORS)
@validate_request(ValidateRepository)
@validate_response(RepositoryValidation)
async def validate_repository(data: ValidateRepository) -> RepositoryValidation:
    """Check a repository URL: a supported provider and shape, and reachable with
    ``git ls-remote`` through the egress guard. The answer is 200 either way."""
    async with tenant(readonly=True):
        pass  # the caller is a member of the organization; git runs outside the transaction
    return await service.validate(runtime().settings, data.url)


@bp.get("/projects/<project_id>/repositories")
@responds(*TENANT_ERRORS, ProjectNotFound)
@validate_response(RepositoryList)
async def list_repositories(project_id: str) -> RepositoryList:
    """The project's repositories, oldest first."""
    async with tenant(readonly=True) as db:
        return RepositoryList(await service.list_repositories(db, parse_project_id(project_id)))


@bp.post("/projects/<project_id>/repositories")
@responds(*TENANT_ERRORS, ProjectNotFound, ValidationFailed, RepositoryExists)
@validate_request(AddRepository)
@validate_response(ProjectRepository, 201)
async def add_repository(project_id: str, data: AddRepository) -> tuple[ProjectRepository, int]:
    """Add a repository (status ``pending``; its name derived from the URL) and count it in
    the project's ``totalRepos``."""
    async with tenant() as db:
        return await service.add(db, runtime().settings, parse_project_id(project_id), data), 201


@bp.delete("/projects/<project_id>/repositories/<repo_id>")
@responds(*TENANT_ERRORS, ProjectNotFound, RepositoryNotFound)
@validate_response(Success)
async def remove_repository(project_id: str, repo_id: str) -> Success:
    """Remove a repository from the project and from its ``totalRepos``."""
    async with tenant() as db:
        await service.remove(db, parse_project_id(project_id), entity_id(repo_id, RepositoryNotFound))
    return Success()


@bp.get("/users/<user_id>/recent-repos")
@responds(*TENANT_ERRORS, UserNotFound)
@validate_response(RecentRepoList)
async def recent_repositories(user_id: str) -> RecentRepoList:
    """The caller's five most recently added repositories (``me`` and ``current-user`` name
    the caller; another user's id is 404)."""
    async with tenant(readonly=True) as db:
        return RecentRepoList(await service.recent(db, user_id))
