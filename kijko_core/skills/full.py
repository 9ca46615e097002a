"""``GET /skills/{id}/full``: a skill with its habits, reflexes and newest executions
(contract §3.2 ``SkillWithRelations``). Kept apart from the service: it reads the domains that
themselves build on skills (habits, reflexes, executions)."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from kijko_core.db.session import TenantSession
from kijko_core.executions import queries as executions
from kijko_core.executions.models import SkillExecution
from kijko_core.habits import service as habits
from kijko_core.habits.models import Habit
from kijko_core.reflexes import service as reflexes
from kijko_core.reflexes.models import Reflex
from kijko_core.skills import service
from kijko_core.skills.models import Skill

#: How many of the newest executions ``recentExecutions`` holds.
RECENT_EXECUTIONS = 10


class SkillWithRelations(Skill):
    habits: list[Habit] = Field(default_factory=list)
    reflexes: list[Reflex] = Field(default_factory=list)
    recent_executions: list[SkillExecution] = Field(default_factory=list)


async def get_full(db: TenantSession, skill_id: UUID) -> SkillWithRelations:
    skill = await service.get(db, skill_id)
    # From the fields, not a dump: dumping writes the wire form (no creator → "").
    return SkillWithRelations.model_validate(
        dict(skill)
        | {
            "habits": await habits.for_skill(db, skill.id),
            "reflexes": await reflexes.for_skill(db, skill.id),
            "recent_executions": await executions.recent_for_skill(db, skill.id, RECENT_EXECUTIONS),
        }
    )
