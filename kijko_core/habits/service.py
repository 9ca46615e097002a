"""The rules of habits (contract §2.4; docs/habits.md): who may see and change them
(ARCHITECTURE §3: every member reads, members edit their own, owners and admins all),
schedules validated and their next run computed in the habit's time zone."""

from __future__ import annotations

from uuid import UUID

from kijko_core.db.session import Session
from kijko_core.habits import repository
from kijko_core.habits.models import Habit


async def for_skill(db: Session, skill_id: UUID) -> list[Habit]:
    """The habits of one skill of the session's organization (``/skills/{id}/full``), active
    first, then by next run."""
    return await repository.for_skill(db, skill_id)
