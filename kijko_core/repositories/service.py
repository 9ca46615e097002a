"""The rules of repositories: they belong to a project (reading them needs reading the project,
adding and removing them editing it), the URL is one Kijko accepts, and "reachable" is a
``git ls-remote`` through the egress guard."""

from __future__ import annotations

from uuid import UUID

import structlog

from kijko_core import git
from kijko_core.config import Settings
from kijko_core.db.session import TenantSession
from kijko_core.errors import ValidationFailed
from kijko_core.permissions import PROJECTS, Action
from kijko_core.projects.access import project_for
from kijko_core.projects.models import Project
from kijko_core.repositories import repository, urls
from kijko_core.repositories.models import (
    AddRepository,
    ProjectRepository,
    RecentRepo,
    RepositoryNotFound,
    RepositoryValidation,
    UserNotFound,
)

log = structlog.get_logger("kijko.repositories")

RECENT_LIMIT = 5
#: ``/users/{userId}/…`` names the caller with these as well as with their own id.
CALLER_ALIASES = frozenset({"me", "current-user"})
PRIVATE = "This repository is private. Please authenticate to access it."
UNREACHABLE = "Repository not found or not reachable"


async def list_repositories(db: TenantSession, project_id: UUID) -> list[ProjectRepository]:
    project = await project_for(db, project_id, Action.READ)
    return await for_project(db, project)


async def for_project(db: TenantSession, project: Project) -> list[ProjectRepository]:
    """The repositories of a project the caller has read (``GET /projects/{id}/full``)."""
    return [r.wire() for r in await repository.list_for_project(db, project.organization_id, project.id)]


async def add(db: TenantSession, settings: Settings, project_id: UUID, data: AddRepository) -> ProjectRepository:
    # The project row stays locked until commit: it cannot be deleted under the insert, and
    # concurrent adds count one after the other.
    project = await project_for(db, project_id, Action.EDIT, lock=True)
    try:
        parsed = urls.parse(settings, data.repository_url, data.provider)
    except urls.InvalidRepositoryUrl as invalid:
        raise ValidationFailed(str(invalid), field="repositoryUrl") from None
    record = await repository.insert(
        db,
        project.organization_id,
        project.id,
        db.principal.user_id,
        provider=parsed.provider,
        url=parsed.url,
        name=parsed.name,
        branch=data.branch,
        include_paths=data.include_paths,
        exclude_paths=data.exclude_paths,
    )
    return record.wire()


async def remove(db: TenantSession, project_id: UUID, repository_id: UUID) -> None:
    project = await project_for(db, project_id, Action.EDIT, lock=True)
    if not await repository.delete(db, project.organization_id, project.id, repository_id):
        raise RepositoryNotFound()


async def recent(db: TenantSession, user: str) -> list[RecentRepo]:
    """The caller's five most recently added repositories; ``user`` must name the caller."""
    principal = db.principal
    if user not in CALLER_ALIASES:
        try:
            named = UUID(user)
        except ValueError:
            raise UserNotFound() from None
        if named != principal.user_id:
            raise UserNotFound()  # another user's: the same 404 as an unknown one
    return await repository.recent(db, PROJECTS.readable_args(principal), RECENT_LIMIT)


async def validate(settings: Settings, url: str | None) -> RepositoryValidation:
    """Is ``url`` a repository Kijko accepts, and does it answer ``git ls-remote``?

    Runs git (bounded by ``KIJKO_GIT_TIMEOUT_SECONDS``): call it outside any transaction."""
    try:
        parsed = urls.parse(settings, url or "")
    except urls.InvalidRepositoryUrl as invalid:
        return RepositoryValidation(valid=False, error=str(invalid))
    found = RepositoryValidation(valid=True, provider=parsed.provider, repo_name=parsed.name)  # type: ignore[arg-type]
    try:
        await git.ls_remote(settings, parsed.url, patterns=("HEAD",))
    except git.GitTooLarge:
        return found  # it answered, with more than we read
    except git.GitFailed as failed:
        log.info("repository_unreachable", reason=str(failed))
        error = PRIVATE if str(failed) == git.AUTHENTICATION_REQUIRED else UNREACHABLE
        return found.model_copy(update={"valid": False, "error": error})
    except git.GitError as error:
        log.info("repository_unreachable", reason=str(error))
        return found.model_copy(update={"valid": False, "error": UNREACHABLE})
    return found
