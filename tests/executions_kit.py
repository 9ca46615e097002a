"""Rows for the execution-history tests, written straight into the database on the system
session (as tests write memberships): executions with chosen times, statuses, tokens and
costs, so every statistic can be checked against figures computed here from the same rows.
Also the error statuses each read-side operation documents (tests/test_openapi_errors.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.runs_kit import insert_skill

V1 = "/api/v1"
E = f"{V1}/executions"
EXECUTION_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", E): {"401", "403", "422"},
    ("get", f"{E}/recent"): {"401", "403", "422"},
    ("get", f"{E}/running"): {"401", "403"},
    ("get", f"{E}/stats"): {"401", "403", "422"},
    ("get", f"{E}/cost-breakdown"): {"401", "403", "422"},
    ("get", f"{E}/performance"): {"401", "403", "422"},
    ("get", f"{E}/cost-projection"): {"401", "403", "422"},
    ("get", f"{E}/export"): {"401", "403", "422"},
    ("delete", f"{E}/cleanup"): {"401", "403", "422"},
    ("get", f"{E}/{{execution_id}}"): {"401", "403", "404"},
    ("get", f"{E}/{{execution_id}}/full"): {"401", "403", "404"},
    ("get", f"{V1}/skill-executions"): {"401", "403", "404", "422"},
    ("get", f"{V1}/skills/{{skill_id}}/executions"): {"401", "403", "404", "422"},
    ("get", f"{V1}/habits/{{habit_id}}/executions"): {"401", "403", "404", "422"},
    ("get", f"{V1}/reflexes/{{reflex_id}}/executions"): {"401", "403", "404", "422"},
    ("get", f"{V1}/skills/stats"): {"401", "403"},
    ("get", f"{V1}/skills/stats/overview"): {"401", "403", "422"},
    ("get", f"{V1}/skills/{{skill_id}}/stats"): {"401", "403", "404", "422"},
}


@dataclass
class Row:
    """One execution as inserted (what the expected figures are computed from)."""

    id: UUID
    org_id: UUID
    skill_id: UUID | None
    status: str
    execution_type: str
    executed_at: datetime
    completed_at: datetime | None
    prompt_tokens: int | None
    completion_tokens: int | None
    duration_ms: int | None
    cost: Decimal | None
    currency: str | None
    skill_name: str | None
    reference_id: UUID | None = None
    user_id: UUID | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


async def db_now(kijko: Kijko) -> datetime:
    async with system_session(kijko.system_db, readonly=True) as db:
        value: datetime = await db.fetchval("SELECT now()")
    return value


async def skill_id(kijko: Kijko, account: Account, **fields: Any) -> UUID:
    """A new skill of ``account``'s organization (:func:`tests.runs_kit.insert_skill`), by id."""
    made: UUID = (await insert_skill(kijko, account, **fields))["id"]
    return made


async def delete_skill(kijko: Kijko, skill_id: UUID) -> None:
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.skills WHERE id = $1", skill_id)


async def insert_habit(kijko: Kijko, org_id: str | UUID, skill_id: UUID) -> UUID:
    async with system_session(kijko.system_db) as db:
        habit_id: UUID = await db.fetchval(
            "INSERT INTO kijko.habits (organization_id, skill_id, schedule_cron, is_active, next_run_at)"
            " VALUES ($1, $2, '0 9 * * 1', false, NULL) RETURNING id",
            UUID(str(org_id)),
            skill_id,
        )
    return habit_id


async def insert_reflex(kijko: Kijko, org_id: str | UUID, skill_id: UUID) -> UUID:
    async with system_session(kijko.system_db) as db:
        reflex_id: UUID = await db.fetchval(
            "INSERT INTO kijko.reflexes (organization_id, skill_id, trigger_type, trigger_config)"
            " VALUES ($1, $2, 'event', '{\"eventName\": \"project.created\"}') RETURNING id",
            UUID(str(org_id)),
            skill_id,
        )
    return reflex_id


_INSERT = (
    "INSERT INTO kijko.skill_executions (id, organization_id, skill_id, user_id, execution_type, reference_id,"
    " input, snapshot, status, output, prompt_tokens, completion_tokens, duration_ms, cost, currency,"
    " error_code, error_message, executed_at, completed_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
)


def make_row(
    org_id: str | UUID,
    *,
    at: datetime,
    skill_id: UUID | None = None,
    skill_name: str | None = None,
    status: str = "completed",
    execution_type: str = "manual",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    duration_ms: int | None = None,
    cost: str | Decimal | None = None,
    currency: str | None = None,
    reference_id: UUID | None = None,
    user_id: str | UUID | None = None,
) -> Row:
    finished = status in {"completed", "failed", "cancelled"}
    amount = None if cost is None else Decimal(cost)
    return Row(
        id=uuid.uuid4(),
        org_id=UUID(str(org_id)),
        skill_id=skill_id,
        status=status,
        execution_type=execution_type,
        executed_at=at,
        completed_at=at + timedelta(milliseconds=duration_ms or 0) if finished else None,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        duration_ms=duration_ms,
        cost=amount,
        currency=(currency or "usd") if amount is not None else None,
        skill_name=skill_name,
        reference_id=reference_id,
        user_id=None if user_id is None else UUID(str(user_id)),
    )


async def insert(kijko: Kijko, rows: list[Row]) -> list[Row]:
    """Write ``rows`` (executions) as they are; the snapshot records the skill's name and id."""
    async with system_session(kijko.system_db) as db:
        await db.connection.executemany(
            _INSERT,
            [
                (
                    row.id,
                    row.org_id,
                    row.skill_id,
                    row.user_id,
                    row.execution_type,
                    row.reference_id,
                    {"text": "hello"},
                    {
                        "skillId": str(row.skill_id or row.extra.get("snapshot_skill_id") or ""),
                        "skillName": row.skill_name or "",
                        "skillVersion": 1,
                        "skillType": "llm",
                    },
                    row.status,
                    "done" if row.status == "completed" else None,
                    row.prompt_tokens,
                    row.completion_tokens,
                    row.duration_ms,
                    row.cost,
                    row.currency,
                    "EXECUTION_FAILED" if row.status == "failed" else None,
                    "It failed" if row.status == "failed" else None,
                    row.executed_at,
                    row.completed_at,
                )
                for row in rows
            ],
        )
    return rows


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
