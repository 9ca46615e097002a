"""The rules of reflexes (contract §2.5): organization data read by every member; members
create and edit their own, owners and admins all; viewers read (ARCHITECTURE §3)."""

from __future__ import annotations

from uuid import UUID

from kijko_core.db.session import ServiceSession, TenantSession
from kijko_core.reflexes import repository
from kijko_core.reflexes.models import Reflex, reflex_from_row


async def for_skill(db: TenantSession | ServiceSession, skill_id: UUID) -> list[Reflex]:
    """The skill's reflexes (``GET /skills/:id/full``), newest first; row-level security keeps
    them to the session's organization."""
    rows = await db.fetch(repository.FOR_SKILL, skill_id)
    return [reflex_from_row(row) for row in rows]
