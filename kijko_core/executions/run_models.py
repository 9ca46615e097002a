"""The wire of running skills (contract §2.3 execute/test, §2.6 cancel/retry, §3.2
ExecuteSkillResponse; docs/executions.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from kijko_core.wire import WireInput, WireModel

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
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
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
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
