"""Wire shapes of reflexes (contract §3.4) and the request models of §2.5.

The signing secret is never part of ``triggerConfig`` as stored or read: it is stored
encrypted in its own column and shown only where the contract puts it (docs/reflexes.md,
decision 0118): the create response's ``triggerConfig.secret``, ``GET /reflexes/:id/webhook-info``
and ``POST /reflexes/:id/regenerate-secret``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
from pydantic import Field, field_validator

from kijko_core.db.sql import Fragment
from kijko_core.projects.models import CreatorId
from kijko_core.skills.models import Skill
from kijko_core.wire import PageQuery, WireInput, WireModel

#: Every trigger type the contract names (``triggersByType`` keys); plugins may add others.
CONTRACT_TRIGGER_TYPES: tuple[str, ...] = ("webhook", "email", "file_change", "api_call", "schedule", "event")
#: Largest triggerConfig / conditions / test payload, as JSON (free-form objects, wire rules).
JSON_OBJECT_MAX_BYTES = 64 * 1024
TriggerTypeName = Annotated[str, Field(min_length=1, max_length=64)]
FilterOperator = Literal["equals", "contains", "startsWith", "endsWith", "regex"]


def _capped_object(value: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value, separators=(",", ":"))) > JSON_OBJECT_MAX_BYTES:
        raise ValueError(f"{name} is larger than {JSON_OBJECT_MAX_BYTES} bytes")
    return value


class ReflexFilter(WireInput):
    #: A dot path into the payload (``repository.name``, ``items.0.id``).
    field: Annotated[str, Field(min_length=1, max_length=200)]
    operator: FilterOperator
    value: Annotated[str, Field(max_length=1000)]


class ReflexConditions(WireInput):
    """When a trigger runs the skill (docs/reflexes.md#conditions): ``filters`` on dot paths
    and a JMESPath ``expression``; ``matchAll`` (default true) = all must match, false = any."""

    expression: Annotated[str, Field(max_length=1000)] | None = None
    match_all: bool | None = None
    filters: Annotated[list[ReflexFilter], Field(max_length=20)] | None = None


class Reflex(WireModel):
    id: UUID
    skill_id: UUID
    #: The creator; "" when erased (decision 0018). The executions it triggers run as them.
    user_id: CreatorId
    trigger_type: str
    trigger_config: dict[str, Any]
    conditions: ReflexConditions | None = None
    is_active: bool
    trigger_count: int
    last_triggered_at: datetime | None = None
    consecutive_failures: int
    last_error_message: str | None = None
    created_at: datetime
    updated_at: datetime


class CreateReflexResponse(Reflex):
    """The create answer: the reflex (with ``triggerConfig.secret`` for a webhook, shown this
    once) and the generated ``webhookUrl``."""

    webhook_url: str | None = None


#: The columns every read of a reflex selects (``reflex_from_row`` reads them).
COLUMNS = Fragment(
    "id, organization_id, skill_id, user_id, trigger_type, trigger_config, conditions, is_active,"
    " trigger_count, last_triggered_at, consecutive_failures, last_error_message, created_at, updated_at"
)


def reflex_from_row(row: asyncpg.Record | dict[str, Any]) -> Reflex:
    config = row["trigger_config"]
    conditions = row["conditions"]
    return Reflex(
        id=row["id"],
        skill_id=row["skill_id"],
        user_id=row["user_id"],
        trigger_type=row["trigger_type"],
        trigger_config=json.loads(config) if isinstance(config, str) else dict(config),
        conditions=(
            None
            if conditions is None
            else ReflexConditions.model_validate(json.loads(conditions) if isinstance(conditions, str) else conditions)
        ),
        is_active=row["is_active"],
        trigger_count=row["trigger_count"],
        last_triggered_at=row["last_triggered_at"],
        consecutive_failures=row["consecutive_failures"],
        last_error_message=row["last_error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- requests ---


class CreateReflex(WireInput):
    skill_id: Annotated[str, Field(min_length=1, max_length=100)]
    trigger_type: TriggerTypeName
    trigger_config: dict[str, Any]
    conditions: ReflexConditions | None = None
    is_active: bool = True

    @field_validator("trigger_config")
    @classmethod
    def _config_cap(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _capped_object(value, "triggerConfig") or {}


class UpdateReflex(WireInput):
    """Partial update (no ``triggerType`` change): absent = unchanged, ``conditions: null``
    removes the conditions."""

    trigger_config: dict[str, Any] | None = None
    conditions: ReflexConditions | None = None
    is_active: bool | None = None

    @field_validator("trigger_config")
    @classmethod
    def _config_cap(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            raise ValueError("cannot be null")
        return _capped_object(value, "triggerConfig")

    @field_validator("is_active")
    @classmethod
    def _active_not_null(cls, value: bool | None) -> bool | None:
        if value is None:
            raise ValueError("cannot be null")
        return value


class ReflexListQuery(PageQuery):
    skill_id: Annotated[str, Field(max_length=100)] | None = None
    trigger_type: Annotated[str, Field(max_length=64)] | None = None
    is_active: bool | None = None


class ReflexTest(WireInput):
    """``POST /reflexes/:id/test`` (PROPOSAL ``{payload}``)."""

    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("payload")
    @classmethod
    def _payload_cap(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _capped_object(value, "payload") or {}


class ExecutionResult(WireModel):
    output: str | None = None
    tokens_used: int | None = None
    duration_ms: int | None = None


class ReflexTestResult(WireModel):
    success: bool
    conditions_match: bool
    execution_result: ExecutionResult | None = None
    error: str | None = None


class SecretAnswer(WireModel):
    secret: str


class WebhookInfo(WireModel):
    url: str
    secret: str
    method: Literal["POST"]
    sample_payload: dict[str, Any]


class RecentTrigger(WireModel):
    reflex_id: UUID
    skill_name: str
    triggered_at: datetime
    trigger_type: str


class ReflexStats(WireModel):
    total_reflexes: int
    active_reflexes: int
    total_triggers: int
    failed_reflexes: int
    triggers_by_type: dict[str, int]
    recent_triggers: list[RecentTrigger]


class Accepted(WireModel):
    """The receiver's 202: the execution started, or ``matched: false`` (conditions did not
    match, nothing ran). A repeated delivery id answers like the first delivery did."""

    execution_id: UUID | None = None
    matched: bool = True
    duplicate: bool = False


class ReflexWithSkill(Reflex):
    skill: Skill


class ReflexWithSkillPage(WireModel):
    """``GET /reflexes``: ``{reflexes, total, page, pageSize, hasMore}`` (contract §2.5)."""

    reflexes: list[ReflexWithSkill]
    total: int
    page: int
    page_size: int
    has_more: bool
