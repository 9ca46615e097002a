"""The events Kijko publishes to ``event`` reflexes (docs/reflexes.md#event-catalogue).

:func:`emit` writes a ``reflex.event`` job in the caller's transaction (so an event exists
exactly when the change that caused it commits); the job (kijko_core/reflexes/fire.py) finds
the organization's active ``event`` reflexes for that name and starts their executions.

Each event's ``data`` is small (ids and names: the job payload is capped at 16 KiB) and its
``source`` is what a reflex's ``triggerConfig.source`` may narrow to (a project id, a skill id).

Loops: an execution started by an ``event`` reflex does not emit ``execution.completed`` /
``execution.failed`` (decision 0121), so a reflex on those events cannot trigger itself, nor two
reflexes each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from kijko_core import jobs
from kijko_core.db.session import ServiceSession, Session, TenantSession

#: The job kind that fires an event's reflexes.
JOB_KIND: Final = "reflex.event"
_LISTENING = (
    "SELECT EXISTS (SELECT 1 FROM kijko.reflexes WHERE organization_id = $1 AND trigger_type = 'event'"
    " AND is_active AND trigger_config ->> 'eventName' = $2)"
)


@dataclass(frozen=True)
class Event:
    description: str
    #: What ``source`` is for this event (for a reflex's ``triggerConfig.source``).
    source: str
    sample: dict[str, Any]


_PROJECT = {"projectId": "3f6c…", "name": "Docs", "type": "repository", "userId": "9b1e…"}
_RUN = {"projectId": "3f6c…", "runId": "77aa…", "status": "completed"}
_EXECUTION = {
    "executionId": "c0de…",
    "skillId": "5k11…",
    "executionType": "manual",
    "referenceId": None,
    "status": "completed",
    "errorCode": None,
}

EVENTS: Final[dict[str, Event]] = {
    "project.created": Event("A project was created", "the project's id", _PROJECT),
    "ingestion.completed": Event("A project's ingestion completed", "the project's id", _RUN),
    "ingestion.failed": Event(
        "A project's ingestion failed", "the project's id", _RUN | {"status": "failed", "errorCode": "CLONE_FAILED"}
    ),
    "execution.completed": Event("A skill execution completed", "the skill's id", _EXECUTION),
    "execution.failed": Event(
        "A skill execution failed",
        "the skill's id",
        _EXECUTION | {"status": "failed", "errorCode": "PROVIDER_ERROR"},
    ),
    "member.added": Event(
        "Someone joined a project (accepted an invitation)",
        "the project's id",
        {"projectId": "3f6c…", "userId": "9b1e…", "role": "developer"},
    ),
}


async def emit(
    db: Session, name: str, data: dict[str, Any], *, source: str | None = None, org_id: UUID | None = None
) -> None:
    """Publish event ``name`` of the catalogue with ``data`` in ``db``'s transaction (the
    organization of a tenant or service session, or ``org_id`` from a system session)."""
    if name not in EVENTS:
        raise ValueError(f"not an event of the catalogue: {name}")
    if org_id is None:
        if isinstance(db, TenantSession):
            org_id = db.principal.org_id
        elif isinstance(db, ServiceSession):
            org_id = db.org_id
        else:
            raise ValueError("emit from a system session names the organization")
    # No job when nobody listens: most organizations have no event reflex for most events.
    if await db.fetchval(_LISTENING, org_id, name):
        await jobs.enqueue(db, JOB_KIND, {"name": name, "data": data, "source": source}, org_id=org_id)
