"""Wire shapes of skills (contract §3.2, docs/skills.md): the Skill, its parameters and input
schema, and the request bodies of §2.3.

Beyond the contract: ``skillType`` / ``typeConfig`` (how the skill runs, ``kijko_core.plugins``),
``systemPrompt``, ``version`` (bumped by every change of what runs) and ``organizationId``.
Community features are not offered in this version: ``isPublic`` is always false,
``starCount`` and ``ratingCount`` 0, ``rating`` null (decision 0100).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    computed_field,
    field_validator,
    model_validator,
)

from kijko_core.projects.models import CreatorId
from kijko_core.wire import PageQuery, WireInput, WireModel, reject_nul

SkillCategory = Literal["analysis", "generation", "transformation", "communication", "automation", "custom"]
SkillOutputFormat = Literal["markdown", "json", "text", "html", "code"]
InputType = Literal["string", "number", "boolean", "array", "object"]

DEFAULT_MODEL = "claude-3-5-sonnet-20241022"
DEFAULT_SKILL_TYPE = "llm"

NAME_MIN, NAME_MAX = 2, 100
DESCRIPTION_MAX = 2000
TEMPLATE_MIN, TEMPLATE_MAX = 10, 100_000
SYSTEM_PROMPT_MAX = 100_000
MODEL_MAX = 200
INPUT_FIELDS_MAX = 50
INPUT_FIELD_DESCRIPTION_MAX = 500
STOP_SEQUENCES_MAX = 4
STOP_SEQUENCE_MAX_CHARS = 100
MAX_TOKENS_MAX = 200_000
TOP_K_MAX = 1000
#: Free-form JSON on a skill (an input field's default, the type's configuration).
JSON_MAX_BYTES = 64 * 1024
#: ``skillIds`` of a bulk action.
BULK_MAX = 500

#: true or false only (not "yes", 1…).
StrictBool = Annotated[bool, Strict()]
SkillName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=NAME_MIN, max_length=NAME_MAX)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX)]
PromptTemplate = Annotated[str, Field(min_length=TEMPLATE_MIN, max_length=TEMPLATE_MAX)]
SystemPrompt = Annotated[str, Field(max_length=SYSTEM_PROMPT_MAX)]
ModelId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MODEL_MAX)]
SkillTypeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
#: An input's name: what ``{{name}}`` refers to (identifier-like, so paths stay unambiguous).
InputName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _capped_json(value: Any, what: str) -> Any:
    if json_size(value) > JSON_MAX_BYTES:
        raise ValueError(f"{what} is larger than {JSON_MAX_BYTES // 1024} KiB")
    return value


_TYPE_CHECKS: dict[str, Any] = {
    "string": lambda value: isinstance(value, str),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
}


def matches_type(value: Any, kind: str) -> bool:
    """Whether a JSON value is of an input type (``true`` is no number)."""
    return bool(_TYPE_CHECKS[kind](value))


class SkillParameters(BaseModel):
    """The provider parameters (contract §3.2): snake_case keys, passed through as written.
    Unknown keys are refused (they would be silently ignored by every provider)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_MAX, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    top_k: int | None = Field(default=None, ge=1, le=TOP_K_MAX, strict=True)
    stop_sequences: (
        Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=STOP_SEQUENCE_MAX_CHARS, strict=True)]],
            Field(max_length=STOP_SEQUENCES_MAX),
        ]
        | None
    ) = None

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return reject_nul(value)

    def stored(self) -> dict[str, Any]:
        """The JSON kept in ``skills.parameters``: the keys given, none null."""
        return self.model_dump(exclude_none=True)


DEFAULT_PARAMETERS: dict[str, Any] = {"temperature": 1, "max_tokens": 4096}


class InputSchemaField(WireInput):
    """One input of a skill (contract §3.2: a list of these, not a JSON Schema object)."""

    name: InputName
    type: InputType
    description: Annotated[str, Field(max_length=INPUT_FIELD_DESCRIPTION_MAX)] | None = None
    required: StrictBool = False
    default: Any = None

    @field_validator("default")
    @classmethod
    def _default_capped(cls, value: Any) -> Any:
        return _capped_json(value, "default")

    @model_validator(mode="after")
    def _default_matches(self) -> InputSchemaField:
        if self.default is not None and not matches_type(self.default, self.type):
            raise ValueError(f"default must be of type {self.type}")
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


InputSchema = Annotated[list[InputSchemaField], Field(max_length=INPUT_FIELDS_MAX)]


def _unique_names(fields: list[InputSchemaField] | None) -> list[InputSchemaField] | None:
    if fields is None:
        return None
    seen: set[str] = set()
    for item in fields:
        if item.name in seen:
            raise ValueError("input names must be unique")
        seen.add(item.name)
    return fields


class Skill(WireModel):
    """A skill as the API answers it; its fields are also the columns of ``kijko.skills`` that
    are read (``kijko_core.db.sql.Table``)."""

    id: UUID
    organization_id: UUID
    user_id: CreatorId
    name: str
    description: str | None = None
    category: SkillCategory
    skill_type: str
    type_config: dict[str, Any]
    prompt_template: str
    system_prompt: str | None = None
    model: str
    parameters: dict[str, Any]
    input_schema: list[InputSchemaField]
    output_format: SkillOutputFormat
    is_active: bool
    execution_count: int
    last_executed_at: datetime | None = None
    version: int
    created_at: datetime
    updated_at: datetime

    # Community skills are not offered (decision 0100): the contract's fields with the values
    # of a private, unrated skill, so the frontend's cards render.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_public(self) -> bool:
        return False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def star_count(self) -> int:
        return 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rating(self) -> float | None:
        return None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rating_count(self) -> int:
        return 0


def skill_from_row(row: Any) -> Skill:
    """A ``kijko.skills`` row (asyncpg record or mapping with the columns of :class:`Skill`)."""
    return Skill.model_validate(dict(row))


class SkillList(WireModel):
    """``GET /skills``: ``{skills, total, page, pageSize, hasMore}`` (contract §1.4)."""

    skills: list[Skill]
    total: int
    page: int
    page_size: int
    has_more: bool


class SkillListQuery(PageQuery):
    category: SkillCategory | None = None
    is_active: bool | None = None
    search: Annotated[str, Field(max_length=200)] | None = None


class _Definition(WireInput):
    """What create, update and import share: the definition's validators."""

    @field_validator("type_config", check_fields=False)
    @classmethod
    def _config_capped(cls, value: Any) -> Any:
        return value if value is None else _capped_json(value, "typeConfig")

    @field_validator("input_schema", check_fields=False)
    @classmethod
    def _unique_inputs(cls, value: list[InputSchemaField] | None) -> list[InputSchemaField] | None:
        return _unique_names(value)


class CreateSkill(_Definition):
    """``CreateSkillRequest`` with the contract's defaults (+ skillType, typeConfig, systemPrompt)."""

    name: SkillName
    description: Description | None = None
    category: SkillCategory = "custom"
    prompt_template: PromptTemplate
    system_prompt: SystemPrompt | None = None
    model: ModelId = DEFAULT_MODEL
    parameters: SkillParameters = Field(default_factory=lambda: SkillParameters(**DEFAULT_PARAMETERS))
    input_schema: InputSchema = Field(default_factory=list)
    output_format: SkillOutputFormat = "markdown"
    is_active: StrictBool = True
    skill_type: SkillTypeName = DEFAULT_SKILL_TYPE
    type_config: dict[str, Any] = Field(default_factory=dict)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _optional() -> Any:
    """Absent = unchanged; typed without None, so an explicit null is refused (the projects'
    rule, ``UpdateProject``)."""
    return Field(default=None, json_schema_extra=_no_default)


class UpdateSkill(_Definition):
    """Partial update (PUT and PATCH): absent fields stay; ``null`` clears ``description`` and
    ``systemPrompt``; the other fields cannot be null."""

    name: SkillName = _optional()
    description: Description | None = None
    category: SkillCategory = _optional()
    prompt_template: PromptTemplate = _optional()
    system_prompt: SystemPrompt | None = None
    model: ModelId = _optional()
    parameters: SkillParameters = _optional()
    input_schema: InputSchema = _optional()
    output_format: SkillOutputFormat = _optional()
    is_active: StrictBool = _optional()
    skill_type: SkillTypeName = _optional()
    type_config: dict[str, Any] = _optional()

    @field_validator(
        "name",
        "category",
        "prompt_template",
        "model",
        "parameters",
        "input_schema",
        "output_format",
        "is_active",
        "skill_type",
        "type_config",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class DuplicateSkill(WireInput):
    new_name: SkillName | None = None


class BulkSkills(WireInput):
    """``{skillIds}``: unknown, malformed and other organizations' ids are skipped."""

    skill_ids: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=BULK_MAX)]


class BulkResult(WireModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    success: Literal[True] = True
    count: int


class ExportedSkill(WireModel):
    """A skill without its identity and counters (contract §2.3 export)."""

    name: str
    description: str | None = None
    category: SkillCategory
    skill_type: str
    type_config: dict[str, Any]
    prompt_template: str
    system_prompt: str | None = None
    model: str
    parameters: dict[str, Any]
    input_schema: list[InputSchemaField]
    output_format: SkillOutputFormat
    is_active: bool


class SkillExport(WireModel):
    skill: ExportedSkill
    version: Literal["1.0"] = "1.0"


class ImportSkill(WireInput):
    """``{skill, version}``: the skill validated like a create; only version "1.0" is read."""

    skill: CreateSkill
    #: Only the format this version writes; anything else is a 422 on ``version``.
    version: Literal["1.0"]


#: Fields whose change changes what runs: the skill's ``version`` goes up (decision 0101).
RUN_FIELDS = (
    "skill_type",
    "type_config",
    "prompt_template",
    "system_prompt",
    "model",
    "parameters",
    "input_schema",
    "output_format",
)
