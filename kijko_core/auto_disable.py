"""Auto-disable, one piece for habits and reflexes (decisions 0117, 0135): an automation whose
runs fail too often in a row turns itself off and tells its creator.

- **Counting** — :func:`on_finish`, a finish listener in the transaction that ends an
  execution: a completed run of a habit or reflex resets its ``consecutive_failures`` and
  clears ``last_error_message``; a failed one adds one and keeps its error; a cancelled one
  changes nothing (a person stopped it, the automation did not fail). The habit scheduler also
  counts a due habit whose config no longer fits its skill (no execution is started).
- **Deactivating** — as soon as the failure that reaches the limit
  (``KIJKO_HABIT_MAX_CONSECUTIVE_FAILURES``, ``KIJKO_REFLEX_MAX_CONSECUTIVE_FAILURES``) is
  counted, in the same transaction (decision 0139): the next webhook delivery or tick finds the
  automation off. :func:`disable_failing`, on the worker's tick, is the safety net for what the
  listener cannot judge (an ending without the settings, the scheduler's own failure counts, a
  limit lowered since). Either way the deactivation is compare-and-set (one of two racing
  transactions wins, and only that one tells), then ``activity:new`` goes to the creator's
  user room and a mail to them (``habit_disabled`` / ``reflex_disabled``), after the commit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

from kijko_core import events, mail
from kijko_core.db.session import (
    ServiceActor,
    ServiceCapability,
    Session,
    service_session,
    system_session,
)
from kijko_core.executions import lifecycle
from kijko_core.logging import get_logger

if TYPE_CHECKING:
    from kijko_core.config import Settings
    from kijko_core.runtime import Kijko

log = get_logger("kijko.auto_disable")

#: The tables' limit on last_error_message.
MAX_ERROR_CHARS = 4000
#: Automations over their limit deactivated per tick and kind at most (the rest next tick).
BATCH = 1000
ACTIVITY_EVENT = "activity:new"


@dataclass(frozen=True)
class Automation:
    """What differs between habits and reflexes; everything else is shared."""

    kind: str  # the execution_type of its runs, and the word in messages
    table: str
    limit: Callable[[Settings], int]
    #: Extra assignments when deactivating (a habit forgets its next run).
    also_set: str
    #: The mail's own values: placeholder → column of the deactivated row.
    mail_columns: dict[str, str]
    template: str


HABITS = Automation(
    kind="habit",
    table="kijko.habits",
    limit=lambda settings: settings.habit_max_consecutive_failures,
    also_set=", next_run_at = NULL",
    mail_columns={"schedule": "schedule_cron", "timezone": "timezone"},
    template="habit_disabled",
)
REFLEXES = Automation(
    kind="reflex",
    table="kijko.reflexes",
    limit=lambda settings: settings.reflex_max_consecutive_failures,
    also_set="",
    mail_columns={"trigger_type": "trigger_type"},
    template="reflex_disabled",
)
AUTOMATIONS = {a.kind: a for a in (HABITS, REFLEXES)}

_ORG = "organization_id = kijko.current_org_id()"


@dataclass(frozen=True)
class _Statements:
    succeeded: str
    failed: str
    over_limit: str
    disable: str


def _columns(automation: Automation) -> str:
    return ", ".join(
        ("id", "skill_id", "user_id", "consecutive_failures", "last_error_message", "updated_at")
        + tuple(automation.mail_columns.values())
    )


# Each automation's statements, composed once at import time from its table and columns.
_SQL: dict[str, _Statements] = {
    a.kind: _Statements(
        succeeded=f"UPDATE {a.table} SET consecutive_failures = 0, last_error_message = NULL,"  # noqa: S608
        f" updated_at = now() WHERE {_ORG} AND id = $1"
        " AND (consecutive_failures <> 0 OR last_error_message IS NOT NULL)",
        failed=f"UPDATE {a.table} SET consecutive_failures = consecutive_failures + 1,"  # noqa: S608
        f" last_error_message = $2, updated_at = now() WHERE {_ORG} AND id = $1",
        over_limit=f"SELECT id, organization_id FROM {a.table}"  # noqa: S608
        " WHERE is_active AND consecutive_failures >= $1 ORDER BY organization_id, id LIMIT $2",
        disable=f"UPDATE {a.table} SET is_active = false{a.also_set}, updated_at = now()"  # noqa: S608
        f" WHERE {_ORG} AND id = ANY($1::uuid[]) AND is_active AND consecutive_failures >= $2"
        f" RETURNING {_columns(a)}",
    )
    for a in (HABITS, REFLEXES)
}


def error_text(code: str | None, message: str | None) -> str:
    """What ``last_error_message`` keeps of a failed run: ``CODE: message``."""
    text = f"{code}: {message}" if code and message else (message or code or "The run failed")
    return text[:MAX_ERROR_CHARS]


# --- counting -----------------------------------------------------------------------------------


async def on_finish(db: Session, finished: lifecycle.FinishedExecution) -> None:
    automation = AUTOMATIONS.get(finished.execution_type)
    if automation is None or finished.reference_id is None:
        return
    if finished.status == "completed":
        await db.execute(_SQL[automation.kind].succeeded, finished.reference_id)
    elif finished.status == "failed":
        await db.execute(
            _SQL[automation.kind].failed,
            finished.reference_id,
            error_text(finished.error_code, finished.error_message),
        )
        if finished.settings is not None:
            await _disable(
                db, finished.organization_id, automation, [finished.reference_id], automation.limit(finished.settings)
            )


lifecycle.add_finish_listener(on_finish)


# --- deactivating -------------------------------------------------------------------------------


async def disable_failing(kijko: Kijko, automation: Automation, capability: ServiceCapability | None = None) -> int:
    """Deactivate the active automations of this kind over their limit, each in a service
    session of its organization, and tell their creators; returns how many."""
    capability = capability or await kijko.service_capability()
    limit = automation.limit(kijko.settings)
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch(_SQL[automation.kind].over_limit, limit, BATCH)
    by_org: dict[UUID, list[UUID]] = defaultdict(list)
    for row in rows:
        by_org[row["organization_id"]].append(row["id"])
    disabled = 0
    actor = ServiceActor(f"{automation.kind}s.auto_disable", "tick")
    for org_id, ids in by_org.items():
        async with service_session(kijko.app_db, capability, org_id, actor) as tenant:
            disabled += await _disable(tenant, org_id, automation, ids, limit)
    return disabled


async def _disable(db: Session, org_id: UUID, automation: Automation, ids: list[UUID], limit: int) -> int:
    """Deactivate those of ``ids`` still active at or over ``limit`` failures, in ``db``'s
    transaction, and tell their creators; returns how many."""
    rows = await db.fetch(_SQL[automation.kind].disable, ids, limit)
    for row in rows:
        await _tell(db, org_id, automation, row)
        log.info("automation_disabled", kind=automation.kind, id=str(row["id"]), failures=row["consecutive_failures"])
    return len(rows)


_CREATOR = "SELECT email, first_name, last_name FROM kijko.organization_members() WHERE user_id = $1"
_SKILL_NAME = f"SELECT name FROM kijko.skills WHERE {_ORG} AND id = $1"  # noqa: S608


async def _tell(db: Session, org_id: UUID, automation: Automation, row: asyncpg.Record) -> None:
    """``activity:new`` to the creator's user room and a mail to them, after the commit
    (nothing when the creator is gone or no longer a member)."""
    user_id: UUID | None = row["user_id"]
    if user_id is None:
        return
    person = await db.fetchrow(_CREATOR, user_id)
    if person is None:
        return
    skill_name = await db.fetchval(_SKILL_NAME, row["skill_id"]) or "a skill"
    name = f"{person['first_name'] or ''} {person['last_name'] or ''}".strip() or person["email"]
    failures: int = row["consecutive_failures"]
    activity: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": "config",
        "user": {"id": str(user_id), "name": name, "email": person["email"]},
        "description": (
            f'{automation.kind.capitalize()} for "{skill_name}" turned off after {failures} failed runs in a row'
        ),
        "timestamp": row["updated_at"].isoformat(),
        "metadata": {
            f"{automation.kind}Id": str(row["id"]),
            "skillId": str(row["skill_id"]),
            "consecutiveFailures": failures,
            "lastErrorMessage": row["last_error_message"],
        },
    }
    events.publish(db, room=f"user:{user_id}", event=ACTIVITY_EVENT, data=activity)
    values = {
        "name": name,
        "skill_name": skill_name,
        "failures": str(failures),
        "error_message": row["last_error_message"] or "(no message)",
    }
    values |= {placeholder: str(row[column]) for placeholder, column in automation.mail_columns.items()}
    try:
        await mail.send(db, to=person["email"], template=automation.template, values=values, org_id=org_id)
    except mail.InvalidRecipient:
        log.warning("automation_mail_skipped", kind=automation.kind, id=str(row["id"]), reason="invalid address")
