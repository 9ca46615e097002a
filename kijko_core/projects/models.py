"""Wire shapes of projects (contract §3.1) and the errors of the domain."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    Field,
    PlainSerializer,
    PrivateAttr,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from kijko_core.errors import Conflict, NotFound
from kijko_core.members.models import ProjectMember
from kijko_core.repositories.models import ProjectRepository
from kijko_core.sources.models import ProjectFile
from kijko_core.wire import PageQuery, WireInput, WireModel

ProjectType = Literal["repository", "files", "manual"]
ProjectStatus = Literal["draft", "processing", "active", "error"]
ProjectPrivacy = Literal["private", "shared"]
ChunkingStrategy = Literal["semantic", "fixed", "recursive", "custom"]
ProjectCreationStep = Literal["type_selection", "basic_info", "source_config", "team_setup", "settings", "review"]
NEXT_STEPS: list[ProjectCreationStep] = ["source_config", "team_setup", "settings", "review"]

NAME_MIN, NAME_MAX = 3, 50
ProjectName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=NAME_MIN, max_length=NAME_MAX)]
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


# --- the wizard-only settings (contract §3.1 "Wizard-only structures"), under customSettings ---

OutputFormat = Literal["json", "markdown", "vector"]
NotificationLevel = Literal["real-time", "daily", "weekly", "disabled"]
PersonaType = Literal["alex", "maya", "sam"]
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=200)]
#: Largest customSettings (its JSON, manualContent aside) and largest manualContent.
CUSTOM_SETTINGS_MAX_BYTES = 16 * 1024
MANUAL_CONTENT_MAX_CHARS = 500_000


class MetadataOptions(WireInput):
    function_signatures: bool = True
    import_dependencies: bool = True
    git_history: bool = False
    file_structure: bool = True
    custom_annotations: bool = False


class PatternFilters(WireInput):
    language_patterns: Annotated[list[Pattern], Field(max_length=100)] = Field(default_factory=list)
    exclude_patterns: Annotated[list[Pattern], Field(max_length=100)] = Field(default_factory=list)


class ProcessingOptions(WireInput):
    anonymize_secrets: bool = True
    parallel_processing: bool = True
    real_time_incremental: bool = False


class CustomSettings(WireInput):
    """What the wizard stores on a project beyond the contract's Project fields; each field
    is optional (absent = not chosen), unknown keys are ignored (decision 0014)."""

    output_format: OutputFormat | None = None
    embedding_model: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    metadata_options: MetadataOptions | None = None
    pattern_filters: PatternFilters | None = None
    processing_options: ProcessingOptions | None = None
    default_notification_level: NotificationLevel | None = None
    persona: PersonaType | None = None

    def stored(self) -> dict[str, Any]:
        """The JSON kept in ``projects.custom_settings``: the wire form, chosen fields only."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, include=set(CustomSettings.model_fields))


class CustomSettingsInput(CustomSettings):
    """``customSettings`` in a create or update body: the settings, and a manual project's
    text (kept apart from the Project, read by ingestion; ``null`` clears it)."""

    manual_content: Annotated[str, Field(max_length=MANUAL_CONTENT_MAX_CHARS)] | None = None

    @model_validator(mode="after")
    def _capped(self) -> CustomSettingsInput:
        if len(json.dumps(self.stored())) > CUSTOM_SETTINGS_MAX_BYTES:
            raise ValueError(f"customSettings is larger than {CUSTOM_SETTINGS_MAX_BYTES} bytes")
        return self


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
    custom_settings: CustomSettings
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
    # Beyond the contract: the project's uploaded files and a manual project's text.
    files: list[ProjectFile] = Field(default_factory=list)
    manual_content: str | None = None


class CreateProject(WireInput):
    name: ProjectName
    description: Description | None = None
    type: ProjectType
    privacy: ProjectPrivacy = "private"
    chunking_strategy: ChunkingStrategy = "semantic"
    include_metadata: bool = True
    anonymize_secrets: bool = True
    custom_settings: CustomSettingsInput | None = None


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
    #: The keys given replace those keys; the others stay.
    custom_settings: CustomSettingsInput = _optional()

    @field_validator(
        "name",
        "type",
        "privacy",
        "chunking_strategy",
        "include_metadata",
        "anonymize_secrets",
        "custom_settings",
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
