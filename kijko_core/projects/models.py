"""Wire shapes of projects (contract §3.1) and the errors of the domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, PlainSerializer, PrivateAttr, StringConstraints, WithJsonSchema, field_validator

from kijko_core.errors import Conflict, NotFound
from kijko_core.members.models import ProjectMember
from kijko_core.repositories.models import ProjectRepository
from kijko_core.wire import PageQuery, WireInput, WireModel

ProjectType = Literal["repository", "files", "manual"]
ProjectStatus = Literal["draft", "processing", "active", "error"]
ProjectPrivacy = Literal["private", "shared"]
ChunkingStrategy = Literal["semantic", "fixed", "recursive", "custom"]
ProjectCreationStep = Literal[
    "type_selection", "basic_info", "source_config", "team_setup", "settings", "review"
]
NEXT_STEPS: list[ProjectCreationStep] = ["source_config", "team_setup", "settings", "review"]

NAME_MIN, NAME_MAX = 3, 50
ProjectName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=NAME_MIN, max_length=NAME_MAX)
]
Description = Annotated[str, Field(max_length=2000)]


#: The user who created a project, or None when there is none any more: the creator was
#: erased, or a service created it (decision 0018). The contract keeps userId a string, and ""
#: is its placeholder for "no user" (as for invitations).
CreatorId = Annotated[
    UUID | None,
    PlainSerializer(lambda value: "" if value is None else str(value), return_type=str),
    WithJsonSchema(
        {"type": "string", "description": 'The creator\'s user id; "" when the creator was erased or a job created it'}
    ),
]


class ProjectNotFound(NotFound):
    code = "PROJECT_NOT_FOUND"
    default_message = "Project not found"


class ProjectExists(Conflict):
    code = "PROJECT_EXISTS"
    default_message = "A project with this name already exists"


class InvalidStatus(Conflict):
    code = "INVALID_STATUS"
    default_message = "The project's status does not allow this"


class Project(WireModel):
    id: UUID
    user_id: CreatorId
    organization_id: UUID
    name: str
    description: str | None = None
    type: ProjectType
    status: ProjectStatus
    privacy: ProjectPrivacy
    chunking_strategy: ChunkingStrategy
    include_metadata: bool
    anonymize_secrets: bool
    total_repos: int
    total_files: int
    original_tokens: int | None = None
    optimized_tokens: int | None = None
    ingestion_time_seconds: float | None = None
    created_at: datetime
    updated_at: datetime

    # The caller's project membership (kijko_core.permissions.MemberAccess), set by the read
    # that loaded the project for that caller; never on the wire.
    _member_access: Any = PrivateAttr(default=None)

    @property
    def member_access(self) -> Any:
        return self._member_access

    def with_access(self, access: Any) -> Project:
        self._member_access = access
        return self


class ProjectWithRelations(Project):
    """``GET /projects/{id}/full``; the relations fill in as their domains arrive."""

    repositories: list[ProjectRepository] = Field(default_factory=list)
    members: list[ProjectMember] = Field(default_factory=list)
    current_ingestion: dict[str, object] | None = None


class CreateProject(WireInput):
    name: ProjectName
    description: Description | None = None
    type: ProjectType
    privacy: ProjectPrivacy = "private"
    chunking_strategy: ChunkingStrategy = "semantic"
    include_metadata: bool = True
    anonymize_secrets: bool = True


class CreateProjectResponse(WireModel):
    project: Project
    next_steps: list[ProjectCreationStep]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _optional() -> Any:
    """A field that may be absent but not null: typed without ``None``, so the document shows
    neither ``null`` nor a default (absent means unchanged) and an explicit null is refused
    (the default None is never validated, and is only read for fields present in the body)."""
    return Field(default=None, json_schema_extra=_no_default)


class UpdateProject(WireInput):
    """Partial update: absent = unchanged, ``null`` clears ``description``; the other fields
    cannot be null (422 on the field)."""

    name: ProjectName = _optional()
    description: Description | None = None
    type: ProjectType = _optional()
    privacy: ProjectPrivacy = _optional()
    chunking_strategy: ChunkingStrategy = _optional()
    include_metadata: bool = _optional()
    anonymize_secrets: bool = _optional()

    @field_validator(
        "name", "type", "privacy", "chunking_strategy", "include_metadata", "anonymize_secrets",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only for fields present in the body: an absent field keeps its default.
        if value is None:
            raise ValueError("cannot be null")
        return value


class ProjectListQuery(PageQuery):
    search: Annotated[str, Field(max_length=200)] | None = None


class ProjectStats(WireModel):
    total_projects: int
    active_projects: int
    processing_projects: int
    error_projects: int
    total_tokens: int
    total_files: int


class ValidateName(WireInput):
    name: Annotated[str, Field(max_length=500)] | None = None
    project_id: str | None = Field(default=None, max_length=100)


class NameValidation(WireModel):
    valid: bool
    error: str | None = None
    suggestion: str | None = None
