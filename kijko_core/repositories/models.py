"""Wire shapes of repositories (contract §3.1 ProjectRepository, RecentRepo) and their errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, Field, RootModel, StringConstraints

from kijko_core.errors import Conflict, NotFound
from kijko_core.wire import WireInput, WireModel

GitProvider = Literal["github", "gitlab", "bitbucket", "azure"]
RepositoryStatus = Literal["pending", "connected", "syncing", "error"]

# A git ref name: no control characters, spaces, "..", leading "-" or the characters git
# refuses (git check-ref-format); checked loosely here, git has the last word at clone time.
Branch = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x20\x7f~^:?*\[\\]+$",
    ),
    AfterValidator(lambda name: _ref_name(name)),
]


def _ref_name(name: str) -> str:
    """The rest of git check-ref-format's rules (the pattern above cannot look around)."""
    if (
        name.startswith(("-", "/", "."))
        or name.endswith(("/", ".", ".lock"))
        or ".." in name
        or "@{" in name
        or "//" in name
        or "/." in name
        or name == "@"
    ):
        raise ValueError("not a valid branch name")
    return name


PathPattern = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class RepositoryNotFound(NotFound):
    code = "REPOSITORY_NOT_FOUND"
    default_message = "Repository not found"


class RepositoryExists(Conflict):
    code = "REPOSITORY_EXISTS"
    default_message = "This repository and branch are already in the project"


class UserNotFound(NotFound):
    code = "USER_NOT_FOUND"
    default_message = "User not found"


class ProjectRepository(WireModel):
    id: UUID
    project_id: UUID
    provider: GitProvider
    repository_url: str
    repository_name: str
    branch: str
    status: RepositoryStatus
    last_sync_at: datetime | None = None
    last_commit_hash: str | None = None
    file_count: int | None = None
    include_paths: list[str]
    exclude_paths: list[str]
    created_at: datetime
    updated_at: datetime


class RepositoryRecord(ProjectRepository):
    """A row: the wire fields and who added it (not on the wire)."""

    organization_id: UUID
    user_id: UUID | None = None

    def wire(self) -> ProjectRepository:
        return ProjectRepository.model_validate(self.model_dump(exclude={"organization_id", "user_id"}))


class AddRepository(WireInput):
    provider: GitProvider
    repository_url: Annotated[str, Field(min_length=1, max_length=2048)]
    branch: Branch
    include_paths: Annotated[list[PathPattern], Field(max_length=100)] = Field(default_factory=list)
    exclude_paths: Annotated[list[PathPattern], Field(max_length=100)] = Field(default_factory=list)


class ValidateRepository(WireInput):
    url: Annotated[str, Field(max_length=4096)] | None = None


class RepositoryValidation(WireModel):
    """``{valid, error?, provider?, repoName?}`` (contract §2.2.6)."""

    valid: bool
    error: str | None = None
    provider: GitProvider | None = None
    repo_name: str | None = None


class RecentRepo(WireModel):
    repo_url: str
    repo_name: str
    last_analyzed: datetime
    usage_count: int
    provider: GitProvider


class RepositoryList(RootModel[list[ProjectRepository]]):
    """A plain array (contract §1.4)."""


class RecentRepoList(RootModel[list[RecentRepo]]):
    """A plain array, at most five (contract §2.2.7)."""
