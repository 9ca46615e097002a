"""Wire shapes of habits (contract §2.4, §3.3; docs/habits.md)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, SerializationInfo, SerializerFunctionWrapHandler, field_validator, model_serializer

from kijko_core.projects.models import CreatorId
from kijko_core.skills.models import Skill
from kijko_core.wire import PageQuery, WireInput, WireModel

#: Largest ``config`` (its JSON): free-form objects on the wire are capped at 64 KiB.
CONFIG_MAX_BYTES = 64 * 1024
CRON_MAX = 200
TIMEZONE_MAX = 64
DESCRIPTION_MAX = 500

Cron = Annotated[str, Field(min_length=1, max_length=CRON_MAX)]
Timezone = Annotated[str, Field(min_length=1, max_length=TIMEZONE_MAX)]
ScheduleDescription = Annotated[str, Field(max_length=DESCRIPTION_MAX)]


def _config_capped(value: Any) -> Any:
    if isinstance(value, dict) and len(json.dumps(value, ensure_ascii=False).encode()) > CONFIG_MAX_BYTES:
        raise ValueError(f"config is larger than {CONFIG_MAX_BYTES} bytes")
    return value


class Habit(WireModel):
    """A skill run on a cron schedule. The fields are the columns of ``kijko.habits``
    (the repository selects exactly these); ``organizationId`` is read for the access check,
    never sent."""

    id: UUID
    organization_id: UUID = Field(exclude=True)
    skill_id: UUID
    user_id: CreatorId
    schedule_cron: str
    schedule_description: str | None = None
    timezone: str
    last_run_at: datetime | None = None
    #: Absent when the habit is inactive (contract §3.3).
    next_run_at: datetime | None = None
    run_count: int
    is_active: bool
    config: dict[str, Any]
    consecutive_failures: int
    last_error_message: str | None = None
    created_at: datetime
    updated_at: datetime

    @model_serializer(mode="wrap")
    def _without_next_run(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        key = "nextRunAt" if info.by_alias else "next_run_at"
        if data.get(key) is None:
            data.pop(key, None)
        return data


class HabitWithSkill(Habit):
    """A habit with its skill (the full object, contract §3.3)."""

    skill: Skill


class HabitPage(WireModel):
    """``{habits, total, page, pageSize, hasMore}`` (contract §1.4)."""

    habits: list[HabitWithSkill]
    total: int
    page: int
    page_size: int
    has_more: bool


class CreateHabit(WireInput):
    skill_id: UUID
    #: Exactly five fields (docs/habits.md#cron).
    schedule_cron: Cron
    schedule_description: ScheduleDescription | None = None
    timezone: Timezone = "UTC"
    config: dict[str, Any] = Field(default_factory=dict)
    is_active: bool = True

    _capped = field_validator("config")(_config_capped)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _optional() -> Any:
    """Absent = unchanged; an explicit null is refused (see projects.models._optional)."""
    return Field(default=None, json_schema_extra=_no_default)


class UpdateHabit(WireInput):
    """Partial update: absent = unchanged; ``null`` clears ``scheduleDescription``."""

    schedule_cron: Cron = _optional()
    schedule_description: ScheduleDescription | None = None
    timezone: Timezone = _optional()
    config: dict[str, Any] = _optional()
    is_active: bool = _optional()

    _capped = field_validator("config")(_config_capped)

    @field_validator("schedule_cron", "timezone", "config", "is_active", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class HabitListQuery(PageQuery):
    skill_id: UUID | None = None
    is_active: bool | None = None


class RunNowResponse(WireModel):
    execution_id: UUID
    status: Literal["queued", "running"]
    message: str


class UpcomingRun(WireModel):
    habit_id: UUID
    skill_name: str
    next_run_at: datetime


class HabitStats(WireModel):
    total_habits: int
    active_habits: int
    total_runs: int
    failed_habits: int
    upcoming_runs: list[UpcomingRun]


class ValidateCron(WireInput):
    cron: Annotated[str, Field(max_length=CRON_MAX)]
    #: Beyond the contract: the zone ``nextRuns`` are computed in (default UTC).
    timezone: Timezone = "UTC"


class CronValidation(WireModel):
    is_valid: bool
    error: str | None = None
    description: str | None = None
    next_runs: list[datetime] | None = None
