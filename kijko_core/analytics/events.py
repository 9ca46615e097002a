"""What the browser may send: the event types, their properties, and the check of one event.

A batch is checked event by event (contract §2.7): a bad event is refused with its index and
the others are kept. Known property keys are typed (strictly: ``"5"`` is not a count), absent
ones are fine, extra keys are kept — the frontend adds context (``+metrics``, ``project_id``)
— but a properties object is bounded in keys and bytes (docs/analytics.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from kijko_core.wire import WireInput, WireModel

#: Events per request (the browser sends at most 10).
MAX_EVENTS: Final = 50
#: A properties object: at most this many keys at its top level, and this many bytes as JSON.
MAX_PROPERTY_KEYS: Final = 64
MAX_PROPERTIES_BYTES: Final = 8 * 1024
MAX_SESSION_ID: Final = 128
#: How far an event's own timestamp may lie from the server's clock: a tab's queue survives a
#: reload (sessionStorage) and clocks drift, but a row from years ago or ahead is junk that
#: would skew the summary and outlive retention.
MAX_AGE: Final = timedelta(days=7)
MAX_AHEAD: Final = timedelta(hours=1)


class EventType(StrEnum):
    PROJECT_CREATION_STARTED = "project_creation_started"
    PROJECT_STEP_COMPLETED = "project_step_completed"
    INGESTION_STARTED = "ingestion_started"
    INGESTION_PHASE_COMPLETED = "ingestion_phase_completed"
    INGESTION_COMPLETED = "ingestion_completed"
    CONVERSION_SIGNAL = "conversion_signal"
    ERROR_OCCURRED = "error_occurred"
    ERROR_RECOVERED = "error_recovered"
    PERSONA_DETECTED = "persona_detected"
    PERSONA_OVERRIDE = "persona_override"


class ConversionAction(StrEnum):
    COPY_TO_CURSOR = "copy_to_cursor"
    VIEW_PROJECT = "view_project"
    SHARE_PROJECT = "share_project"
    INVITE_TEAM = "invite_team"
    API_DOCS = "api_docs"
    QUERY_NOW = "query_now"
    API_KEY = "api_key"
    SETUP_WEBHOOK = "setup_webhook"
    UPGRADE_PLAN = "upgrade_plan"
    PROCESS_MORE_REPOS = "process_more_repos"


Persona = Literal["alex", "maya", "sam"]
PERSONAS: Final[tuple[str, ...]] = ("alex", "maya", "sam")

_Text = Field(default=None, max_length=200)
_Count = Field(default=None, ge=0)
_Seconds = Field(default=None, ge=0)


class _Properties(BaseModel):
    """Known keys typed and optional; other keys allowed (bounded as a whole elsewhere)."""

    model_config = ConfigDict(extra="allow", strict=True)


class ProjectCreationStarted(_Properties):
    project_type: str | None = _Text


class ProjectStepCompleted(_Properties):
    step: str | int | None = Field(default=None)
    time_to_complete: float | None = _Seconds

    @field_validator("step")
    @classmethod
    def _short(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, str) and len(value) > 200:
            raise ValueError("must have at most 200 characters")
        return value


class IngestionStarted(_Properties):
    project_id: str | None = _Text
    repo_count: int | None = _Count


class IngestionPhaseCompleted(_Properties):
    project_id: str | None = _Text
    phase: str | None = _Text
    duration: float | None = _Seconds


class IngestionCompleted(_Properties):
    project_id: str | None = _Text
    total_duration: float | None = _Seconds
    files_processed: int | None = Field(default=None, ge=0, alias="filesProcessed")
    tokens_processed: int | None = Field(default=None, ge=0, alias="tokensProcessed")
    chunks_created: int | None = Field(default=None, ge=0, alias="chunksCreated")
    compression_ratio: float | None = Field(default=None, ge=0, alias="compressionRatio")


class ConversionSignal(_Properties):
    #: Required: the summary counts conversions by it (lax only to take the enum's text).
    action: ConversionAction = Field(strict=False)


class ErrorOccurred(_Properties):
    phase: str | None = _Text
    error_code: str | None = _Text
    error_message: str | None = Field(default=None, max_length=2000)
    recoverable: bool | None = None


class ErrorRecovered(_Properties):
    phase: str | None = _Text
    recovery_action: str | None = _Text
    retry_count: int | None = _Count


class PersonaDetected(_Properties):
    persona: Persona | None = None
    confidence: Literal["high", "medium", "low"] | None = None
    signals: list[Any] | None = Field(default=None, max_length=50)


class PersonaOverride(_Properties):
    from_persona: Persona | None = None
    to_persona: Persona | None = None


PROPERTIES: Final[dict[EventType, type[_Properties]]] = {
    EventType.PROJECT_CREATION_STARTED: ProjectCreationStarted,
    EventType.PROJECT_STEP_COMPLETED: ProjectStepCompleted,
    EventType.INGESTION_STARTED: IngestionStarted,
    EventType.INGESTION_PHASE_COMPLETED: IngestionPhaseCompleted,
    EventType.INGESTION_COMPLETED: IngestionCompleted,
    EventType.CONVERSION_SIGNAL: ConversionSignal,
    EventType.ERROR_OCCURRED: ErrorOccurred,
    EventType.ERROR_RECOVERED: ErrorRecovered,
    EventType.PERSONA_DETECTED: PersonaDetected,
    EventType.PERSONA_OVERRIDE: PersonaOverride,
}


class _Envelope(WireInput):
    """One event as the browser sends it (``type`` is checked against the catalogue after)."""

    type: str = Field(max_length=64)
    timestamp: AwareDatetime
    persona: Persona | None = None
    session_id: str = Field(min_length=1, max_length=MAX_SESSION_ID)
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError("must be an ISO 8601 date-time with a time zone")
        return value


class EventBatch(WireModel):
    """The request body. Events are checked one by one (NUL characters too, in the envelope),
    so one bad event never refuses its batch; only the count does."""

    events: list[Any] = Field(max_length=MAX_EVENTS)


@dataclass(frozen=True, slots=True)
class Event:
    """An accepted event, as it will be stored."""

    type: EventType
    occurred_at: datetime
    persona: str | None
    session_id: str
    properties_json: str


class Rejected(WireModel):
    """Why one event of a batch was not taken (``index`` is its position in ``events``)."""

    index: int
    code: Literal["UNKNOWN_EVENT_TYPE", "VALIDATION_ERROR"]
    message: str = Field(max_length=500)
    #: The event's field as on the wire (``properties.action``); empty when the event as a
    #: whole is wrong (not an object).
    field: str = Field(max_length=200)


def _field(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location)


def _first_error(error: ValidationError, prefix: tuple[str, ...] = ()) -> tuple[str, str]:
    first = error.errors(include_input=False, include_url=False, include_context=False)[0]
    return _field(prefix + tuple(first["loc"])), first["msg"]


def check(index: int, raw: Any, now: datetime) -> Event | Rejected:
    """One event of a batch, accepted or refused; ``now`` is the server's clock."""

    def refused(message: str, field: str = "", code: str = "VALIDATION_ERROR") -> Rejected:
        return Rejected(index=index, code=code, message=message, field=field)  # type: ignore[arg-type]

    if not isinstance(raw, dict):
        return refused("An event must be a JSON object")
    try:
        envelope = _Envelope.model_validate(raw)
    except ValidationError as error:
        field, message = _first_error(error)
        return refused(message, field)
    try:
        event_type = EventType(envelope.type)
    except ValueError:
        return refused("Unknown event type", "type", "UNKNOWN_EVENT_TYPE")
    if envelope.timestamp < now - MAX_AGE or envelope.timestamp > now + MAX_AHEAD:
        return refused("must be within the last 7 days (and at most an hour ahead)", "timestamp")
    properties = envelope.properties
    if len(properties) > MAX_PROPERTY_KEYS:
        return refused(f"must have at most {MAX_PROPERTY_KEYS} keys", "properties")
    try:
        # Measured as PostgreSQL writes jsonb back (", " and ": "), so the column's cap holds.
        properties_json = json.dumps(properties, ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN and Infinity parse in Python but are not JSON (nor jsonb)
        return refused("must not contain NaN or Infinity", "properties")
    if len(properties_json.encode("utf-8")) > MAX_PROPERTIES_BYTES:
        return refused(f"must be at most {MAX_PROPERTIES_BYTES} bytes as JSON", "properties")
    try:  # (NUL characters were refused with the envelope, a WireInput)
        PROPERTIES[event_type].model_validate(properties)
    except ValidationError as error:
        field, message = _first_error(error, ("properties",))
        return refused(message, field)
    return Event(event_type, envelope.timestamp, envelope.persona, envelope.session_id, properties_json)


def check_batch(events: list[Any], now: datetime) -> tuple[list[Event], list[Rejected]]:
    accepted: list[Event] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(events):
        result = check(index, raw, now)
        (rejected if isinstance(result, Rejected) else accepted).append(result)  # type: ignore[arg-type]
    return accepted, rejected
