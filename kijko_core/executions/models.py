"""Wire shapes of executions (contract §3.5, docs/execution-history.md): the execution record,
the execution with its skill, the list filters, and the read side's answers.

Beyond the contract: ``currency`` (the lower-case ISO 4217 code ``costCents`` is in; null when
the execution cost nothing it knows of) and ``sourceExecutionId`` (the execution a retry or a
replay was made from).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal, get_args
from uuid import UUID

from pydantic import Field, model_validator

from kijko_core import prices
from kijko_core.projects.models import CreatorId
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

    # The Skill (kijko_core.skills.models) as the skills' own routes answer it.
    skill: dict[str, Any] | None = None


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
    return ExecutionWithSkill.model_validate({**_fields(row), "skill": row["skill"]})


# --- queries ---------------------------------------------------------------------------------

#: Largest page of any execution list.
LIST_MAX: Final = 100


class ExecutionFilters(WireInput):
    """``GET /executions`` and ``/executions/export`` (contract §3.5 ``ExecutionFilters``):
    dates are inclusive bounds on ``executedAt``."""

    skill_id: UUID | None = None
    status: ExecutionStatus | None = None
    execution_type: ExecutionType | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    limit: int = Field(default=20, ge=1, le=LIST_MAX)
    offset: int = Field(default=0, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _dates_have_zones(self) -> ExecutionFilters:
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                # A naive time would be read in the server's zone; the API is UTC throughout.
                raise ValueError(f"{name}: needs a time zone (UTC 'Z' or an offset)")
        return self


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
    """``GET /skill-executions?skillId=&limit=`` (the skill history tab)."""

    skill_id: UUID
    limit: int = Field(default=10, ge=1, le=LIST_MAX)


class SkillHistory(WireModel):
    """``{executions, hasMore}``."""

    executions: list[SkillExecution]
    has_more: bool


class RecentQuery(WireInput):
    limit: int = Field(default=10, ge=1, le=LIST_MAX)


#: Most pending and running executions ``/executions/running`` lists (oldest first).
RUNNING_MAX: Final = 500
