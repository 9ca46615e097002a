"""Wire shapes of executions: the execution record, the execution with its skill, the list
filters and the read side's answers (contract §3.5, docs/execution-history.md); and the wire of
running skills (contract §2.3 execute/test, §2.6 cancel/retry, §3.2 ExecuteSkillResponse;
docs/executions.md).

Beyond the contract: ``currency`` (the lower-case ISO 4217 code ``costCents`` is in; null when
the execution cost nothing it knows of) and ``sourceExecutionId`` (the execution a retry or a
replay was made from).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, get_args
from uuid import UUID

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from kijko_core import prices
from kijko_core.projects.models import CreatorId
from kijko_core.skills.models import Skill, skill_from_row
from kijko_core.wire import WireInput, WireModel

ExecutionStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
ExecutionType = Literal["manual", "habit", "reflex", "api"]
EXECUTION_STATUSES: Final[tuple[str, ...]] = get_args(ExecutionStatus)
EXECUTION_TYPES: Final[tuple[str, ...]] = get_args(ExecutionType)
#: Not finished yet: never deleted by a cleanup, listed by ``/executions/running``.
ACTIVE_STATUSES: Final[tuple[str, ...]] = ("pending", "running")

#: The columns :func:`execution_from_row` reads (every query of the read side selects them).
ROW_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "skill_id",
    "user_id",
    "execution_type",
    "reference_id",
    "source_execution_id",
    "input",
    "output",
    "prompt_tokens",
    "completion_tokens",
    "duration_ms",
    "cost",
    "currency",
    "status",
    "error_message",
    "error_code",
    "executed_at",
    "completed_at",
)


class SkillExecution(WireModel):
    """One run of a skill (contract §3.5). ``costCents`` is the stored, unrounded cost rounded
    once to whole cents, half to even; ``tokensUsed`` is prompt + completion tokens."""

    id: UUID
    skill_id: UUID | None = None
    user_id: CreatorId
    execution_type: ExecutionType
    reference_id: UUID | None = None
    source_execution_id: UUID | None = None
    input: dict[str, Any] | None = None
    output: str | None = None
    tokens_used: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_ms: int | None = None
    cost_cents: int | None = None
    currency: str | None = None
    status: ExecutionStatus
    error_message: str | None = None
    error_code: str | None = None
    executed_at: datetime
    completed_at: datetime | None = None


class ExecutionWithSkill(SkillExecution):
    """An execution and its skill as it is now (``null`` once the skill is deleted)."""

    skill: Skill | None = None


def tokens_used(prompt_tokens: int | None, completion_tokens: int | None) -> int | None:
    """Prompt + completion tokens; null when neither is known."""
    if prompt_tokens is None and completion_tokens is None:
        return None
    return (prompt_tokens or 0) + (completion_tokens or 0)


def cost_cents(cost: Decimal | None) -> int | None:
    return None if cost is None else prices.cents(cost)


def _fields(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "skill_id": row["skill_id"],
        "user_id": row["user_id"],
        "execution_type": row["execution_type"],
        "reference_id": row["reference_id"],
        "source_execution_id": row["source_execution_id"],
        "input": row["input"],
        "output": row["output"],
        "tokens_used": tokens_used(row["prompt_tokens"], row["completion_tokens"]),
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "duration_ms": row["duration_ms"],
        "cost_cents": cost_cents(row["cost"]),
        "currency": row["currency"],
        "status": row["status"],
        "error_message": row["error_message"],
        "error_code": row["error_code"],
        "executed_at": row["executed_at"],
        "completed_at": row["completed_at"],
    }


def execution_from_row(row: Mapping[str, Any]) -> SkillExecution:
    """A ``kijko.skill_executions`` row (the :data:`ROW_COLUMNS`) as the wire's execution."""
    return SkillExecution.model_validate(_fields(row))


def execution_with_skill_from_row(row: Mapping[str, Any]) -> ExecutionWithSkill:
    """The same, with the row's ``skill`` column: the skill row as JSON (``to_jsonb``), or null."""
    skill = row["skill"]
    return ExecutionWithSkill.model_validate(
        {**_fields(row), "skill": None if skill is None else skill_from_row(skill)}
    )


# --- queries ---------------------------------------------------------------------------------

#: Largest page of any execution list.
LIST_MAX: Final = 100


def _in_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        # A naive time would be read in someone's local zone; the API is UTC throughout.
        raise ValueError("needs a time zone (UTC 'Z' or an offset)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant
        raise ValueError("out of range") from None


#: A query's instant: with a zone, converted to UTC.
ZonedDatetime = Annotated[datetime, AfterValidator(_in_utc)]


class Filters(WireInput):
    """What ``GET /executions`` and ``/executions/export`` filter on (contract §3.5
    ``ExecutionFilters``): dates are inclusive bounds on ``executedAt``."""

    skill_id: UUID | None = None
    status: ExecutionStatus | None = None
    execution_type: ExecutionType | None = None
    start_date: ZonedDatetime | None = None
    end_date: ZonedDatetime | None = None


class ExecutionFilters(Filters):
    """``GET /executions``: the filters and a page."""

    limit: int = Field(default=20, ge=1, le=LIST_MAX)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class ExecutionList(WireModel):
    """``{executions, total, page, pageSize, hasMore}`` with ``page = floor(offset/limit)+1``,
    ``pageSize = limit`` (contract §1.4)."""

    executions: list[ExecutionWithSkill]
    total: int
    page: int
    page_size: int
    has_more: bool


class HistoryQuery(WireInput):
    """``/skills/:id/executions``, ``/habits/:id/executions``, ``/reflexes/:id/executions``."""

    limit: int = Field(default=10, ge=1, le=LIST_MAX)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class History(WireModel):
    """``{executions, total}`` (contract §1.4)."""

    executions: list[SkillExecution]
    total: int


class SkillHistoryQuery(WireInput):
    """``GET /skill-executions?skillId=&limit=`` (the skill history tab). ``skillId`` is
    required; checked once the tenant session is open (absent → 422 on ``skillId``)."""

    skill_id: UUID | None = None
    limit: int = Field(default=10, ge=1, le=LIST_MAX)


class SkillHistory(WireModel):
    """``{executions, hasMore}``."""

    executions: list[SkillExecution]
    has_more: bool


class RecentQuery(WireInput):
    limit: int = Field(default=10, ge=1, le=LIST_MAX)


#: Most pending and running executions ``/executions/running`` lists (oldest first).
RUNNING_MAX: Final = 500


# --- running skills ---------------------------------------------------------------------------

#: Free-form JSON objects on the wire (``input``, ``typeConfig``, ``parameters``).
JSON_MAX_BYTES = 64 * 1024
#: The longest ``?wait=`` (seconds).
WAIT_MAX_SECONDS = 30
TEMPLATE_MAX = 100_000
INPUT_FIELDS_MAX = 50


def capped_object(value: Any, what: str) -> Any:
    if value is not None and len(json.dumps(value, ensure_ascii=False).encode()) > JSON_MAX_BYTES:
        raise ValueError(f"{what} is larger than {JSON_MAX_BYTES // 1024} KiB")
    return value


class ExecuteSkill(WireInput):
    """``POST /skills/:id/execute``. ``executionType``: ``manual`` (default) or ``api`` — habit
    and reflex runs are started by habits and reflexes, never by a client (decision 0110).
    ``referenceId`` is accepted for the contract's sake and not stored (only habits and
    reflexes set it: a client could otherwise file runs under someone's habit). ``skillId``
    (redundant with the path) is ignored."""

    input: dict[str, Any] | None = None
    execution_type: Literal["manual", "api"] = "manual"
    reference_id: Annotated[str, StringConstraints(max_length=100)] | None = None
    skill_id: Annotated[str, StringConstraints(max_length=100)] | None = None

    @field_validator("input")
    @classmethod
    def _capped(cls, value: Any) -> Any:
        return capped_object(value, "input")


class ExecuteQuery(WireInput):
    """``?wait=N``: wait up to N seconds (0 < N ≤ 30) for the outcome."""

    wait: float | None = Field(default=None, gt=0, le=WAIT_MAX_SECONDS, allow_inf_nan=False)


class ExecuteSkillResponse(WireModel):
    """Contract §3.2. ``output``/``tokensUsed``/``durationMs`` once completed; ``error`` (the
    errorMessage) once failed or cancelled; ``errorCode`` beyond the contract."""

    execution_id: str
    status: ExecutionStatus
    output: str | None = None
    tokens_used: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    error_code: str | None = None


class TestSkill(WireInput):
    """``POST /skills/:id/test``: the input (validated against the skill's inputSchema)."""

    input: dict[str, Any] | None = None

    @field_validator("input")
    @classmethod
    def _capped(cls, value: Any) -> Any:
        return capped_object(value, "input")


class InputFieldDraft(WireInput):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    type: Literal["string", "number", "boolean", "array", "object"]
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    required: bool = False
    default: Any = None


class TestDraft(WireInput):
    """``POST /skills/test``: an unsaved configuration, run once. ``inputSchema`` is optional:
    without it, the input is used as given (every placeholder must still be an input name)."""

    prompt_template: Annotated[str, StringConstraints(min_length=1, max_length=TEMPLATE_MAX)]
    system_prompt: Annotated[str, StringConstraints(max_length=TEMPLATE_MAX)] | None = None
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "claude-3-5-sonnet-20241022"
    parameters: dict[str, Any] | None = None
    input: dict[str, Any] | None = None
    input_schema: Annotated[list[InputFieldDraft], Field(max_length=INPUT_FIELDS_MAX)] | None = None
    skill_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")] = "llm"
    type_config: dict[str, Any] | None = None
    output_format: Literal["markdown", "json", "text", "html", "code"] = "markdown"

    @field_validator("input", "parameters", "type_config")
    @classmethod
    def _capped(cls, value: Any) -> Any:
        return capped_object(value, "the object")


class RetryResponse(WireModel):
    """``POST /executions/:id/retry`` and ``/replay``."""

    new_execution_id: str
    status: ExecutionStatus
